"""What if one field of a row were different: the prediction, every pair's term and attention,
and how each moved from the row you started from.

A row is F (feature id, value) slots. A field is chosen from its named values (a categorical
field: one feature per value) or, for a CSV's numeric column, entered as the number itself
(standardised with the model's saved mean and deviation, as the encoder does). Changing one
field changes its F - 1 pairs directly, and under AFM every other pair's attention too: the
softmax runs over all pairs of the row, so a pair that did not change can gain or lose weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from afm.analysis.explain import value_labels
from afm.data import FieldSchema, Split, TabularEncoder
from afm.models import PairwiseModel


@dataclass
class Row:
    """One row as the model reads it."""

    feature_ids: np.ndarray  # (F,) int64
    feature_values: np.ndarray  # (F,) float32

    def with_field(self, schema: FieldSchema, field: int, choice: int | float) -> Row:
        """This row with `field` set to `choice`: a feature id of that field, or for a CSV numeric
        column the number as written in the file."""
        ids, values = self.feature_ids.copy(), self.feature_values.copy()
        ids[field], values[field] = field_slot(schema, field, choice)
        return Row(ids, values)


def numeric_column(schema: FieldSchema, field: int):
    """The CSV encoder's numeric column behind `field`, or None (categorical, or libfm data)."""
    encoder = TabularEncoder.of(schema)
    column = encoder.columns[field] if encoder is not None else None
    return column if column is not None and column.kind == "numeric" else None


def field_options(schema: FieldSchema, field: int) -> list[tuple[int, str]] | None:
    """(feature id, value name) of every value a field can take, in id order; None for a CSV's
    numeric column, which takes a number instead."""
    if numeric_column(schema, field) is not None:
        return None
    return [(int(i), schema.value_name(int(i))) for i in schema.field_values(field)]


def field_slot(schema: FieldSchema, field: int, choice: int | float) -> tuple[int, float]:
    """(feature id, x) of `field` set to `choice` (see `Row.with_field`)."""
    column = numeric_column(schema, field)
    if column is not None:
        feature = int(schema.field_values(field)[0])
        return feature, float((float(choice) - column.mean) / column.std)
    feature = int(choice)
    if not (0 <= feature < schema.num_features and schema.feature_field[feature] == field):
        raise ValueError(f"feature {feature} is not a value of field {schema.field_names[field]!r}")
    return feature, 1.0


def field_number(schema: FieldSchema, field: int, row: Row) -> float | None:
    """The number a CSV numeric field of `row` holds, as written in the file (None otherwise)."""
    column = numeric_column(schema, field)
    return None if column is None else float(row.feature_values[field]) * column.std + column.mean


def typical_row(schema: FieldSchema, split: Split) -> Row:
    """Each field's most frequent feature in `split` (numeric columns at their mean): a sensible
    row to start composing from."""
    ids = np.array([np.bincount(split.feature_ids[:, f]).argmax() for f in range(schema.num_fields)], dtype=np.int64)
    values = np.ones(schema.num_fields, dtype=np.float32)
    for f in range(schema.num_fields):
        if numeric_column(schema, f) is not None:
            values[f] = 0.0  # standardised: the training mean
    return Row(ids, values)


@dataclass
class WhatIf:
    """A row next to the row it started from, term by term."""

    start_prediction: float
    prediction: float
    changed_fields: list[str]
    table: pd.DataFrame  # one line per term: bias, first-order per field, pair per field pair

    @property
    def change(self) -> float:
        return self.prediction - self.start_prediction


def compare_rows(model: PairwiseModel, schema: FieldSchema, start: Row, row: Row) -> WhatIf:
    """Both rows decomposed in one pass; the table's columns: part (field or field pair), kind
    (bias, first order, pair), start and now (the feature values), start_term, term, change
    (term - start_term; the changes sum to the prediction's change), start_attention, attention
    and attention_change (pairs only; 1 for FM, r_fg for FwFM)."""
    device = next(model.parameters()).device
    ids = torch.from_numpy(np.stack([start.feature_ids, row.feature_ids])).to(device)  # (2, F)
    values = torch.from_numpy(np.stack([start.feature_values, row.feature_values]).astype(np.float32)).to(device)
    terms = model.decompose(ids, values)
    labels = value_labels(schema, ids.cpu().numpy(), values.cpu().numpy())  # (2, F)
    fields = schema.num_fields
    left, right = np.triu_indices(fields, k=1)
    first = terms.first_order.double().cpu().numpy()  # (2, F)
    pairs = terms.pair_terms.double().cpu().numpy()  # (2, P)
    weights = terms.pair_weights.double().cpu().numpy()  # (2, P)
    names = list(schema.field_names)
    bias = float(terms.bias)
    table = pd.DataFrame({
        "part": ["bias", *names, *(f"{names[a]} x {names[b]}" for a, b in zip(left, right))],
        "kind": ["bias", *["first order"] * fields, *["pair"] * len(left)],
        "start": ["", *labels[0], *(labels[0, left] + " x " + labels[0, right])],
        "now": ["", *labels[1], *(labels[1, left] + " x " + labels[1, right])],
        "start_term": [bias, *first[0], *pairs[0]],
        "term": [bias, *first[1], *pairs[1]],
        "start_attention": [np.nan] * (1 + fields) + list(weights[0]),
        "attention": [np.nan] * (1 + fields) + list(weights[1]),
    })
    table["change"] = table["term"] - table["start_term"]
    table["attention_change"] = table["attention"] - table["start_attention"]
    table = table[["part", "kind", "start", "now", "start_term", "term", "change", "start_attention", "attention",
                   "attention_change"]]
    changed = [names[f] for f in range(fields) if start.feature_ids[f] != row.feature_ids[f]
               or start.feature_values[f] != row.feature_values[f]]
    prediction = terms.prediction.double().cpu().numpy()
    return WhatIf(float(prediction[0]), float(prediction[1]), changed, table)
