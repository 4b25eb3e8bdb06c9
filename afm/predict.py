"""Score and explain new rows with a checkpoint: `afm predict`, `predict_file` and the app's
Predict & share page.

Every row of a CSV or libfm file is scored with the checkpoint's own encoding, in the file's
order, chunk by chunk (`afm.data.stream`): a file larger than memory streams through, and the
output grows in a temporary file beside OUT that replaces OUT only when every row is written
(`afm.files.write_atomic`), so a failed run never leaves half a table.

Output columns: `row` (0-based, in file order), a CSV's own columns as written (all but its label
column; with `keep_inputs=False` none; one named like an output column is written `input_<name>`),
`label` when the file has labels, `prediction`
(the model's raw score), `probability` for a binary-task model, and with `explain=N` the N pair
terms largest in size: `pair_r` (feature values, 'user=u1 x item=i2'), `contribution_r` (the
signed term a_ij·pᵀ(e_i⊙e_j), a share of the prediction) and `attention_r` (a_ij). With
`explain_by="shapley"` the N pairs are those largest by |Shapley interaction index| (exact, fields
outside a coalition absent; afm.analysis.shapley), and `shapley_r` (the signed index) comes
before `contribution_r`.

A CSV model scores a cell whose value it did not keep from training as its field's `<unknown>`
(afm.data.tabular). `UnseenCells` counts those cells per field: the summary's `unseen_cells`
({field: count}, fields with any), `unseen_warnings` says which fields are mostly unseen (more
than half their cells), and a field of which no cell was seen (a column written differently, say
numbers where the model learned codes) is an error unless `allow_unseen`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from afm.analysis.attention import decompose_split
from afm.analysis.explain import largest_pair_terms, value_labels
from afm.analysis.shapley import MAX_FIELDS, pair_shapley
from afm.checkpoint import Checkpoint, load_checkpoint
from afm.data import FieldSchema, Split
from afm.data.schema import CsvEncoding
from afm.data.stream import DEFAULT_CHUNK_ROWS, RowChunk, iter_rows
from afm.errors import ConfigError, DataError, quote
from afm.files import check_not_an_input, write_atomic
from afm.inference import outputs
from afm.limits import rows_within
from afm.metrics import sigmoid
from afm.models import PredictionTerms

EXPLAIN_FLOATS_PER_PAIR = 12  # (rows, P) arrays explaining a chunk holds at once, in float32 units
SHAPLEY_FLOATS_PER_PAIR = 8  # and what ranking by Shapley adds: (rows, P) float64 results and their sort
EXPLAIN_BY = ("contribution", "shapley")  # what `explain` ranks each row's pairs by
# Files a dataset reader takes from a folder (libfm splits, features.tsv, arrays and their manifest):
# an output named like one of these inside an input folder would replace data.
Progress = Callable[[int, int, int], None]  # (rows scored, bytes read, file size)


def predict_file(checkpoint: Checkpoint | str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike,
                 explain: int = 0, label: str | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                 progress: Progress | None = None, explain_by: str = "contribution",
                 allow_unseen: bool = False, keep_inputs: bool = True) -> dict:
    """Score every row of `data` (a CSV or libfm file; labels optional) into the CSV `out`, after
    the file's own columns unless not `keep_inputs` (a CSV's; a libfm row has none by name).
    Returns a summary: rows, whether the file had labels, `unseen_cells` ({field: cells scored as
    unknown}, fields with any; `unseen_warnings` words them), seconds, rows per second, ...
    A field none of whose cells was seen in training is an error (nothing is written) unless
    `allow_unseen`."""
    data, out = Path(data), Path(out)
    check_not_an_input(out, {"the rows being scored": data,
                             "the checkpoint": None if isinstance(checkpoint, Checkpoint) else checkpoint})
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = load_checkpoint(checkpoint)
    if explain < 0:
        raise ConfigError(f"explain must be 0 or a number of pairs, got {explain}")
    _check_explain_by(checkpoint, explain, explain_by)
    if explain:  # a chunk's (rows, P) terms, sizes and orders must fit the pair budget
        per_pair = EXPLAIN_FLOATS_PER_PAIR + (SHAPLEY_FLOATS_PER_PAIR if explain_by == "shapley" else 0)
        chunk_rows = rows_within(checkpoint.model_config.num_pairs * per_pair, cap=chunk_rows)
    total_bytes = data.stat().st_size if data.is_file() else 0
    counts = {"rows": 0, "labelled": False}
    unseen = UnseenCells(checkpoint.schema)
    started = time.perf_counter()

    def write(fd: int) -> None:
        with open(fd, "w", encoding="utf-8", newline="", closefd=False) as handle:
            for chunk in iter_rows(data, checkpoint.schema, label=label, chunk_rows=chunk_rows):
                unseen.add(chunk.feature_ids)
                table = score_chunk(checkpoint, chunk, explain, explain_by, keep_inputs)
                # float32 columns are written in their shortest form that reads back as the same number
                table.to_csv(handle, header=counts["rows"] == 0, index=False, lineterminator="\n")
                counts["rows"] += len(chunk)
                counts["labelled"] = chunk.labels is not None
                if progress is not None:
                    progress(counts["rows"], chunk.bytes_read, total_bytes)
            if counts["rows"] == 0:
                raise DataError(data, "no rows to score")
            if not allow_unseen:
                unseen.check(data)

    write_atomic(out, write, lambda problem: ConfigError(f"{out}: {problem}"))
    seconds = time.perf_counter() - started
    return {"model": checkpoint.model_config.model, "task": checkpoint.task, "data": str(data), "out": str(out),
            "rows": counts["rows"], "labelled": counts["labelled"], "unseen_cells": unseen.per_field(),
            "explain": explain,
            **({"explain_by": explain_by} if explain else {}),
            "seconds": round(seconds, 3), "rows_per_second": round(counts["rows"] / max(seconds, 1e-9), 1),
            "device": str(next(checkpoint.model.parameters()).device)}


class UnseenCells:
    """Per field of a CSV model, how many cells of the rows counted so far hold a value the encoder
    did not keep from training (never seen, or seen fewer than its min_count times), which the
    model scores as the field's `<unknown>`. Numeric fields and libfm models have none."""

    def __init__(self, schema: FieldSchema):
        encoding = CsvEncoding.from_json(schema.csv_encoding) if schema.csv_encoding is not None else None
        columns = encoding.columns if encoding is not None else ()
        self.fields = tuple(c.name for c in columns)
        self.values = tuple(c.values for c in columns)  # each field's training values (none: numeric)
        self.unknown = encoding.unknown_ids() if encoding is not None else np.zeros(0, np.int64)  # (F,)
        self.counts = np.zeros(len(columns), dtype=np.int64)  # (F,)
        self.rows = 0

    def add(self, feature_ids: np.ndarray) -> UnseenCells:
        """Count the cells of (n, F) encoded rows."""
        if len(self.fields):
            self.counts += np.count_nonzero(feature_ids == self.unknown, axis=0)
        self.rows += len(feature_ids)
        return self

    def per_field(self) -> dict[str, int]:
        """{field: cells scored as unknown}, only the fields with any, in field order."""
        return {name: int(n) for name, n in zip(self.fields, self.counts, strict=True) if n}

    def check(self, source: object) -> None:
        """A DataError when every cell of a field that had more than one training value is unseen."""
        wholly = [f for f, n in enumerate(self.counts) if self.rows and n == self.rows and len(self.values[f]) > 1]
        if not wholly:
            return
        names = ", ".join(repr(self.fields[f]) for f in wholly)
        examples = ", ".join(quote(v) for v in self.values[wholly[0]][:3])
        raise DataError(source, f"{'field' if len(wholly) == 1 else 'fields'} {names}: none of the {self.rows:,} "
                        f"cells holds a value seen in training (such as {examples}), so every row would score it as "
                        "unknown; is the column written differently than in the training file? To score the rows "
                        "anyway, allow unseen values (--allow-unseen; allow_unseen=True in Python)")


def unseen_cells(schema: FieldSchema, feature_ids: np.ndarray) -> dict[str, int]:
    """{field: how many of the (n, F) encoded rows' cells are its `<unknown>`}, fields with any."""
    return UnseenCells(schema).add(feature_ids).per_field()


def unseen_warnings(unseen: dict[str, int], rows: int) -> list[str]:
    """One line per field more than half of whose `rows` cells were unseen (`unseen`, as
    `unseen_cells` or predict_file's summary give it): "field 'x': 812 of 1,000 cells (81 %) were
    not seen in training and count as unknown"."""
    return [f"field {name!r}: {count:,} of {rows:,} cells ({100 * count // rows} %) were not seen in training "
            "and count as unknown" for name, count in unseen.items() if 2 * count > rows]


def _check_explain_by(checkpoint: Checkpoint, explain: int, explain_by: str) -> None:
    if explain_by not in EXPLAIN_BY:
        raise ConfigError(f"explain_by must be one of {EXPLAIN_BY}, got {explain_by!r}")
    if explain_by == "shapley" and not explain:
        raise ConfigError("--explain-by shapley ranks the pairs --explain N shows; give --explain N (N >= 1)")
    fields = checkpoint.model_config.num_fields
    if explain_by == "shapley" and fields > MAX_FIELDS:
        raise ConfigError(f"--explain-by shapley computes exact Shapley values over all 2^F coalitions of a row; "
                          f"this model has {fields} fields, more than the {MAX_FIELDS} it handles; use "
                          "--explain-by contribution")


OUTPUT_NAME = re.compile(r"row|label|prediction|probability|(?:pair|contribution|attention|shapley)_\d+")


def input_names(columns: list[str]) -> list[str]:
    """The names a CSV's own columns are written under: their own, or `input_<name>` for one named
    like an output column (a column called `prediction` must not pass for the model's)."""
    taken, names = set(columns), []
    for column in columns:
        name = column
        while OUTPUT_NAME.fullmatch(name) or (name != column and name in taken):
            name = f"input_{name}"
        taken.add(name)
        names.append(name)
    return names


def score_chunk(checkpoint: Checkpoint, chunk: RowChunk, explain: int = 0,
                explain_by: str = "contribution", keep_inputs: bool = False) -> pd.DataFrame:
    """The output table of one chunk (see the module docstring for its columns)."""
    model = checkpoint.model
    device = next(model.parameters()).device
    table = pd.DataFrame({"row": np.arange(chunk.start, chunk.start + len(chunk), dtype=np.int64)})
    if keep_inputs and chunk.inputs is not None:
        inputs = chunk.inputs.reset_index(drop=True)
        table = pd.concat([table, inputs.set_axis(input_names(list(inputs.columns)), axis=1)], axis=1)
    if chunk.labels is not None:
        table["label"] = chunk.labels
    if explain:
        rows = Split(chunk.feature_ids, chunk.feature_values, np.zeros(len(chunk), dtype=np.float32))
        terms = decompose_split(model, rows)
        prediction = terms.prediction.float().numpy()
    else:
        prediction = outputs(model, torch.from_numpy(chunk.feature_ids).to(device),
                             torch.from_numpy(chunk.feature_values).to(device))
    table["prediction"] = prediction
    if checkpoint.task == "binary":
        table["probability"] = sigmoid(prediction).astype(np.float32)
    if explain:
        labels = value_labels(checkpoint.schema, chunk.feature_ids, chunk.feature_values)
        if explain_by == "shapley":
            interaction = pair_shapley(model, chunk.feature_ids, chunk.feature_values).pair_interaction
            explained = largest_by_shapley(terms, interaction.numpy(), labels, explain)
        else:
            explained = largest_pair_terms(terms, labels, explain)
        table = pd.concat([table, explained], axis=1)
    return table


def largest_by_shapley(terms: PredictionTerms, interaction: np.ndarray, labels: np.ndarray,
                       count: int) -> pd.DataFrame:
    """For each row, its `count` pairs largest by |Shapley interaction index| (`interaction`,
    (n, P)), largest first (ties: the earlier pair): columns pair_r, shapley_r (the signed
    index), contribution_r and attention_r, as `largest_pair_terms` names them."""
    rows, pairs = interaction.shape
    count = min(count, pairs)
    magnitude = np.abs(interaction)  # (n, P)
    order = np.lexsort((np.broadcast_to(np.arange(pairs), (rows, pairs)), -magnitude), axis=-1)  # (n, P)
    top = order[:, :count]  # (n, count): by size, then by pair index
    left, right = np.triu_indices(labels.shape[1], k=1)  # (P,) the models' pair order
    row = np.arange(rows)[:, None]
    names = labels[row, left[top]] + " x " + labels[row, right[top]]  # (n, count)
    picked = {"shapley": np.take_along_axis(interaction.astype(np.float32), top, axis=1),  # (n, count) each
              "contribution": np.take_along_axis(terms.pair_terms.float().cpu().numpy(), top, axis=1),
              "attention": np.take_along_axis(terms.pair_weights.float().cpu().numpy(), top, axis=1)}
    columns = {}
    for r in range(count):
        columns[f"pair_{r + 1}"] = names[:, r]
        columns.update({f"{name}_{r + 1}": values[:, r] for name, values in picked.items()})
    return pd.DataFrame(columns)
