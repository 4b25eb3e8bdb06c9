"""A model's raw outputs (no dropout) for rows in memory, on the device or memory-mapped, in
batches that keep the activations within the pair-slot budget; and a split's metrics from them.
Every scoring path uses these: evaluation during training, `afm evaluate`, `afm predict`, the
report and the app."""

from __future__ import annotations

import numpy as np
import torch

from afm.batches import DeviceSplit
from afm.data import Split
from afm.limits import rows_within
from afm.metrics import evaluate_predictions
from afm.models import PairwiseModel
from afm.numerics import full_speed_floats


@torch.no_grad()
@full_speed_floats()  # no subnormal arithmetic, in whichever thread scores (afm.numerics)
def outputs(model: PairwiseModel, feature_ids: torch.Tensor, feature_values: torch.Tensor,
            batch_size: int = 16384) -> np.ndarray:
    """Raw outputs for (N, F) ids and values, at most `batch_size` rows a pass and fewer where many
    fields make each row costly; float32 on the host."""
    one_hot = bool((feature_values == 1).all())
    batch_size = rows_within(model.floats_per_row(model.config, training=False, one_hot=one_hot), cap=batch_size)
    parts = [model.inference(feature_ids[i:i + batch_size], feature_values[i:i + batch_size])  # (b,)
             for i in range(0, feature_ids.shape[0], batch_size)]
    return torch.cat(parts).float().cpu().numpy() if parts else np.zeros(0, dtype=np.float32)


def split_outputs(model: PairwiseModel, split: Split, device: torch.device, rows: range | None = None,
                  batch_size: int = 16384) -> np.ndarray:
    """Raw outputs for `rows` of a split in memory or memory-mapped, `batch_size` rows at a time
    copied to the device: memory holds one chunk of rows and the float32 outputs."""
    rows = rows if rows is not None else range(len(split))
    result = np.empty(len(rows), dtype=np.float32)
    for start in range(rows.start, rows.stop, batch_size):
        stop = min(start + batch_size, rows.stop)
        ids = torch.from_numpy(np.array(split.feature_ids[start:stop])).to(device)  # (b, F)
        values = torch.from_numpy(np.array(split.feature_values[start:stop])).to(device)  # (b, F)
        result[start - rows.start:stop - rows.start] = outputs(model, ids, values, batch_size)
    return result


def evaluate_split(model: PairwiseModel, split: DeviceSplit, task: str, label_range,
                   batch_size: int = 16384) -> dict[str, float]:
    predictions = outputs(model, split.feature_ids, split.feature_values, batch_size)
    return evaluate_predictions(predictions, split.labels, task, label_range)
