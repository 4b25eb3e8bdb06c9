"""Erasure curves: does a pair measure order the pairs by what they do to the prediction?

For each measure (AFM's attention, |contribution|, |Shapley interaction|, |Shapley-Taylor|) and
for random orders, each row's pairs are erased in the measure's order, most important first:
for k = 0..P the row's top-k pairs leave the prediction, their terms out of the sum and, for AFM,
out of the softmax too (the pairs kept share the attention among themselves, exactly as under the
"absent" coalitions of afm.analysis.shapley, whose `pair_subset_values` computes it). Two curves
per order, over the rows:

- `change`: the mean |ŷ_k - ŷ_0|, from 0 at k = 0 to the mean |pair part| at k = P;
- `metric`: the task's metric of ŷ_k against the labels (RMSE for regression, log loss of the
  logit for binary; afm.metrics), from the model's own at k = 0 to that of w0 + first order at P.

Every order starts and ends at the same points (no pair erased, all erased), so orders differ only
in between: a faithful measure moves the prediction away fastest (its "prediction left" curve
falls fastest) and damages the metric fastest. The area between a curve and its start, averaged
over k (trapezoids), normalised by random's:

    area = (A_measure - A_random) / |A_random|

0: no better than erasing pairs at random; 1: twice random's area (the prediction moved, or the
metric damaged, twice as much on average over k); -1 is the floor for `change` (a measure whose
erasures leave the prediction where it was until the last pair). NaN where random's area is 0.
R rows, P = F(F-1)/2 pairs in pair_index order, M orders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from afm.analysis.shapley import pair_subset_values
from afm.errors import ConfigError, DataError
from afm.metrics import binary_targets, log_loss, rmse
from afm.models import AFM, PairwiseModel, PredictionTerms

RANDOM = "random"
RANDOM_ORDERS = 8  # random orders averaged for the baseline curve
METRIC_OF_TASK = {"regression": "rmse", "binary": "logloss"}  # lower is better for both


@dataclass
class ErasureCurves:
    """Curves over k = 0..P erased pairs of each measure's order and of random orders (their mean)."""

    task: str
    metric_name: str  # "rmse" or "logloss"
    rows: int
    random_orders: int
    seed: int
    change: dict[str, np.ndarray]  # measure (and "random") -> (P + 1,) mean |ŷ_k - ŷ_0|
    metric: dict[str, np.ndarray] | None  # measure (and "random") -> (P + 1,) metric of ŷ_k; None without labels
    area: dict[str, float]  # measure -> normalised area of `change` (random = 0)
    metric_area: dict[str, float] | None  # measure -> normalised area of `metric` (random = 0)

    @property
    def steps(self) -> np.ndarray:
        """(P + 1,) k, the pairs erased."""
        return np.arange(len(next(iter(self.change.values()))))

    def frame(self) -> pd.DataFrame:
        """One line per (measure, k): measure, k, change, metric (NaN without labels)."""
        parts = [pd.DataFrame({"measure": name, "k": self.steps, "change": curve,
                               "metric": self.metric[name] if self.metric else np.nan})
                 for name, curve in self.change.items()]
        return pd.concat(parts, ignore_index=True)

    def best(self) -> str | None:
        """The measure whose erasure moves the prediction fastest (largest finite area), or None."""
        finite = {name: value for name, value in self.area.items() if np.isfinite(value)}
        return max(finite, key=finite.get) if finite else None

    def meaning(self) -> str | None:
        """One sentence for the user: which measure's order the prediction depends on most."""
        best = self.best()
        if best is None:
            return None
        others = ", ".join(f"{name} {value:+.2f}" for name, value in self.area.items() if name != best)
        return (f"Erasing each row's pairs in the order of {best} moves the prediction fastest (area "
                f"{self.area[best]:+.2f}, where a random order is 0 and twice random's is 1"
                + (f"; {others}" if others else "") + f"), over {self.rows:,} rows. For an AFM, attention wins "
                "this by construction: removing a pair with much attention shifts every other pair's weight.")


def pair_measures(model: PairwiseModel, terms: PredictionTerms, pair_interaction=None,
                  pair_terms=None) -> dict[str, np.ndarray]:
    """The (R, P) scores each measure orders a row's pairs by (larger: erased first): attention for
    AFM only (FM's is 1 everywhere, FwFM's r_fg one order for every row), |contribution| and, when
    given ((R, P) from afm.analysis.shapley), |Shapley interaction| and |Shapley-Taylor|."""
    measures = {}
    if isinstance(model, AFM):
        measures["attention"] = terms.pair_weights.double().cpu().numpy()
    measures["|contribution|"] = terms.pair_terms.double().abs().cpu().numpy()
    for name, scores in (("|Shapley interaction|", pair_interaction), ("|Shapley-Taylor|", pair_terms)):
        if scores is not None:
            measures[name] = torch.as_tensor(scores).double().abs().cpu().numpy()
    return measures


def _metric(task: str, labels: np.ndarray):
    """The task's metric of (R, ...) predictions against (R,) labels, over rows: (...)."""
    if task == "binary":
        targets = binary_targets(labels)
        return lambda predictions: np.array([log_loss(column, targets) for column in predictions.T])
    return lambda predictions: np.array([rmse(column, labels) for column in predictions.T])


def _ranks(scores: np.ndarray) -> np.ndarray:
    """(R, P) each pair's place in its row's order, 0 = erased first: largest score first, ties
    to the earlier pair."""
    order = np.argsort(-scores, axis=1, kind="stable")  # (R, P)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(scores.shape[1])[None, :], axis=1)
    return ranks


def _erased(model: PairwiseModel, ids, values, ranks: list[np.ndarray]) -> list[np.ndarray]:
    """(R, P + 1) ŷ_k for each order's (R, P) ranks: each row's output with its pairs of rank < k
    erased. One pass for all orders: the pairs' scores and values are computed once."""
    pairs = ranks[0].shape[1]
    steps = torch.arange(pairs + 1)[None, :, None]  # (1, P + 1, 1)
    keep = torch.cat([torch.from_numpy(r)[:, None, :] >= steps for r in ranks], 1)  # (R, M (P + 1), P)
    return np.split(pair_subset_values(model, ids, values, keep).numpy(), len(ranks), axis=1)  # (R, P + 1) each


def _area(curve: np.ndarray) -> float:
    """Mean over k of curve - curve[0], by trapezoids."""
    rise = curve - curve[0]  # (P + 1,)
    return float((rise[1:] + rise[:-1]).sum() / (2 * max(len(curve) - 1, 1)))


def _normalised(curves: dict[str, np.ndarray]) -> dict[str, float]:
    baseline = _area(curves[RANDOM])
    tiny = 1e-12 * max(1.0, float(np.abs(curves[RANDOM]).max()))
    return {name: (_area(curve) - baseline) / abs(baseline) if abs(baseline) > tiny else float("nan")
            for name, curve in curves.items() if name != RANDOM}


def _check(model, ids, measures, labels, task, random_orders) -> tuple[int, int]:
    if task not in METRIC_OF_TASK:
        raise ConfigError(f"task must be one of {tuple(METRIC_OF_TASK)}, got {task!r}")
    if not isinstance(random_orders, int) or isinstance(random_orders, bool) or random_orders < 1:
        raise ConfigError(f"random_orders must be a positive integer, got {random_orders!r}")
    rows, pairs = int(torch.as_tensor(ids).shape[0]), model.config.num_pairs
    for name, scores in measures.items():
        if name == RANDOM:
            raise ConfigError(f"{RANDOM!r} is the baseline every measure is compared with, not a measure's name")
        if np.shape(scores) != (rows, pairs) or not np.isfinite(scores).all():
            raise DataError(f"measure {name!r}", f"expected finite ({rows}, {pairs}) scores, got shape "
                                                 f"{np.shape(scores)}")
    if labels is not None and np.shape(labels) != (rows,):
        raise DataError("labels", f"expected {rows} labels, one per row, got shape {np.shape(labels)}")
    return rows, pairs


def erasure_curves(model: PairwiseModel, ids, values, measures: dict[str, np.ndarray], labels=None,
                   task: str = "regression", random_orders: int = RANDOM_ORDERS, seed: int = 0) -> ErasureCurves:
    """Erasure curves of R rows (ids, values (R, F)) for each measure ((R, P) scores, e.g. from
    `pair_measures`) and for the mean of `random_orders` random orders (seeded), on the model's
    raw output (a logit for binary tasks). `labels` (R,): for the metric curves (None: none)."""
    rows, pairs = _check(model, ids, measures, labels, task, random_orders)
    labels = None if labels is None else np.asarray(labels, dtype=np.float64)
    generator = np.random.default_rng(seed)
    ranks = [_ranks(np.asarray(scores, np.float64)) for scores in measures.values()] + [
        generator.permuted(np.tile(np.arange(pairs), (rows, 1)), axis=1) for _ in range(random_orders)]  # (R, P)
    erased = _erased(model, ids, values, ranks)  # (R, P + 1) each
    outputs, shuffled = dict(zip(measures, erased)), erased[len(measures):]
    score = _metric(task, labels) if labels is not None else None
    change = {name: np.abs(out - out[:, :1]).mean(0) for name, out in outputs.items()}  # (P + 1,) each
    change[RANDOM] = np.mean([np.abs(out - out[:, :1]).mean(0) for out in shuffled], axis=0)  # (P + 1,)
    metric = None
    if score is not None:
        metric = {name: score(out) for name, out in outputs.items()}  # (P + 1,) each
        metric[RANDOM] = np.mean([score(out) for out in shuffled], axis=0)  # (P + 1,)
    return ErasureCurves(task, METRIC_OF_TASK[task], rows, random_orders, seed, change, metric,
                         _normalised(change), _normalised(metric) if metric is not None else None)
