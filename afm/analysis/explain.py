"""Why this score: each row's largest pair terms, named by the feature values that formed them.

A row's prediction is bias + first-order terms + one term a_ij·pᵀ(e_i⊙e_j) per field pair
(`PairwiseModel.decompose`). The pairs that moved it most are the terms largest in size, with
their sign (a pair can push the score down) and their weight a_ij beside them: attention is a
weight, not a cause, so both are reported.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from afm.data import FieldSchema, TabularEncoder
from afm.models import PredictionTerms


def value_labels(schema: FieldSchema, feature_ids: np.ndarray, feature_values: np.ndarray) -> np.ndarray:
    """(n, F) readable 'field=value' of every slot: a CSV's numeric column shows its number as
    written in the file (x undone from its standardisation), a libfm feature whose x is not 1
    shows x beside its name."""
    rows, fields = feature_ids.shape
    labels = np.empty((rows, fields), dtype=object)
    encoder = TabularEncoder.of(schema)
    for f in range(fields):
        column = encoder.columns[f] if encoder is not None else None
        x = feature_values[:, f].astype(np.float64)
        if column is not None and column.kind == "numeric":
            raw = x * column.std + column.mean
            labels[:, f] = [f"{column.name}={number:.6g}" for number in raw]
            continue
        distinct, inverse = np.unique(feature_ids[:, f], return_inverse=True)
        names = np.array([schema.feature_label(int(i)) for i in distinct], dtype=object)
        labels[:, f] = names[inverse.reshape(-1)]
        scaled = np.flatnonzero(x != 1)
        if column is None and len(scaled):
            labels[scaled, f] = [f"{labels[r, f]} (x={x[r]:.6g})" for r in scaled]
    return labels


def largest_pair_terms(terms: PredictionTerms, labels: np.ndarray, count: int) -> pd.DataFrame:
    """For each row, its `count` pair terms largest in size, largest first (ties: the earlier
    pair): columns pair_r ('user=u1 x item=i2'), contribution_r (signed term) and attention_r
    (a_ij; 1 for FM, r_fg for FwFM), r = 1..count."""
    contributions = terms.pair_terms.float().cpu().numpy()  # (n, P)
    weights = terms.pair_weights.float().cpu().numpy()  # (n, P)
    rows, pairs = contributions.shape
    count = min(count, pairs)
    fields = labels.shape[1]
    left, right = np.triu_indices(fields, k=1)  # (P,) the models' pair order
    magnitude = np.abs(contributions)
    if count < pairs:  # the largest `count` first (any order), then sorted: O(P) per row, not O(P log P)
        candidates = np.argpartition(-magnitude, count - 1, axis=1)[:, :count]  # (n, count)
    else:
        candidates = np.broadcast_to(np.arange(pairs), (rows, pairs))
    picked_size = np.take_along_axis(magnitude, candidates, axis=1)
    order = np.lexsort((candidates, -picked_size), axis=-1)  # by size, then by pair index
    top = np.take_along_axis(candidates, order, axis=1)  # (n, count)
    row = np.arange(rows)[:, None]
    names = labels[row, left[top]] + " x " + labels[row, right[top]]  # (n, count)
    columns = {}
    for r in range(count):
        columns[f"pair_{r + 1}"] = names[:, r]
        columns[f"contribution_{r + 1}"] = contributions[np.arange(rows), top[:, r]]
        columns[f"attention_{r + 1}"] = weights[np.arange(rows), top[:, r]]
    return pd.DataFrame(columns)
