"""CSV files: a fitted encoder turns a table into F (feature id, value) slots per row.

A CSV is read as text (`afm.data.csvfile`): every cell is the string it is. `TabularEncoder.fit`
learns each column's kind from all rows by the rule of `afm.data.cells` (numeric: every cell
with a value is a number, some not whole; whole numbers alone are codes) and its encoding from
the training rows only:
- categorical (text, boolean and whole-number columns): one feature per value seen at least
  `min_count` times in training, plus an `<unknown>` feature. Values are matched as text, so
  `007` and `7` are two values. Values seen less often are folded into `<unknown>`, so it is
  trained like any other value and a value never seen before gets a sensible score instead of
  an untrained embedding. An empty cell is the value `<missing>`.
- numeric: one feature whose x is the value standardised with the training rows' mean and
  standard deviation (eq. 1 allows any x_i). A missing number (an empty cell, or pandas'
  missing-value spellings: nan, NA, null, N/A, ...) sits at the training mean, x = 0. `inf`,
  numbers beyond float32's range and numbers too large to standardise are errors that name the
  line; so is a word among the numbers.
`transform` encodes any rows with that fitted state; it is saved in every checkpoint's schema,
so new data is scored exactly as the training data was encoded, whatever its row order.
`describe_columns` says what each column was read as (kind, values, range), for `afm info`.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from afm.data.cells import NA_SPELLINGS, categories, infer_kind, label_classes, numbers
from afm.data.cells import labels as label_numbers
from afm.data.csvfile import CsvHeader, read_csv_text
from afm.data.schema import FieldSchema
from afm.data.splits import Dataset, Split, split_indices
from afm.data.text import check_text, first_not_utf8
from afm.errors import DataError, quote
from afm.files import read_regular_file
from afm.limits import MAX_FEATURES, MAX_FIELDS, MAX_TEXT_FILE_BYTES

UNKNOWN = "<unknown>"
MISSING = "<missing>"  # an empty cell in a categorical column is a value of its own
DEFAULT_MIN_COUNT = 2
LABEL_COLUMN_NAMES = ("label", "target", "y", "rating", "click")
MIN_ROWS = 10
KINDS = ("categorical", "numeric")
CELLS = ("text", "inferred")  # how the cells were read: as text, or (before) as the types pandas guessed


@dataclass(frozen=True)
class ColumnEncoding:
    name: str
    kind: str  # "categorical" | "numeric"
    values: tuple[str, ...] = ()  # categorical: the vocabulary, in first-seen order (<unknown> follows)
    mean: float = 0.0  # numeric: training mean and standard deviation
    std: float = 1.0
    low: float | None = None  # numeric: the training rows' range (None in encoders saved before)
    high: float | None = None

    @property
    def num_features(self) -> int:
        return len(self.values) + 1 if self.kind == "categorical" else 1

    def to_json(self) -> dict:
        if self.kind == "categorical":
            return {"name": self.name, "kind": self.kind, "values": list(self.values)}
        bounds = {"low": self.low, "high": self.high} if self.low is not None else {}
        return {"name": self.name, "kind": self.kind, "mean": self.mean, "std": self.std, **bounds}


@dataclass(frozen=True)
class TabularEncoder:
    label: str
    columns: tuple[ColumnEncoding, ...]
    min_count: int = DEFAULT_MIN_COUNT
    cells: str = "text"  # "inferred": saved before cells were read as text (see `_legacy_spellings`)
    label_classes: tuple[str, str] | None = None  # a label of two texts: (read as 0, read as 1)

    # ----------------------------------------------------------------- fit
    @classmethod
    def fit(cls, frame: pd.DataFrame, label: str, train_rows: np.ndarray, source: object,
            categorical: Sequence[str] = (), numeric: Sequence[str] = (), min_count: int = DEFAULT_MIN_COUNT,
            lines: np.ndarray | None = None, label_classes: tuple[str, str] | None = None) -> TabularEncoder:
        """Fit on `frame.iloc[train_rows]`. `lines`: each row's line in the file, for errors;
        `label_classes`: the label's two texts, (negative, positive), when it has them."""
        lines = _file_lines(frame) if lines is None else lines
        columns = [c for c in frame.columns if c != label]
        unknown = set(categorical) | set(numeric)
        unknown -= set(columns)
        if unknown:
            raise DataError(source, f"columns {sorted(unknown)} are not in the file", line=1)
        if len(columns) < 2:
            raise DataError(source, "need at least two feature columns besides the label", line=1)
        if len(columns) > MAX_FIELDS:
            raise DataError(source, f"{len(columns)} feature columns; at most {MAX_FIELDS} are supported", line=1)
        specs = []
        for column in columns:
            series = frame[column]
            kind = ("numeric" if column in numeric else "categorical" if column in categorical
                    else infer_kind(series, column, source, lines))
            if kind == "numeric":
                specs.append(_fit_numeric(series, str(column), train_rows, source, lines))
            else:
                counts = categories(series, MISSING).iloc[train_rows].value_counts(sort=False)
                kept = tuple(str(v) for v, n in counts.items() if n >= min_count)
                specs.append(ColumnEncoding(str(column), "categorical", values=kept))
        encoder = cls(str(label), tuple(specs), int(min_count), label_classes=label_classes)
        if encoder.num_features > MAX_FEATURES:
            raise DataError(source, f"{encoder.num_features:,} features, more than the {MAX_FEATURES:,} supported")
        return encoder

    # ----------------------------------------------------------------- transform
    @property
    def num_features(self) -> int:
        return sum(c.num_features for c in self.columns)

    def schema(self) -> FieldSchema:
        fields, names = [], []
        for index, column in enumerate(self.columns):
            values = [*column.values, UNKNOWN] if column.kind == "categorical" else ["value"]
            fields += [index] * len(values)
            names += values
        return FieldSchema(tuple(c.name for c in self.columns), fields, names, csv_encoding=self.to_json())

    def transform(self, frame: pd.DataFrame, source: object,
                  lines: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids (N, F) int64, values (N, F) float32) of every row, with the fitted state."""
        lines = _file_lines(frame) if lines is None else lines
        n = len(frame)
        ids = np.zeros((n, len(self.columns)), dtype=np.int64)  # (N, F)
        values = np.ones((n, len(self.columns)), dtype=np.float32)  # (N, F)
        missing = [c.name for c in self.columns if c.name not in frame.columns]
        if missing:
            raise DataError(source, f"columns {missing} that the model was trained on are missing; the file has "
                            f"{[str(c) for c in frame.columns][:20]}", line=1)
        offset = 0
        for f, column in enumerate(self.columns):
            series = frame[column.name]
            if column.kind == "numeric":
                x = numbers(series, column.name, source, lines)
                standardised = (x - column.mean) / column.std
                values[:, f] = np.nan_to_num(standardised, nan=0.0)  # missing: the training mean
                if not np.isfinite(values[:, f]).all():
                    row = int(np.flatnonzero(~np.isfinite(values[:, f]))[0])
                    raise DataError(source, f"column {column.name!r} holds {x[row]:g}, too far from the training "
                                    "values to encode", line=int(lines[row]))
                ids[:, f] = offset
            else:
                text = categories(series, MISSING)
                if self.cells == "inferred":
                    text = _legacy_spellings(text, column.values)
                codes = pd.Index(column.values, dtype=object).get_indexer(text.astype(object))  # -1: unseen
                ids[:, f] = offset + np.where(codes < 0, len(column.values), codes)  # unseen: <unknown>
            offset += column.num_features
        return ids, values

    # ----------------------------------------------------------------- saved form
    def to_json(self) -> dict:
        cells = {"cells": "text"} if self.cells == "text" else {}
        classes = {"label_classes": list(self.label_classes)} if self.label_classes else {}
        return {"label": self.label, "min_count": self.min_count, **cells, **classes,
                "columns": [c.to_json() for c in self.columns]}

    @classmethod
    def from_json(cls, obj: object, source: object = "csv_encoding") -> TabularEncoder:
        """Validate a saved encoder (it may come from a hostile checkpoint)."""
        if not (isinstance(obj, dict) and isinstance(obj.get("label"), str) and isinstance(obj.get("columns"), list)):
            raise DataError(source, "csv_encoding must hold a label and a list of columns")
        min_count = obj.get("min_count", 1)  # checkpoints before min_count kept every value
        if type(min_count) is not int or min_count < 1:
            raise DataError(source, "csv_encoding min_count must be a positive integer")
        cells = obj.get("cells", "inferred")  # absent: saved before cells were read as text
        if cells not in CELLS:
            raise DataError(source, f"csv_encoding cells must be one of {CELLS}")
        classes = obj.get("label_classes")
        if classes is not None and not (isinstance(classes, list) and len(classes) == 2 and classes[0] != classes[1]
                                        and all(isinstance(c, str) and 0 < len(c) <= 1000 for c in classes)):
            raise DataError(source, "csv_encoding label_classes must be two different texts")
        columns = [_column_from_json(spec, source) for spec in obj["columns"]]
        if not 2 <= len(columns) <= MAX_FIELDS:
            raise DataError(source, f"csv_encoding must have 2..{MAX_FIELDS} columns")
        return cls(obj["label"], tuple(columns), min_count, cells, tuple(classes) if classes else None)

    @classmethod
    def of(cls, schema: FieldSchema, source: object = "checkpoint") -> TabularEncoder | None:
        """The encoder a schema carries (None for libfm data), checked against the schema."""
        if schema.csv_encoding is None:
            return None
        encoder = cls.from_json(schema.csv_encoding, source)
        if encoder.num_features != schema.num_features or len(encoder.columns) != schema.num_fields:
            raise DataError(source, "csv_encoding does not match the schema's fields and features")
        return encoder


# --------------------------------------------------------------------------- fitting and reading


def _finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _column_from_json(spec: object, source: object) -> ColumnEncoding:
    if not (isinstance(spec, dict) and isinstance(spec.get("name"), str) and spec.get("kind") in KINDS):
        raise DataError(source, f"bad csv_encoding column {quote(spec)}")
    if spec["kind"] == "categorical":
        values = spec.get("values")
        if not (isinstance(values, list) and all(isinstance(v, str) for v in values)):
            raise DataError(source, f"column {spec['name']!r}: values must be a list of strings")
        if len(set(values)) != len(values):
            raise DataError(source, f"column {spec['name']!r}: a value is listed twice")
        return ColumnEncoding(spec["name"], "categorical", values=tuple(values))
    mean, std = spec.get("mean"), spec.get("std")
    if not (_finite_number(mean) and _finite_number(std)) or std <= 0:
        raise DataError(source, f"column {spec['name']!r}: mean and std must be finite, std > 0")
    low, high = spec.get("low"), spec.get("high")
    if (low is None) != (high is None) or (low is not None and not (
            _finite_number(low) and _finite_number(high) and low <= high)):
        raise DataError(source, f"column {spec['name']!r}: low and high must be finite numbers, low <= high")
    return ColumnEncoding(spec["name"], "numeric", mean=float(mean), std=float(std),
                          low=None if low is None else float(low), high=None if high is None else float(high))


def _fit_numeric(series: pd.Series, column: str, train_rows: np.ndarray, source: object,
                 lines: np.ndarray) -> ColumnEncoding:
    values = numbers(series, column, source, lines)
    train = values[train_rows]
    train = train[~np.isnan(train)]
    if len(train) == 0:
        raise DataError(source, f"numeric column {column!r} has no numbers in the training rows", line=2)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked just below
        mean = float(np.mean(train))
        std = float(np.std(train, ddof=1)) if len(train) > 1 else 1.0
    if not (math.isfinite(mean) and math.isfinite(std)):
        row = int(np.nanargmax(np.abs(values)))
        raise DataError(source, f"column {column!r} holds {values[row]:g}; numbers this large cannot "
                        "be standardised (rescale the column)", line=int(lines[row]))
    return ColumnEncoding(column, "numeric", mean=mean, std=std if std > 0 else 1.0,
                          low=float(train.min()), high=float(train.max()))


def _file_lines(frame: pd.DataFrame) -> np.ndarray:
    """The 1-based file line of each row (header on line 1), when `read_table` did not say."""
    return np.arange(len(frame), dtype=np.int64) + 2


def _spelling(text: str) -> str:
    """One key for the spellings pandas gave one value when it guessed cell types: '3', '3.0'
    and '003'; 'true' and 'True'."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered
    try:
        number = float(text)
    except ValueError:
        return text
    return repr(number) if math.isfinite(number) else text


def _legacy_spellings(text: pd.Series, vocabulary: tuple[str, ...]) -> pd.Series:
    """For an encoder saved when cells were read as pandas guessed (`cells: inferred`): a cell
    that is not in the vocabulary as written is mapped to the vocabulary's spelling of the same
    value where only one value has it ('007' to '7', 'true' to 'True'); a missing-value spelling
    to `<missing>`, as pandas read it."""
    by_key: dict[str, list[str]] = {}
    for value in vocabulary:
        by_key.setdefault(_spelling(value), []).append(value)
    aliases = {key: values[0] for key, values in by_key.items() if len(values) == 1}
    known = set(vocabulary)
    strangers = pd.unique(text[~text.isin(known)])
    renames = {s: MISSING if s in NA_SPELLINGS else aliases.get(_spelling(s)) for s in strangers}
    renames = {s: v for s, v in renames.items() if v is not None and v != s}
    return text.replace(renames) if renames else text


def read_csv_file(path: Path, **read_csv) -> pd.DataFrame:
    """A CSV file read whole with pandas (`read_csv`: further pandas.read_csv arguments), within
    the text-file limit and after the header's size is checked; a file that is not UTF-8 CSV is
    a one-line DataError naming it."""
    raw = check_text(read_regular_file(path, MAX_TEXT_FILE_BYTES, lambda problem: DataError(path, problem)), path)
    if raw.strip():
        CsvHeader.read(raw.lstrip(b"\n"), path, 1 + len(raw) - len(raw.lstrip(b"\n")))
    try:
        return pd.read_csv(io.BytesIO(raw), skip_blank_lines=False, encoding="utf-8", **read_csv)
    except UnicodeDecodeError:
        raise first_not_utf8(raw, path) or DataError(path, "not UTF-8 text") from None
    except pd.errors.EmptyDataError:
        raise DataError(path, "file is empty") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(path, f"not a valid CSV: {quote(str(exc), 200)}") from None


def read_table(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """A CSV with a header as text cells, and the file line of each data row (blank rows are
    skipped; a quoted cell spanning lines counts its lines)."""
    raw = read_regular_file(path, MAX_TEXT_FILE_BYTES, lambda problem: DataError(path, problem))
    return read_csv_text(raw, path)


def guess_label_column(frame: pd.DataFrame) -> str:
    lowered = {str(c).lower(): c for c in frame.columns}
    for name in LABEL_COLUMN_NAMES:
        if name in lowered:
            return lowered[name]
    return frame.columns[-1]


def labels_of(frame: pd.DataFrame, label: str, source: object, lines: np.ndarray,
              classes: tuple[str, str] | None = None) -> np.ndarray:
    """The label column as finite float32 numbers (text `classes` as 0 and 1), or an error
    naming the first bad line."""
    return label_numbers(frame[label], label, source, lines, classes=classes)


def load_csv(path: str | os.PathLike, label: str | None = None, seed: int = 0,
             categorical: Sequence[str] = (), numeric: Sequence[str] = (), min_count: int = DEFAULT_MIN_COUNT,
             schema: FieldSchema | None = None) -> Dataset:
    """A CSV with a header; each column but the label becomes one field, split 70/20/10 with
    `seed`. Without `schema` the encoder is fitted on the training rows; with a checkpoint's
    `schema` its saved encoder is used as it is (and its label column, unless `label` is given)."""
    path = Path(path)
    frame, lines = read_table(path)
    return table_dataset(frame, lines, path, path.stem, str(path), label, split_indices(len(frame), seed),
                         [f"split 70/20/10 with seed {seed}"], categorical, numeric, min_count, schema)


FRAME_SOURCE = "DataFrame"  # what errors about a frame's cells name; their "line" is the row's position (iloc)


def frame_text(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """A pandas DataFrame as the text cells a CSV file of it would hold (written with `to_csv` and
    read back by the CSV reader), so a frame is read by exactly the rules of a CSV file: numbers
    with a fraction are numeric, codes and words categorical, an empty or NaN cell missing. The
    rows' positions stand for line numbers in errors."""
    if not isinstance(frame, pd.DataFrame):
        raise DataError(FRAME_SOURCE, f"expected a pandas DataFrame, got {type(frame).__name__}")
    if frame.columns.duplicated().any():
        twice = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise DataError(FRAME_SOURCE, f"duplicate column names {twice[:5]}")
    if len(frame.columns) == 0 or len(frame) == 0:
        raise DataError(FRAME_SOURCE, "the frame is empty (no columns or no rows)")
    raw = frame.to_csv(index=False, lineterminator="\n").encode("utf-8")
    cells, _ = read_csv_text(raw, FRAME_SOURCE)
    return cells, np.arange(len(cells))


def table_dataset(frame: pd.DataFrame, lines: np.ndarray, source: object, name: str, location: str,
                  label: str | None, index: dict[str, np.ndarray], notes: list[str],
                  categorical: Sequence[str] = (), numeric: Sequence[str] = (), min_count: int = DEFAULT_MIN_COUNT,
                  schema: FieldSchema | None = None) -> Dataset:
    """A table of text cells (a CSV file's or a DataFrame's) as a Dataset with the splits `index`
    names (rows per split): the label column checked and read, the encoder fitted on the training
    rows (or a checkpoint's `schema`'s, used as it is)."""
    encoder = TabularEncoder.of(schema, source) if schema is not None else None
    if schema is not None and encoder is None:
        raise DataError(source, "the model was trained on libfm data, not on a CSV; give it libfm rows")
    label = label or (encoder.label if encoder else None) or guess_label_column(frame)
    if label not in frame.columns:
        raise DataError(source, f"no label column {label!r}; columns are {[str(c) for c in frame.columns][:20]}",
                        line=1)
    if len(frame) < MIN_ROWS and encoder is None:
        raise DataError(source, f"only {len(frame)} data rows; at least {MIN_ROWS} are needed to split and train")
    classes = encoder.label_classes if encoder is not None else label_classes(frame[label])
    labels = labels_of(frame, label, source, lines, classes)
    if encoder is None:
        encoder = TabularEncoder.fit(frame, label, index["train"], source, categorical, numeric, min_count, lines,
                                     label_classes=classes)
    ids, values = encoder.transform(frame, source, lines)
    everything = Split(ids, values, labels)
    splits = {split: everything.take(rows) for split, rows in index.items()}
    return Dataset(name, encoder.schema(), splits, location, notes=notes)


EXAMPLE_VALUES = 5  # values of a categorical column that `describe_columns` lists


def describe_columns(csv_encoding: dict | None) -> list[dict] | None:
    """What each CSV column was read as, for `afm info` and the app: name, kind, and for a
    categorical column the number of values kept (besides `<unknown>`) and the first few, for a
    numeric one the training rows' range, mean and standard deviation. None for libfm data."""
    if csv_encoding is None:
        return None
    encoder = TabularEncoder.from_json(csv_encoding)
    described = []
    for column in encoder.columns:
        if column.kind == "categorical":
            described.append({"column": column.name, "kind": column.kind, "values": len(column.values),
                              "examples": list(column.values[:EXAMPLE_VALUES])})
        else:
            span = None if column.low is None else [column.low, column.high]
            described.append({"column": column.name, "kind": column.kind, "range": span,
                              "mean": column.mean, "std": column.std})
    return described
