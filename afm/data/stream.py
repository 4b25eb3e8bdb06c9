"""Rows to score, read chunk by chunk in file order with a model's own encoding.

`load_dataset` reads a whole file and splits it 70/20/10 for training; scoring new rows needs
every row in the file's order, a label only where there is one, and files larger than memory.
`iter_rows` yields `RowChunk`s of at most `chunk_rows` rows:
- a CSV is encoded with the checkpoint's saved `TabularEncoder` (never refitted); its label
  column may be absent.
- a libfm file may leave out the label (`id:value ...` lines), all rows or none; its ids are
  checked against the model's feature table and put in field order, as `load_dataset` does.
Errors name the file and the line of the whole file, not of the chunk.

A CSV is read as text in blocks by `afm.data.text`, with the header checks and line numbers
of `read_table`, so a cell reads as it did when the model was trained, whatever rows share its
chunk; a label that is not a number is an error naming its line (an empty one is NaN).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from afm.data.libfm import order_columns_by_field, parse_libfm
from afm.data.schema import FieldSchema
from afm.data.tabular import TabularEncoder, label_numbers
from afm.data.text import CsvHeader, iter_csv_pieces, parse_records, text_blocks
from afm.errors import ConfigError, DataError
from afm.files import open_regular_file

DEFAULT_CHUNK_ROWS = 50_000
BLOCK_BYTES = 8 * 1024**2  # files are read in blocks of this size
MAX_LINE_BYTES = 64 * 1024**2  # one libfm row longer than this is not a row


@dataclass
class RowChunk:
    """Consecutive rows of a file, encoded for the model."""

    feature_ids: np.ndarray  # (n, F) int64, field f's feature in column f
    feature_values: np.ndarray  # (n, F) float32
    labels: np.ndarray | None  # (n,) float32, NaN where a row's label is empty; None: the file has none
    lines: np.ndarray  # (n,) 1-based line of each row in the file
    start: int  # how many rows of the file came before this chunk
    bytes_read: int  # how far into the file the reader is (for progress)
    inputs: pd.DataFrame | None = None  # a CSV's cells as written, every column but the label's (libfm: None)

    def __len__(self) -> int:
        return int(self.feature_ids.shape[0])


def is_csv(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".csv"


def iter_rows(path: str | Path, schema: FieldSchema, label: str | None = None,
              chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[RowChunk]:
    """Every row of a CSV or libfm file, in order, encoded as a model with `schema` was trained.
    `label`: the CSV's label column (default: the one the model was trained with)."""
    path = Path(path)
    if not isinstance(chunk_rows, int) or chunk_rows < 1:  # not an assert: `python -O` must not loop forever
        raise ConfigError(f"chunk rows must be a whole number of at least 1, not {chunk_rows!r}")
    handle = open_regular_file(path, lambda problem: DataError(path, problem))  # a missing file says so first
    with handle:
        encoder = TabularEncoder.of(schema, path)
        if encoder is not None and not is_csv(path):
            raise DataError(path, "the model was trained on a CSV; give it CSV rows with the same columns")
        if encoder is None and is_csv(path):
            raise DataError(path, "the model was trained on libfm data; give it libfm rows (label id:value ...)")
        if encoder is not None:
            yield from _csv_chunks(handle, path, encoder, label, chunk_rows)
        else:
            yield from _libfm_chunks(handle, path, schema, chunk_rows)


# --------------------------------------------------------------------------- CSV


def _csv_chunks(handle: BinaryIO, path: Path, encoder: TabularEncoder, label: str | None,
                chunk_rows: int) -> Iterator[RowChunk]:
    label_column = label or encoder.label
    header, rows_before = None, 0
    for piece, first_line, bytes_read in iter_csv_pieces(handle, path, chunk_rows, BLOCK_BYTES):
        if header is None:  # the first piece is the header alone
            header = CsvHeader.read(piece, path, first_line)
            parse_records(piece, header.width, path, first_line, header=True)  # as the whole file's header
            if label is not None and label not in header.names:
                raise DataError(path, f"no label column {label!r}; columns are {list(header.names)[:20]}",
                                line=header.line)
            continue
        cells, lines = parse_records(piece, header.width, path, first_line)
        frame, lines = header.frame(cells, lines, path)
        if frame.empty:
            continue
        ids, values = encoder.transform(frame, path, lines)
        labels = None
        if label_column in frame.columns:
            labels = label_numbers(frame[label_column], label_column, path, lines, allow_empty=True,
                                   classes=encoder.label_classes)
        yield RowChunk(ids, values, labels, lines, rows_before, bytes_read,
                       frame.drop(columns=[label_column]) if label_column in frame.columns else frame)
        rows_before += len(frame)
    if header is None:
        raise DataError(path, "file is empty")


def _position(handle: BinaryIO) -> int:
    try:
        return handle.tell()
    except OSError:
        return 0


# --------------------------------------------------------------------------- libfm

_ROW_START = re.compile(rb"(?m)^(?=[ \t\v\f]*[^\s])")  # the start of every line that holds a token


def _libfm_chunks(handle: BinaryIO, path: Path, schema: FieldSchema, chunk_rows: int) -> Iterator[RowChunk]:
    labelled: bool | None = None  # decided by the first row: a first token with a colon is a feature
    rows_before = 0
    for text, lines_before in _line_blocks(handle, path, chunk_rows):
        if not text.strip():
            continue
        if labelled is None:
            first = text.split(None, 1)[0]
            labelled = b":" not in first
        # Unlabelled rows get a placeholder label, so the one parser reads both kinds; a labelled
        # row among unlabelled ones then has a token without a colon, and is reported as such.
        parsed = text if labelled else _ROW_START.sub(b"0 ", text)
        try:
            rows = parse_libfm(parsed, path)
        except DataError as exc:  # numbered within the chunk: renumber within the file
            raise DataError(path, exc.problem, line=exc.line + lines_before if exc.line else None) from None
        rows.line_numbers += lines_before
        split = order_columns_by_field(rows, schema, path)
        yield RowChunk(split.feature_ids, split.feature_values, split.labels if labelled else None,
                       rows.line_numbers, rows_before, _position(handle))
        rows_before += len(split)
    if labelled is None:
        raise DataError(path, "file is empty")


def _line_blocks(handle: BinaryIO, path: Path, chunk_rows: int) -> Iterator[tuple[bytes, int]]:
    """(text of at most `chunk_rows` whole lines, each ending in \\n; lines before it), of the
    file's text as `text_blocks` reads it."""
    pending, lines_before = b"", 0
    for text, _, done in text_blocks(handle, path, BLOCK_BYTES):
        data = pending + text
        if done and data and not data.endswith(b"\n"):
            data += b"\n"
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))  # (lines,)
        if len(ends) == 0 and len(data) > MAX_LINE_BYTES:
            raise DataError(path, f"a line longer than {MAX_LINE_BYTES:,} bytes; is this a libfm file?",
                            line=lines_before + 1)
        taken = 0
        while len(ends) - taken >= chunk_rows or (done and len(ends) > taken):
            last = min(taken + chunk_rows, len(ends)) - 1
            begin = int(ends[taken - 1]) + 1 if taken else 0
            yield data[begin:int(ends[last]) + 1], lines_before
            lines_before += last + 1 - taken
            taken = last + 1
        pending = data[int(ends[taken - 1]) + 1:] if taken else data
