"""Attention as it was learned: each epoch's mean pair weight on a fixed set of rows, recorded in the
history (so checkpoints carry it), and read back as the frames of a replay.

The recorder measures the same rows every epoch (the first `REPLAY_ROWS` validation rows), so one
frame differs from the next only by what training changed. AFM's weight is its attention a_ij
averaged over the rows; FwFM's is its r_fg (the same in every row); FM's is 1 and is not recorded.
"""

from __future__ import annotations

import numpy as np
import torch

from afm.data import Dataset
from afm.models import FM, PairwiseModel

REPLAY_ROWS = 512  # validation rows measured each epoch: enough for a steady mean, a forward pass of cost
# Above this many field pairs (46 fields) the replay is not recorded: its heatmap cannot be read, and P
# numbers an epoch would swell the checkpoint's header (a 256-column CSV: 32,640 pairs x 100 epochs).
REPLAY_MAX_PAIRS = 1_035
RECORD_KEY = "pair_weights"  # the history records' key: {"mean": (P,), "rows": n}


class PairWeightRecorder:
    """Training callback: each epoch's mean pair weight over fixed rows, into that epoch's record."""

    def __init__(self, model: PairwiseModel, feature_ids: torch.Tensor, feature_values: torch.Tensor):
        self.model = model
        self.rows = (feature_ids, feature_values)  # (n, F) each

    @classmethod
    def for_dataset(cls, dataset: Dataset):
        """A tracker (model -> recorder) for `fit_recipe`, or None: FM's weights are all 1, and a
        dataset without validation rows has nothing fixed to measure on, and a very wide one is not recorded."""
        valid = dataset.valid
        if not len(valid) or dataset.schema.num_pairs > REPLAY_MAX_PAIRS:
            return None
        ids, values, _ = valid.tensors(np.arange(min(REPLAY_ROWS, len(valid))))
        return lambda model: None if isinstance(model, FM) else cls(model, ids, values)

    def on_batch_end(self, epoch: int, batch: int, num_batches: int) -> None:
        pass

    def on_epoch_end(self, record: dict) -> None:
        device = next(self.model.parameters()).device
        ids, values = (t.to(device) for t in self.rows)
        weights = self.model.decompose(ids, values).pair_weights  # (n, P), no dropout, no graph
        record[RECORD_KEY] = {"mean": weights.double().mean(0).cpu().tolist(), "rows": int(weights.shape[0])}


def replay_frames(history: list[dict]) -> list[tuple[int, np.ndarray]]:
    """(epoch, mean pair weight (P,)) for every epoch that recorded one, in epoch order."""
    frames = [(int(r["epoch"]), np.asarray(r[RECORD_KEY]["mean"], dtype=np.float64))
              for r in history if isinstance(r.get(RECORD_KEY), dict) and "mean" in r[RECORD_KEY]]
    return sorted(frames, key=lambda frame: frame[0])
