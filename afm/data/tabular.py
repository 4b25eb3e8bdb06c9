"""CSV files: a fitted encoder turns a table into F (feature id, value) slots per row.

`TabularEncoder.fit` learns, from the training rows only, each column's kind and encoding:
- categorical (text, boolean, integer columns): one feature per value seen at least `min_count`
  times in training, plus an `<unknown>` feature. Values seen less often are folded into
  `<unknown>`, so it is trained like any other value and a value never seen before gets a
  sensible score instead of an untrained embedding.
- numeric (float columns): one feature whose x is the value standardised with the training
  rows' mean and standard deviation (eq. 1 allows any x_i). A missing number (an empty cell, or
  pandas' missing-value spellings: nan, NA, null, N/A, ...) sits at the training mean, x = 0.
  `inf` and numbers too large to standardise are errors that name the line.
`transform` encodes any rows with that fitted state; it is saved in every checkpoint's schema,
so new data is scored exactly as the training data was encoded, whatever its row order.
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

from afm.data.libfm import check_text
from afm.data.schema import FieldSchema
from afm.data.splits import Dataset, Split, split_indices
from afm.errors import DataError, quote
from afm.files import read_regular_file
from afm.limits import MAX_FEATURES, MAX_FIELDS, MAX_TEXT_FILE_BYTES

UNKNOWN = "<unknown>"
MISSING = "<missing>"  # an empty cell in a categorical column is a value of its own
DEFAULT_MIN_COUNT = 2
LABEL_COLUMN_NAMES = ("label", "target", "y", "rating", "click")
MIN_ROWS = 10
KINDS = ("categorical", "numeric")


@dataclass(frozen=True)
class ColumnEncoding:
    name: str
    kind: str  # "categorical" | "numeric"
    values: tuple[str, ...] = ()  # categorical: the vocabulary, in first-seen order (<unknown> follows)
    mean: float = 0.0  # numeric: training mean and standard deviation
    std: float = 1.0

    @property
    def num_features(self) -> int:
        return len(self.values) + 1 if self.kind == "categorical" else 1

    def to_json(self) -> dict:
        if self.kind == "categorical":
            return {"name": self.name, "kind": self.kind, "values": list(self.values)}
        return {"name": self.name, "kind": self.kind, "mean": self.mean, "std": self.std}


@dataclass(frozen=True)
class TabularEncoder:
    label: str
    columns: tuple[ColumnEncoding, ...]
    min_count: int = DEFAULT_MIN_COUNT

    # ----------------------------------------------------------------- fit
    @classmethod
    def fit(cls, frame: pd.DataFrame, label: str, train_rows: np.ndarray, source: object,
            categorical: Sequence[str] = (), numeric: Sequence[str] = (), min_count: int = DEFAULT_MIN_COUNT,
            lines: np.ndarray | None = None) -> TabularEncoder:
        """Fit on `frame.iloc[train_rows]`. `lines`: each row's line in the file, for errors."""
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
            is_numeric = column in numeric or (column not in categorical
                                               and pd.api.types.is_float_dtype(series.dtype))
            if is_numeric:
                values = _numbers(series, column, source, lines)
                train = values[train_rows]
                train = train[~np.isnan(train)]
                if len(train) == 0:
                    raise DataError(source, f"numeric column {column!r} has no numbers in the training rows",
                                    line=2)
                with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked just below
                    mean = float(np.mean(train))
                    std = float(np.std(train, ddof=1)) if len(train) > 1 else 1.0
                if not (math.isfinite(mean) and math.isfinite(std)):
                    row = int(np.nanargmax(np.abs(values)))
                    raise DataError(source, f"column {column!r} holds {values[row]:g}; numbers this large cannot "
                                    "be standardised (rescale the column)", line=int(lines[row]))
                specs.append(ColumnEncoding(str(column), "numeric", mean=mean, std=std if std > 0 else 1.0))
            else:
                counts = _categories(series).iloc[train_rows].value_counts(sort=False)
                kept = tuple(str(v) for v, n in counts.items() if n >= min_count)
                specs.append(ColumnEncoding(str(column), "categorical", values=kept))
        encoder = cls(str(label), tuple(specs), int(min_count))
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
                x = _numbers(series, column.name, source, lines)
                standardised = (x - column.mean) / column.std
                values[:, f] = np.nan_to_num(standardised, nan=0.0)  # missing: the training mean
                if not np.isfinite(values[:, f]).all():
                    row = int(np.flatnonzero(~np.isfinite(values[:, f]))[0])
                    raise DataError(source, f"column {column.name!r} holds {x[row]:g}, too far from the training "
                                    "values to encode", line=int(lines[row]))
                ids[:, f] = offset
            else:
                lookup = {v: i for i, v in enumerate(column.values)}
                codes = _categories(series).map(lookup)
                ids[:, f] = offset + codes.fillna(len(column.values)).to_numpy(np.int64)  # unseen: <unknown>
            offset += column.num_features
        return ids, values

    # ----------------------------------------------------------------- saved form
    def to_json(self) -> dict:
        return {"label": self.label, "min_count": self.min_count, "columns": [c.to_json() for c in self.columns]}

    @classmethod
    def from_json(cls, obj: object, source: object = "csv_encoding") -> TabularEncoder:
        """Validate a saved encoder (it may come from a hostile checkpoint)."""
        if not (isinstance(obj, dict) and isinstance(obj.get("label"), str) and isinstance(obj.get("columns"), list)):
            raise DataError(source, "csv_encoding must hold a label and a list of columns")
        min_count = obj.get("min_count", 1)  # checkpoints before min_count kept every value
        if type(min_count) is not int or min_count < 1:
            raise DataError(source, "csv_encoding min_count must be a positive integer")
        columns = []
        for spec in obj["columns"]:
            if not (isinstance(spec, dict) and isinstance(spec.get("name"), str) and spec.get("kind") in KINDS):
                raise DataError(source, f"bad csv_encoding column {quote(spec)}")
            if spec["kind"] == "categorical":
                values = spec.get("values")
                if not (isinstance(values, list) and all(isinstance(v, str) for v in values)):
                    raise DataError(source, f"column {spec['name']!r}: values must be a list of strings")
                columns.append(ColumnEncoding(spec["name"], "categorical", values=tuple(values)))
            else:
                mean, std = spec.get("mean"), spec.get("std")
                if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                           for v in (mean, std)) or std <= 0:
                    raise DataError(source, f"column {spec['name']!r}: mean and std must be finite, std > 0")
                columns.append(ColumnEncoding(spec["name"], "numeric", mean=float(mean), std=float(std)))
        if not 2 <= len(columns) <= MAX_FIELDS:
            raise DataError(source, f"csv_encoding must have 2..{MAX_FIELDS} columns")
        return cls(obj["label"], tuple(columns), min_count)

    @classmethod
    def of(cls, schema: FieldSchema, source: object = "checkpoint") -> TabularEncoder | None:
        """The encoder a schema carries (None for libfm data), checked against the schema."""
        if schema.csv_encoding is None:
            return None
        encoder = cls.from_json(schema.csv_encoding, source)
        if encoder.num_features != schema.num_features or len(encoder.columns) != schema.num_fields:
            raise DataError(source, "csv_encoding does not match the schema's fields and features")
        return encoder


# --------------------------------------------------------------------------- reading


def _file_lines(frame: pd.DataFrame) -> np.ndarray:
    """The 1-based file line of each row (header on line 1), when `read_table` did not say."""
    return np.arange(len(frame), dtype=np.int64) + 2


def _numbers(series: pd.Series, column: object, source: object, lines: np.ndarray) -> np.ndarray:
    """A column as float64 numbers; empty cells are NaN (missing), anything else must be finite."""
    x = pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
    present = series.notna().to_numpy()
    bad = (np.isnan(x) & present) | np.isinf(x)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(source, f"column {column!r} holds {quote(series.iloc[row])}, not a finite number "
                        "(leave the cell empty for a missing value)", line=int(lines[row]))
    return x


def _categories(series: pd.Series) -> pd.Series:
    """Category names as strings, an empty cell as its own value."""
    return series.astype(object).where(series.notna(), MISSING).astype(str)


def read_csv_file(path: Path, **read_csv) -> pd.DataFrame:
    """A CSV file read whole, within the text-file limit, its blank lines kept as empty rows (so
    row r is file line r + 2); a file that is not UTF-8 CSV is a one-line DataError naming it.
    `read_csv`: further pandas.read_csv arguments."""
    raw = check_text(read_regular_file(path, MAX_TEXT_FILE_BYTES, lambda problem: DataError(path, problem)), path)
    try:
        return pd.read_csv(io.BytesIO(raw), skip_blank_lines=False, encoding="utf-8", **read_csv)
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text (byte {exc.start:,} is {raw[exc.start]:#04x})") from None
    except pd.errors.EmptyDataError:
        raise DataError(path, "file is empty") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(path, f"not a valid CSV: {quote(str(exc), 200)}") from None


def read_table(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """A CSV with a header, and the file line of each data row (blank lines are skipped)."""
    frame = read_csv_file(path, skipinitialspace=True)
    blank = frame.isna().all(axis=1).to_numpy()
    lines = np.flatnonzero(~blank).astype(np.int64) + 2  # exact unless a quoted cell spans lines
    return frame[~blank].reset_index(drop=True), lines


def guess_label_column(frame: pd.DataFrame) -> str:
    lowered = {str(c).lower(): c for c in frame.columns}
    for name in LABEL_COLUMN_NAMES:
        if name in lowered:
            return lowered[name]
    return frame.columns[-1]


def labels_of(frame: pd.DataFrame, label: str, source: object, lines: np.ndarray) -> np.ndarray:
    """The label column as finite float32 numbers, or an error naming the first bad line."""
    series = frame[label]
    labels = pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(labels)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        what = "is empty" if pd.isna(series.iloc[row]) else f"{quote(series.iloc[row])} is not a finite number"
        raise DataError(source, f"label in column {label!r} {what}", line=int(lines[row]))
    return labels.astype(np.float32)


def load_csv(path: str | os.PathLike, label: str | None = None, seed: int = 0,
             categorical: Sequence[str] = (), numeric: Sequence[str] = (), min_count: int = DEFAULT_MIN_COUNT,
             schema: FieldSchema | None = None) -> Dataset:
    """A CSV with a header; each column but the label becomes one field, split 70/20/10 with
    `seed`. Without `schema` the encoder is fitted on the training rows; with a checkpoint's
    `schema` its saved encoder is used as it is (and its label column, unless `label` is given)."""
    path = Path(path)
    frame, lines = read_table(path)
    encoder = TabularEncoder.of(schema, path) if schema is not None else None
    if schema is not None and encoder is None:
        raise DataError(path, "the model was trained on libfm data, not on a CSV; give it libfm rows")
    label = label or (encoder.label if encoder else None) or guess_label_column(frame)
    if label not in frame.columns:
        raise DataError(path, f"no label column {label!r}; columns are {[str(c) for c in frame.columns][:20]}",
                        line=1)
    if len(frame) < MIN_ROWS and encoder is None:
        raise DataError(path, f"only {len(frame)} data rows; at least {MIN_ROWS} are needed to split and train")
    labels = labels_of(frame, label, path, lines)
    index = split_indices(len(frame), seed)
    if encoder is None:
        encoder = TabularEncoder.fit(frame, label, index["train"], path, categorical, numeric, min_count, lines)
    ids, values = encoder.transform(frame, path, lines)
    everything = Split(ids, values, labels)
    splits = {name: everything.take(idx) for name, idx in index.items()}
    return Dataset(path.stem, encoder.schema(), splits, str(path), notes=[f"split 70/20/10 with seed {seed}"])
