"""What the attention network weights, and what each pair actually contributes.

Attention is a weight, not an explanation: a pair with a high a_ij can push the prediction
down, or barely move it if p^T(e_i ⊙ e_j) is small. So every summary here reports, beside the
mean attention, the signed contribution a_ij p^T(e_i ⊙ e_j) x_i x_j and its magnitude. For FM
the weight is 1 on every pair and for FwFM it is r_fg, which gives the contrast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from afm.data import FieldSchema, Split
from afm.errors import DataError
from afm.limits import rows_within
from afm.models import PairwiseModel, PredictionTerms


@dataclass
class PairSummary:
    """Per field pair, over the rows of a split (arrays of shape (P,), pair_index order)."""

    pair_names: list[str]
    attention_mean: np.ndarray  # mean a_ij (1 for FM, r_fg for FwFM)
    attention_std: np.ndarray  # spread of a_ij across rows
    contribution_mean: np.ndarray  # mean signed a_ij p^T(e_i ⊙ e_j)
    contribution_abs_mean: np.ndarray  # mean |a_ij p^T(e_i ⊙ e_j)|: the pair's importance
    rows: int

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"pair": self.pair_names, "attention_mean": self.attention_mean,
                             "attention_std": self.attention_std, "contribution_mean": self.contribution_mean,
                             "contribution_abs_mean": self.contribution_abs_mean})

    def ranking(self, by: str = "contribution_abs_mean") -> list[str]:
        """Pair names, most important first."""
        return list(self.frame().sort_values(by, ascending=False, kind="stable")["pair"])


def no_rows(action: str) -> DataError:
    """What to say when the rows to look at are none: an empty split or an empty choice of rows."""
    return DataError("the rows chosen", f"there are none to {action} (the split, or the rows picked from it, is "
                                        "empty); choose a split with rows, e.g. --split all")


def decompose_split(model: PairwiseModel, split: Split, batch_size: int | None = None,
                    rows: np.ndarray | None = None) -> PredictionTerms:
    """`model.decompose` over a whole split (or some of its rows), batched, on the model's device.

    Default batches: as large as keeps one (batch, P, k) tensor within 256 MB, except for FwFM and
    AFM on one-hot rows, which never build that tensor (they score distinct feature pairs) and gain
    from large batches, where more pairs repeat."""
    device = next(model.parameters()).device
    ids = torch.from_numpy(split.feature_ids if rows is None else split.feature_ids[rows])
    values = torch.from_numpy(split.feature_values if rows is None else split.feature_values[rows])
    if ids.shape[0] == 0:
        raise no_rows("decompose")
    if batch_size is None:
        shares_pairs = model.computes_distinct_pairs and bool((values == 1).all())
        per_row = model.config.num_pairs * model.config.embedding_dim
        batch_size = 65_536 if shares_pairs else rows_within(per_row, cap=65_536)
    parts = [model.decompose(ids[i:i + batch_size].to(device), values[i:i + batch_size].to(device))
             for i in range(0, ids.shape[0], batch_size)]

    def joined(name: str) -> torch.Tensor:
        return torch.cat([getattr(part, name).cpu() for part in parts])

    return PredictionTerms(joined("prediction"), parts[0].bias.cpu(), joined("first_order"),
                           joined("pair_values"), joined("pair_weights"), joined("pair_terms"))


def summarize_pairs(terms: PredictionTerms, schema: FieldSchema, rows: np.ndarray | None = None) -> PairSummary:
    """Per field pair over all rows of `terms`, or over the rows `rows` (a boolean mask or indices)."""
    weights = terms.pair_weights.double()  # (N, P)
    contributions = terms.pair_terms.double()  # (N, P)
    if rows is not None:
        index = torch.as_tensor(np.flatnonzero(rows) if np.asarray(rows).dtype == bool else rows)
        weights, contributions = weights[index], contributions[index]  # (n, P)
    if weights.shape[0] == 0:
        raise no_rows("summarise")
    return PairSummary(
        pair_names=schema.pair_names(),
        attention_mean=weights.mean(0).numpy(),
        attention_std=weights.std(0, unbiased=False).numpy(),
        contribution_mean=contributions.mean(0).numpy(),
        contribution_abs_mean=contributions.abs().mean(0).numpy(),
        rows=int(weights.shape[0]),
    )


def rows_by_value(split: Split, schema: FieldSchema, field_name: str, limit: int = 12) -> dict[str, np.ndarray]:
    """Boolean row masks (N,), one per value of `field_name` in the split, most frequent first
    (at most `limit`): to compare what the model does in, say, phone rows and laptop rows."""
    column = split.feature_ids[:, schema.field_names.index(field_name)]  # (N,)
    ids, counts = np.unique(column, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:limit]
    return {schema.value_name(int(ids[i])): column == ids[i] for i in order}


def ranked_pairs(summary: PairSummary) -> pd.DataFrame:
    """The field pairs, most important (mean |contribution|) first, with their attention and its
    spread and the signed and absolute contribution: the table every dataset gets."""
    frame = summary.frame().sort_values("contribution_abs_mean", ascending=False, kind="stable")
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame.reset_index(drop=True)


def default_min_support(split: Split, schema: FieldSchema, summary: PairSummary, pairs: int = 3,
                        wanted: int = 5, cap: int = 20) -> int:
    """A "seen in at least N rows" default that keeps value pairs of the field pairs that matter:
    for each of the `pairs` most important field pairs, the support of its `wanted`-th most
    frequent value pair; the smallest of those, at most `cap`. A fixed 20 hid every value pair
    of an important field pair on a small upload."""
    names = summary.pair_names
    left, right = np.triu_indices(schema.num_fields, k=1)
    supports = []
    for name in ranked_pairs(summary)["pair"][:pairs]:
        q = names.index(name)
        keys = split.feature_ids[:, left[q]] * schema.num_features + split.feature_ids[:, right[q]]  # (N,)
        counts = np.sort(np.unique(keys, return_counts=True)[1])[::-1]
        if len(counts):  # no rows: no value pairs to keep
            supports.append(int(counts[min(wanted, len(counts)) - 1]))
    return max(1, min([cap, *supports]))


def pair_matrix(values: np.ndarray, num_fields: int, diagonal: float = np.nan) -> np.ndarray:
    """(P,) per-pair values -> symmetric (F, F) matrix for a field x field heatmap."""
    matrix = np.full((num_fields, num_fields), diagonal, dtype=np.float64)
    left, right = np.triu_indices(num_fields, k=1)
    matrix[left, right] = values
    matrix[right, left] = values
    return matrix


def top_feature_pairs(terms: PredictionTerms, split: Split, schema: FieldSchema, top: int = 20,
                      min_support: int = 20, by: str = "attention_mean",
                      rows: np.ndarray | None = None) -> pd.DataFrame:
    """The feature-value pairs (e.g. item=Instagram x daytime=morning) with the highest mean
    attention (or contribution), among pairs seen in at least `min_support` rows."""
    ids = split.feature_ids if rows is None else split.feature_ids[rows]  # (N, F)
    left, right = np.triu_indices(schema.num_fields, k=1)
    first, second = ids[:, left].ravel(), ids[:, right].ravel()  # (N * P,)
    keys = first.astype(np.int64) * schema.num_features + second
    unique, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    weights = terms.pair_weights.double().numpy().ravel()
    contributions = terms.pair_terms.double().numpy().ravel()
    frame = pd.DataFrame({
        "first": unique // schema.num_features, "second": unique % schema.num_features, "support": counts,
        "attention_mean": np.bincount(inverse, weights) / counts,
        "contribution_mean": np.bincount(inverse, contributions) / counts,
        "contribution_abs_mean": np.bincount(inverse, np.abs(contributions)) / counts,
    })
    frame = frame[frame["support"] >= min_support]
    frame = frame.sort_values(by, ascending=False, kind="stable").head(top)
    frame.insert(0, "pair", [f"{schema.feature_label(a)} x {schema.feature_label(b)}"
                             for a, b in zip(frame["first"], frame["second"])])
    return frame.reset_index(drop=True)


def row_decomposition(terms: PredictionTerms, row: int, schema: FieldSchema, ids: np.ndarray) -> pd.DataFrame:
    """One row's prediction as a table of additive parts: bias, each field's first-order term,
    each pair's term. The `value` column sums to the prediction."""
    names = ["bias"] + [f"first order: {schema.feature_label(int(i))}" for i in ids]
    kinds = ["bias"] + ["first order"] * schema.num_fields
    values = [float(terms.bias)] + terms.first_order[row].double().tolist()
    left, right = np.triu_indices(schema.num_fields, k=1)
    names += [f"{schema.feature_label(int(ids[a]))} x {schema.feature_label(int(ids[b]))}" for a, b in zip(left, right)]
    kinds += ["pair"] * len(left)
    values += terms.pair_terms[row].double().tolist()
    weights = [np.nan] * (1 + schema.num_fields) + terms.pair_weights[row].double().tolist()
    return pd.DataFrame({"term": names, "kind": kinds, "value": values, "weight": weights})


def permutation_pair_importance(predict, split: Split, num_fields: int, repeats: int = 3,
                                seed: int = 0) -> np.ndarray:
    """Model-agnostic interaction strength of each field pair, (P,) in MSE units.

    With D(S) the rise of the MSE when the columns in S are each shuffled independently,
    I(f, g) = D({f}) + D({g}) - D({f, g}). For a model additive in f and g the two single
    shuffles already account for the joint one and I = 0; an f x g interaction is destroyed by
    either single shuffle, so it is counted twice there and once in the joint one: I > 0.
    `predict(ids, values) -> (N,)` is any scorer, which is what makes this model-agnostic."""
    if not len(split):
        raise no_rows("shuffle")
    rng = np.random.default_rng(seed)
    labels = split.labels.astype(np.float64)
    base = np.mean((predict(split.feature_ids, split.feature_values) - labels) ** 2)
    left, right = np.triu_indices(num_fields, k=1)
    importance = np.zeros(len(left))
    for _ in range(repeats):
        # Common random numbers: the joint shuffle reuses each column's single-shuffle order, so
        # for an additive model the three rises cancel up to a small cross term.
        orders = [rng.permutation(len(labels)) for _ in range(num_fields)]

        def rise(columns, orders=orders) -> float:
            ids, values = split.feature_ids.copy(), split.feature_values.copy()
            for column in columns:
                ids[:, column] = ids[orders[column], column]
                values[:, column] = values[orders[column], column]
            return np.mean((predict(ids, values) - labels) ** 2) - base

        single = [rise([f]) for f in range(num_fields)]
        importance += [single[f] + single[g] - rise([f, g]) for f, g in zip(left, right)]
    return importance / repeats
