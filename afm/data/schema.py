"""Field schemas: what the F columns and the feature ids mean.

A schema maps every feature id to its field and, where known, to a value name ("Instagram").
It is saved inside every checkpoint, so it is kept compact: the field of each id is one int16
array (100 MB at the 50 M-feature limit, not gigabytes of Python objects), and value names are
stored only for the ids that have one.

Fields come from a `*features.tsv` beside libfm files (`feature<TAB>field<TAB>value`), from a
built-in layout for the known datasets, or are inferred: each column its own field, its id range
the field's range. A CSV's fields come with their saved encoding (`CsvEncoding`, fitted by
`afm.data.tabular`): each column's values or mean and spread, so new rows encode as the training
rows did; `describe_columns` says what each column was read as.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Self

import numpy as np

from afm.data.text import check_text
from afm.errors import DataError, quote
from afm.files import read_regular_file
from afm.limits import MAX_FEATURES, MAX_FIELDS

MAX_TABLE_BYTES = 1024**3  # a features.tsv larger than this is not a feature table
_DIGITS = re.compile(r"[0-9]+")


class FieldSchema:
    """Field names (F,), each feature id's field (num_features,), and value names where known."""

    def __init__(self, field_names: Sequence[str], feature_field: Sequence[int] | np.ndarray,
                 feature_names: Sequence[str] | Mapping[int, str] | None = None, csv_encoding: dict | None = None):
        self.field_names: tuple[str, ...] = tuple(field_names)
        fields = np.asarray(feature_field, dtype=np.int16)  # -1: an id that belongs to no field
        fields.setflags(write=False)
        self.feature_field: np.ndarray = fields  # (num_features,)
        if feature_names is not None and not isinstance(feature_names, Mapping):
            feature_names = dict(enumerate(feature_names))
        self.feature_names: dict[int, str] | None = dict(feature_names) if feature_names is not None else None
        # For CSV data: how to encode new rows exactly as the training rows were (`CsvEncoding.to_json`).
        self.csv_encoding = csv_encoding

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, FieldSchema) and self.field_names == other.field_names
                and np.array_equal(self.feature_field, other.feature_field)
                and self.feature_names == other.feature_names and self.csv_encoding == other.csv_encoding)

    __hash__ = None  # mutable contents: not a dictionary key

    def __repr__(self) -> str:
        return f"FieldSchema({self.num_fields} fields {list(self.field_names)[:6]}, {self.num_features} features)"

    @property
    def num_fields(self) -> int:
        return len(self.field_names)

    @property
    def num_features(self) -> int:
        return int(self.feature_field.shape[0])

    @property
    def num_pairs(self) -> int:
        return self.num_fields * (self.num_fields - 1) // 2

    def value_name(self, feature_id: int) -> str:
        """The value a feature stands for ("Instagram"), or its id when unnamed."""
        names = self.feature_names
        return names.get(int(feature_id), str(feature_id)) if names else str(feature_id)

    def feature_label(self, feature_id: int) -> str:
        """Readable 'field=value' for one feature id."""
        f = int(self.feature_field[feature_id])
        return f"{self.field_names[f] if f >= 0 else '?'}={self.value_name(feature_id)}"

    def field_values(self, field: int) -> np.ndarray:
        """The feature ids of one field, in id order."""
        return np.flatnonzero(self.feature_field == field)

    def pair_names(self) -> list[str]:
        """'f x g' for each field pair in pair_index order (i < j, row-major)."""
        names = self.field_names
        return [f"{names[i]} x {names[j]}" for i, j in zip(*np.triu_indices(len(names), k=1))]

    def to_json(self) -> dict:
        names = self.feature_names
        if names is not None and len(names) == self.num_features and all(i in names for i in range(len(names))):
            stored_names = [names[i] for i in range(len(names))]  # dense: a plain list
        elif names:
            stored_names = {str(i): name for i, name in sorted(names.items())}
        else:
            stored_names = None
        return {"field_names": list(self.field_names), "feature_field": _run_length_encode(self.feature_field),
                "feature_names": stored_names, "csv_encoding": self.csv_encoding}

    @classmethod
    def from_json(cls, obj: object, source: object = "schema", num_features: int | None = None) -> FieldSchema:
        """Rebuild from `to_json` output, validating everything (it may come from a hostile file).
        With `num_features`, the schema must describe exactly that many ids; this is checked before
        anything of that size is allocated."""
        if not isinstance(obj, dict):
            raise DataError(source, "field schema is not a JSON object")
        names = obj.get("field_names")
        if not (isinstance(names, list) and 0 < len(names) <= MAX_FIELDS and all(isinstance(n, str) for n in names)):
            raise DataError(source, f"field_names must be a list of 1..{MAX_FIELDS} strings")
        feature_field = _run_length_decode(obj.get("feature_field"), len(names), source, num_features)
        count = len(feature_field)
        feature_names = obj.get("feature_names")
        if isinstance(feature_names, list):
            if not (len(feature_names) == count and all(isinstance(n, str) for n in feature_names)):
                raise DataError(source, "feature_names must be one string per feature")
        elif isinstance(feature_names, dict):
            if not all(isinstance(k, str) and _DIGITS.fullmatch(k) and int(k) < count and isinstance(v, str)
                       for k, v in feature_names.items()):
                raise DataError(source, "feature_names must map feature ids below num_features to strings")
            feature_names = {int(k): v for k, v in feature_names.items()}
        elif feature_names is not None:
            raise DataError(source, "feature_names must be a list, an object or null")
        csv_encoding = obj.get("csv_encoding")
        if csv_encoding is not None and not isinstance(csv_encoding, dict):
            raise DataError(source, "csv_encoding must be an object")
        return cls(tuple(names), feature_field, feature_names, csv_encoding)


def _run_length_encode(values: np.ndarray) -> list[list[int]]:
    """[[value, count], ...]: a field map is a few long runs, so this keeps checkpoints small."""
    if len(values) == 0:
        return []
    starts = np.concatenate(([0], np.flatnonzero(np.diff(values)) + 1))
    counts = np.diff(np.append(starts, len(values)))
    return [[int(v), int(n)] for v, n in zip(values[starts], counts)]


def _run_length_decode(runs: object, num_fields: int, source: object, expected: int | None) -> np.ndarray:
    if not isinstance(runs, list):
        raise DataError(source, "feature_field must be a list of [field, count] runs")
    for run in runs:
        if not (isinstance(run, list) and len(run) == 2 and all(type(v) is int for v in run)
                and -1 <= run[0] < num_fields and run[1] > 0):
            raise DataError(source, f"bad feature_field run {quote(run)}")
    total = sum(run[1] for run in runs)
    if total == 0:
        raise DataError(source, "schema has no features")
    if total > MAX_FEATURES:
        raise DataError(source, f"schema claims {total:,} features, more than the {MAX_FEATURES:,} supported")
    if expected is not None and total != expected:
        raise DataError(source, f"schema describes {total:,} features but the model has {expected:,}")
    return np.repeat(np.array([r[0] for r in runs], dtype=np.int16), [r[1] for r in runs])


# --------------------------------------------------------------------------- a CSV's saved encoding

KINDS = ("categorical", "numeric")
CELLS = ("text", "inferred")  # how the cells were read: as text, or (before) as the types pandas guessed
DEFAULT_MIN_COUNT = 2


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
class CsvEncoding:
    """How a CSV's columns became fields, as a schema's `csv_encoding` holds it: the label column
    and each column's encoding (`afm.data.tabular.TabularEncoder` fits it and encodes rows with it)."""

    label: str
    columns: tuple[ColumnEncoding, ...]
    min_count: int = DEFAULT_MIN_COUNT
    cells: str = "text"  # "inferred": saved before cells were read as text (see `afm.data.tabular`)
    label_classes: tuple[str, str] | None = None  # a label of two texts: (read as 0, read as 1)

    def to_json(self) -> dict:
        cells = {"cells": "text"} if self.cells == "text" else {}
        classes = {"label_classes": list(self.label_classes)} if self.label_classes else {}
        return {"label": self.label, "min_count": self.min_count, **cells, **classes,
                "columns": [c.to_json() for c in self.columns]}

    def unknown_ids(self) -> np.ndarray:
        """(F,) int64: each categorical field's `<unknown>` feature id (the one after its values),
        -1 for a numeric field. Rows encoded with this encoding hold it where a cell's value was
        not kept from training."""
        ends = np.cumsum([c.num_features for c in self.columns], dtype=np.int64)  # (F,)
        categorical = np.array([c.kind == "categorical" for c in self.columns], dtype=bool)
        return np.where(categorical, ends - 1, -1)

    @classmethod
    def from_json(cls, obj: object, source: object = "csv_encoding") -> Self:
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


EXAMPLE_VALUES = 5  # values of a categorical column that `describe_columns` lists


def describe_columns(csv_encoding: dict | None) -> list[dict] | None:
    """What each CSV column was read as, for `afm info` and the app: name, kind, and for a
    categorical column the number of values kept (besides `<unknown>`) and the first few, for a
    numeric one the training rows' range, mean and standard deviation. None for libfm data."""
    if csv_encoding is None:
        return None
    encoder = CsvEncoding.from_json(csv_encoding)
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


# --------------------------------------------------------------------------- sources of schemas


def read_feature_names(path: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """Read a `feature<TAB>field<TAB>value` table (like frappe.features.tsv), strictly: every id a
    non-negative integer listed once, every line three columns.

    Returns the field names in first-appearance order and, per listed feature, its id, field
    index and value name."""
    raw = read_regular_file(path, MAX_TABLE_BYTES, lambda problem: DataError(path, problem))
    raw = check_text(raw, path)  # compressed, binary or UTF-16: said so; a UTF-8 byte-order mark: dropped
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text (byte {exc.start:,} is {raw[exc.start]:#04x})") from None
    lines = text.splitlines()
    expected = ["feature", "field", "value"]
    header = lines[0].split("\t") if lines else []
    if header[:3] != expected:
        raise DataError(path, f"header must start with feature<TAB>field<TAB>value, got {quote(lines[:1])}", line=1)
    field_index: dict[str, int] = {}
    first_line: dict[int, int] = {}
    ids, fields, values = [], [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) < 3:
            raise DataError(path, f"expected feature<TAB>field<TAB>value, got {len(cells)} column(s): {quote(line)}",
                            line=number)
        if not _DIGITS.fullmatch(cells[0].strip()):
            raise DataError(path, f"feature id {quote(cells[0])} is not a non-negative integer", line=number)
        feature = int(cells[0])
        if feature >= MAX_FEATURES:
            raise DataError(path, f"feature id {feature:,} is too large (ids must be below {MAX_FEATURES:,})",
                            line=number)
        if feature in first_line:
            raise DataError(path, f"feature id {feature} is listed twice (first on line {first_line[feature]})",
                            line=number)
        name = cells[1].strip()
        if not name:
            raise DataError(path, "the field name is empty", line=number)
        first_line[feature] = number
        ids.append(feature)
        fields.append(field_index.setdefault(name, len(field_index)))
        values.append(cells[2])
    if not ids:
        raise DataError(path, "the feature table lists no features")
    if len(field_index) > MAX_FIELDS:
        raise DataError(path, f"{len(field_index)} fields; at most {MAX_FIELDS} are supported")
    return list(field_index), np.array(ids, dtype=np.int64), np.array(fields, dtype=np.int16), values


def schema_from_tsv(path: str | os.PathLike, num_features: int) -> FieldSchema:
    """The schema a features.tsv describes, covering at least ids 0..num_features-1."""
    field_names, ids, fields, values = read_feature_names(path)
    feature_field = np.full(max(num_features, int(ids.max()) + 1), -1, dtype=np.int16)
    feature_field[ids] = fields
    return FieldSchema(field_names, feature_field, dict(zip(ids.tolist(), values)))


def schema_from_sizes(field_sizes: dict[str, int], num_features: int) -> FieldSchema:
    """Contiguous field ranges in the given order (the Frappe README's layout)."""
    sizes = list(field_sizes.values())
    fields = np.repeat(np.arange(len(sizes), dtype=np.int16), sizes)
    padding = np.full(max(0, num_features - len(fields)), -1, dtype=np.int16)
    return FieldSchema(tuple(field_sizes), np.concatenate([fields, padding]))


def infer_schema(feature_ids: list[np.ndarray], source: object, names: Sequence[str] | None = None) -> FieldSchema:
    """Each column its own field; the field owns the id range [min, max] seen in that column.
    `feature_ids`: the (N, F) id arrays of every split. `names`: the fields' names when known
    (used when there is one per column), else field0, field1, ..."""
    low = np.min([ids.min(axis=0) for ids in feature_ids], axis=0)  # (F,)
    high = np.max([ids.max(axis=0) for ids in feature_ids], axis=0)  # (F,)
    order = np.argsort(low)
    for a, b in zip(order[:-1], order[1:]):
        if high[a] >= low[b]:
            raise DataError(source, f"columns {a + 1} and {b + 1} share feature ids "
                            f"({low[a]}-{high[a]} vs {low[b]}-{high[b]}), so fields cannot be inferred "
                            "from id ranges; put a features.tsv (feature, field, value) beside the data")
    fields = np.full(int(high.max()) + 1, -1, dtype=np.int16)
    for f in range(len(low)):
        fields[low[f]: high[f] + 1] = f
    if names is None or len(names) != len(low):
        names = [f"field{f}" for f in range(len(low))]
    return FieldSchema(tuple(names), fields)
