"""The small FM, FwFM and AFM checkpoints shipped with each bundled sample (sample_data/NAME/),
so the app is useful the moment it opens. `python -m afm sample --checkpoints` remakes them
(seeded, deterministic)."""

from __future__ import annotations

from pathlib import Path

import torch

from afm.analysis.coupling import CouplingTracker
from afm.checkpoint import Checkpoint, save_checkpoint
from afm.data import load_libfm_dir
from afm.models import MODEL_NAMES, build_model
from afm.paths import sample_dir
from afm.presets import preset_configs
from afm.train import seed_everything, train_model

PROBE_ROWS = 512  # validation rows the coupling tracker measures every epoch


def sample_checkpoint_path(model: str, sample: str = "sample", directory: str | Path | None = None) -> Path:
    return Path(directory or sample_dir() / sample) / f"{sample}_{model}.safetensors"


def train_sample_checkpoints(sample: str = "sample", directory: str | Path | None = None) -> dict[str, Path]:
    directory = Path(directory or sample_dir() / sample)
    data = load_libfm_dir(directory, name=sample)
    probe = [torch.from_numpy(array[:PROBE_ROWS]) for array in
             (data.valid.feature_ids, data.valid.feature_values, data.valid.labels)]
    paths = {}
    for name in MODEL_NAMES:
        seed_everything(0)  # dropout masks; the initial weights come from build_model's own seed
        config, train_config = preset_configs("quick", name, data.schema, device="cpu")
        model = build_model(config, seed=train_config.seed)
        result = train_model(model, data, train_config, callbacks=[CouplingTracker(model, *probe)])
        checkpoint = Checkpoint.from_training(result, data, init_from=None, preset="quick")
        paths[name] = save_checkpoint(sample_checkpoint_path(name, sample, directory), checkpoint)
    return paths
