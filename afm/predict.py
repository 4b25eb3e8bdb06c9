"""Score and explain new rows with a checkpoint: `afm predict`, `predict_file` and the app's
Predict & share page.

Every row of a CSV or libfm file is scored with the checkpoint's own encoding, in the file's
order, chunk by chunk (`afm.data.stream`): a file larger than memory streams through, and the
output grows in a temporary file beside OUT that replaces OUT only when every row is written
(`afm.files.write_atomic`), so a failed run never leaves half a table.

Output columns: `row` (0-based, in file order), `label` when the file has labels, `prediction`
(the model's raw score), `probability` for a binary-task model, and with `explain=N` the N pair
terms largest in size: `pair_r` (feature values, 'user=u1 x item=i2'), `contribution_r` (the
signed term a_ij·pᵀ(e_i⊙e_j), a share of the prediction) and `attention_r` (a_ij).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from afm.analysis.attention import decompose_split
from afm.analysis.explain import largest_pair_terms, value_labels
from afm.checkpoint import Checkpoint, load_checkpoint
from afm.data import Split
from afm.data.stream import DEFAULT_CHUNK_ROWS, RowChunk, iter_rows
from afm.errors import ConfigError, DataError
from afm.files import write_atomic
from afm.inference import outputs
from afm.limits import rows_within
from afm.metrics import sigmoid

EXPLAIN_FLOATS_PER_PAIR = 12  # (rows, P) arrays explaining a chunk holds at once, in float32 units

Progress = Callable[[int, int, int], None]  # (rows scored, bytes read, file size)


def predict_file(checkpoint: Checkpoint | str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike,
                 explain: int = 0, label: str | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                 progress: Progress | None = None) -> dict:
    """Score every row of `data` (a CSV or libfm file; labels optional) into the CSV `out`.
    Returns a summary: rows, whether the file had labels, seconds, rows per second, ..."""
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = load_checkpoint(checkpoint)
    if explain < 0:
        raise ConfigError(f"explain must be 0 or a number of pairs, got {explain}")
    data, out = Path(data), Path(out)
    if out.resolve() == data.resolve():
        raise ConfigError(f"{out}: the output would replace the rows being scored; write it elsewhere")
    if explain:  # a chunk's (rows, P) terms, sizes and orders must fit the pair budget
        floats_per_row = checkpoint.model_config.num_pairs * EXPLAIN_FLOATS_PER_PAIR
        chunk_rows = rows_within(floats_per_row, cap=chunk_rows)
    total_bytes = data.stat().st_size if data.is_file() else 0
    counts = {"rows": 0, "labelled": False}
    started = time.perf_counter()

    def write(fd: int) -> None:
        with open(fd, "w", encoding="utf-8", newline="", closefd=False) as handle:
            for chunk in iter_rows(data, checkpoint.schema, label=label, chunk_rows=chunk_rows):
                table = score_chunk(checkpoint, chunk, explain)
                # float32 columns are written in their shortest form that reads back as the same number
                table.to_csv(handle, header=counts["rows"] == 0, index=False, lineterminator="\n")
                counts["rows"] += len(chunk)
                counts["labelled"] = chunk.labels is not None
                if progress is not None:
                    progress(counts["rows"], chunk.bytes_read, total_bytes)
            if counts["rows"] == 0:
                raise DataError(data, "no rows to score")

    write_atomic(out, write, lambda problem: ConfigError(f"{out}: {problem}"))
    seconds = time.perf_counter() - started
    return {"model": checkpoint.model_config.model, "task": checkpoint.task, "data": str(data), "out": str(out),
            "rows": counts["rows"], "labelled": counts["labelled"], "explain": explain,
            "seconds": round(seconds, 3), "rows_per_second": round(counts["rows"] / max(seconds, 1e-9), 1),
            "device": str(next(checkpoint.model.parameters()).device)}


def score_chunk(checkpoint: Checkpoint, chunk: RowChunk, explain: int = 0) -> pd.DataFrame:
    """The output table of one chunk (see the module docstring for its columns)."""
    model = checkpoint.model
    device = next(model.parameters()).device
    table = pd.DataFrame({"row": np.arange(chunk.start, chunk.start + len(chunk), dtype=np.int64)})
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
        table = pd.concat([table, largest_pair_terms(terms, labels, explain)], axis=1)
    return table
