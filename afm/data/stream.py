"""Rows to score, read chunk by chunk in file order with a model's own encoding.

`load_dataset` reads a whole file and splits it 70/20/10 for training; scoring new rows needs
every row in the file's order, a label only where there is one, and files larger than memory.
`iter_rows` yields `RowChunk`s of at most `chunk_rows` rows:
- a CSV is encoded with the checkpoint's saved `TabularEncoder` (never refitted); its label
  column may be absent.
- a libfm file may leave out the label (`id:value ...` lines), all rows or none; its ids are
  checked against the model's feature table and put in field order, as `load_dataset` does.
Errors name the file and the line of the whole file, not of the chunk.

pandas infers a CSV column's type per chunk, so one value can be spelled differently in two
chunks: an integer column with an empty cell reads as floats ("3.0" where the training file had
"3"), a chunk holding only true/false reads as booleans ("True" where another had "true").
`_align_spellings` maps such a cell to the vocabulary's spelling of the same value, so a row's
encoding never depends on which rows share its chunk.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from afm.data.libfm import check_text, order_columns_by_field, parse_libfm
from afm.data.schema import FieldSchema
from afm.data.tabular import MISSING, TabularEncoder
from afm.errors import ConfigError, DataError, quote
from afm.files import open_regular_file

DEFAULT_CHUNK_ROWS = 50_000
BLOCK_BYTES = 8 * 1024**2  # libfm files are read in blocks of this size
PEEK_BYTES = 1 << 20  # the start of a file, checked for compressed or binary data
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
        check_text(handle.peek(PEEK_BYTES)[:PEEK_BYTES], path)  # gzip, zip, binary: one clear line
        if encoder is not None:
            yield from _csv_chunks(handle, path, encoder, label, chunk_rows)
        else:
            yield from _libfm_chunks(handle, path, schema, chunk_rows)


# --------------------------------------------------------------------------- CSV


def _csv_chunks(handle: BinaryIO, path: Path, encoder: TabularEncoder, label: str | None,
                chunk_rows: int) -> Iterator[RowChunk]:
    label_column = label or encoder.label
    aliases = {c.name: _aliases(c.values) for c in encoder.columns if c.kind == "categorical"}
    rows_before, lines_before, seen_header, reader = 0, 0, False, None
    while True:
        try:
            if reader is None:  # reads the header: its errors are the file's too
                # The same options as `read_table`, so a cell reads as it did when the model was trained.
                reader = pd.read_csv(handle, skipinitialspace=True, skip_blank_lines=False, encoding="utf-8",
                                     chunksize=chunk_rows)
            frame = next(reader)
        except StopIteration:
            break
        except UnicodeDecodeError as exc:
            raise DataError(path, f"not UTF-8 text (near byte {exc.start:,} of a block after line "
                            f"{lines_before + 1:,})") from None
        except pd.errors.EmptyDataError:
            raise DataError(path, "file is empty") from None
        except (pd.errors.ParserError, ValueError) as exc:
            raise DataError(path, f"not a valid CSV: {quote(str(exc), 200)}") from None
        except OSError as exc:
            raise DataError(path, f"cannot read file ({exc.strerror or exc})") from None
        if not seen_header:
            seen_header = True
            if label is not None and label not in frame.columns:
                raise DataError(path, f"no label column {label!r}; columns are "
                                f"{[str(c) for c in frame.columns][:20]}", line=1)
        blank = frame.isna().all(axis=1).to_numpy()  # (n,)
        lines = np.flatnonzero(~blank).astype(np.int64) + lines_before + 2  # header on line 1
        lines_before += len(frame)
        frame = frame[~blank].reset_index(drop=True)
        if frame.empty:
            continue
        for column, alias in aliases.items():
            if column in frame.columns and alias:
                frame[column] = _align_spellings(frame[column], alias)
        ids, values = encoder.transform(frame, path, lines)
        labels = None
        if label_column in frame.columns:
            labels = pd.to_numeric(frame[label_column], errors="coerce").to_numpy(np.float32)
        yield RowChunk(ids, values, labels, lines, rows_before, _position(handle))
        rows_before += len(frame)


def _spelling(text: str) -> str:
    """One key for the spellings pandas gives one value in different chunks: '3' and '3.0',
    'true' and 'True'."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered
    try:
        number = float(text)
    except ValueError:
        return text
    return repr(number) if math.isfinite(number) else text


def _aliases(vocabulary: tuple[str, ...]) -> dict[str, str]:
    """Spelling key -> the vocabulary's value, for keys that name exactly one value."""
    by_key: dict[str, list[str]] = {}
    for value in vocabulary:
        by_key.setdefault(_spelling(value), []).append(value)
    return {key: values[0] for key, values in by_key.items() if len(values) == 1}


def _align_spellings(series: pd.Series, aliases: dict[str, str]) -> pd.Series:
    """Cells as the vocabulary spells them, where only the spelling differs; other cells as
    `TabularEncoder.transform` reads them (an empty cell is `<missing>`)."""
    text = series.astype(object).where(series.notna(), MISSING).astype(str)
    known = set(aliases.values())
    strangers = pd.unique(text[~text.isin(known)])
    renames = {s: aliases[_spelling(s)] for s in strangers if s != MISSING and _spelling(s) in aliases}
    return text.replace(renames) if renames else text


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
    """(text of at most `chunk_rows` whole lines, each ending in \\n; lines before it). Line ends
    \\r\\n and \\r become \\n, as `check_text` does for whole files."""
    pending, lines_before, done = b"", 0, False
    while not done:
        try:
            block = handle.read(BLOCK_BYTES)
        except OSError as exc:
            raise DataError(path, f"cannot read file ({exc.strerror or exc})") from None
        done = not block
        data = pending + block
        carry = b""
        if not done and data.endswith(b"\r"):  # maybe the first half of a \r\n
            data, carry = data[:-1], b"\r"
        if b"\0" in data:
            raise DataError(path, f"is a binary file, not text (a NUL byte after line {lines_before:,})")
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
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
        pending = data[int(ends[taken - 1]) + 1:] + carry if taken else data + carry
