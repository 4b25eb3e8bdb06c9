"""The training callback that records coupling measures in each epoch's history record."""

from __future__ import annotations

import numpy as np

from afm.analysis.coupling.blog_formula import seed_formula_error
from afm.analysis.coupling.hessian import hessian_coupling
from afm.analysis.coupling.summary import coupling_summary, information_abundance
from afm.finite_json import finite
from afm.models import AFM, PairwiseModel


class CouplingTracker:
    """Training callback: measures coupling on a fixed probe batch at chosen epochs and stores
    the result in that epoch's history record (so checkpoints carry it to the app)."""

    def __init__(self, model: PairwiseModel, feature_ids, feature_values, targets, task: str = "regression",
                 epochs: set[int] | None = None, hessian_probes: int = 0):
        self.model = model
        self.batch = (feature_ids, feature_values, targets)
        self.task = task
        self.epochs = epochs  # None: every epoch
        self.hessian_probes = hessian_probes  # 0: skip the (costlier) Hessian blocks

    def on_batch_end(self, epoch: int, batch: int, num_batches: int) -> None:
        pass

    def on_epoch_end(self, record: dict) -> None:
        if self.epochs is not None and record["epoch"] not in self.epochs:
            return
        device = next(self.model.parameters()).device
        ids, values, targets = (t.to(device) for t in self.batch)
        summary = coupling_summary(self.model, ids, values, targets, self.task)
        measures = {**summary.to_json(), "cancellation_mean": float(np.nanmean(summary.cancellation)),
                    "cancellation_baseline_mean": float(np.nanmean(summary.cancellation_baseline)),
                    "information_abundance": information_abundance(self.model)}
        if isinstance(self.model, AFM):
            measures["seed_formula_error"] = seed_formula_error(self.model, ids, values, targets, self.task)
        if self.hessian_probes:
            hessian = hessian_coupling(self.model, ids, values, targets, self.task, probes=self.hessian_probes)
            measures["hessian_model_part"] = finite(hessian.model_part)
            measures["hessian_curvature_part"] = finite(hessian.curvature_part)
        record["coupling"] = measures
