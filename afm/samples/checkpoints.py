"""The small FM, FwFM and AFM checkpoints shipped with each bundled sample (sample_data/NAME/),
so the app is useful the moment it opens. `python -m afm sample --checkpoints` remakes them
(seeded, deterministic)."""

from __future__ import annotations

from pathlib import Path

import torch

from afm.analysis.coupling import CouplingTracker
from afm.checkpoint import save_checkpoint
from afm.data import load_libfm_dir
from afm.fitting import fit_recipe
from afm.models import MODEL_NAMES
from afm.paths import sample_dir
from afm.recipe import preset

PROBE_ROWS = 512  # validation rows the coupling tracker measures every epoch


def sample_checkpoint_path(model: str, sample: str = "sample", directory: str | Path | None = None) -> Path:
    return Path(directory or sample_dir() / sample) / f"{sample}_{model}.safetensors"


def train_sample_checkpoints(sample: str = "sample", directory: str | Path | None = None) -> dict[str, Path]:
    directory = Path(directory or sample_dir() / sample)
    data = load_libfm_dir(directory, name=sample)
    # Recorded as the bundled sample it is, not as the path of the checkout that made it.
    data.location = f"bundled sample {sample} (sample_data/{sample})"
    probe = [torch.from_numpy(array[:PROBE_ROWS]) for array in
             (data.valid.feature_ids, data.valid.feature_values, data.valid.labels)]
    paths = {}
    for name in MODEL_NAMES:
        fitted = fit_recipe(preset("quick", name, device="cpu"), data,
                            trackers=[lambda model: CouplingTracker(model, *probe)])
        paths[name] = save_checkpoint(sample_checkpoint_path(name, sample, directory), fitted.checkpoint)
    return paths
