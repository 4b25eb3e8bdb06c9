"""Datasets: a fast libfm reader, a CSV encoder, field schemas and the dataset registry.

Every model here sees a row as F (feature id, value) slots, one per *field*: column f of
`feature_ids` always holds field f's feature. That is what lets AFM form its F(F-1)/2 pairs
with fixed index tensors and lets the analysis label pair (f, g) as "user x item".

Sources:
- libfm files (`label id:value ...`), one per split (`NAME.{train,validation,test}.libfm`) or
  a single file that is split 70/20/10 with a seed. Fields come from a `*.features.tsv`
  (feature id -> field, value name) when one sits beside the files, from a built-in spec for
  the known datasets, or are inferred: each column its own field, its id range the field's range.
- CSV files: categorical columns become one-hot fields, numeric columns real-valued features
  x_i with their own embedding (eq. 1 allows any x_i), standardised on the training rows.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from afm.errors import DataError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = PROJECT_ROOT / "sample_data"
SPLITS = ("train", "valid", "test")
# libfm file suffix of each split, as the AFM authors name them.
LIBFM_SPLIT_SUFFIX = {"train": "train", "valid": "validation", "test": "test"}
# Embedding tables are allocated from the largest id; refuse ids that would need absurd memory
# (a hostile or corrupt file with id 10^12 must fail with a message, not an OOM).
MAX_FEATURES = 50_000_000
MAX_FIELDS = 256


# --------------------------------------------------------------------------- containers


@dataclass
class Split:
    """One split of a dataset: row r's field f holds feature `feature_ids[r, f]` with value x."""

    feature_ids: np.ndarray  # (N, F) int64
    feature_values: np.ndarray  # (N, F) float32, the x_i of eq. (1); 1 for one-hot features
    labels: np.ndarray  # (N,) float32

    def __post_init__(self):
        assert self.feature_ids.ndim == 2, f"feature_ids must be (N, F), got {self.feature_ids.shape}"
        assert self.feature_values.shape == self.feature_ids.shape, "ids and values must have one shape"
        assert self.labels.shape == (self.feature_ids.shape[0],), "one label per row"

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_fields(self) -> int:
        return int(self.feature_ids.shape[1])

    def take(self, rows: np.ndarray) -> Split:
        return Split(self.feature_ids[rows], self.feature_values[rows], self.labels[rows])


@dataclass(frozen=True)
class FieldSchema:
    """What the F columns and the feature ids mean. Saved inside every checkpoint."""

    field_names: tuple[str, ...]  # (F,)
    feature_field: tuple[int, ...]  # (num_features,) field index of each feature id, -1 if none
    feature_names: tuple[str, ...] | None = None  # (num_features,) value name, e.g. "Instagram"
    # For CSV data: how to encode new rows the same way (column kinds, vocabularies, scaling).
    csv_encoding: dict | None = None

    @property
    def num_fields(self) -> int:
        return len(self.field_names)

    @property
    def num_features(self) -> int:
        return len(self.feature_field)

    @property
    def num_pairs(self) -> int:
        return self.num_fields * (self.num_fields - 1) // 2

    def feature_label(self, feature_id: int) -> str:
        """Readable 'field=value' for one feature id."""
        f = self.feature_field[feature_id]
        field_name = self.field_names[f] if f >= 0 else "?"
        value = self.feature_names[feature_id] if self.feature_names else str(feature_id)
        return f"{field_name}={value}"

    def pair_names(self) -> list[str]:
        """'f x g' for each field pair in pair_index order (i < j, row-major)."""
        names = self.field_names
        return [f"{names[i]} x {names[j]}" for i, j in zip(*np.triu_indices(len(names), k=1))]

    def to_json(self) -> dict:
        return {
            "field_names": list(self.field_names),
            "feature_field": _run_length_encode(self.feature_field),
            "feature_names": list(self.feature_names) if self.feature_names else None,
            "csv_encoding": self.csv_encoding,
        }

    @classmethod
    def from_json(cls, obj: object, source: object = "schema") -> FieldSchema:
        """Rebuild from `to_json` output, validating everything (it may come from a hostile file)."""
        if not isinstance(obj, dict):
            raise DataError(source, "field schema is not a JSON object")
        names = obj.get("field_names")
        if not (isinstance(names, list) and 0 < len(names) <= MAX_FIELDS and all(isinstance(n, str) for n in names)):
            raise DataError(source, f"field_names must be a list of 1..{MAX_FIELDS} strings")
        feature_field = _run_length_decode(obj.get("feature_field"), len(names), source)
        feature_names = obj.get("feature_names")
        if feature_names is not None:
            if not (isinstance(feature_names, list) and len(feature_names) == len(feature_field)
                    and all(isinstance(n, str) for n in feature_names)):
                raise DataError(source, "feature_names must be one string per feature")
            feature_names = tuple(feature_names)
        csv_encoding = obj.get("csv_encoding")
        if csv_encoding is not None and not isinstance(csv_encoding, dict):
            raise DataError(source, "csv_encoding must be an object")
        return cls(tuple(names), feature_field, feature_names, csv_encoding)


def _run_length_encode(values: tuple[int, ...]) -> list[list[int]]:
    """[[value, count], ...]: a field map is a few long runs, so this keeps checkpoints small."""
    runs: list[list[int]] = []
    for v in values:
        if runs and runs[-1][0] == v:
            runs[-1][1] += 1
        else:
            runs.append([int(v), 1])
    return runs


def _run_length_decode(runs: object, num_fields: int, source: object) -> tuple[int, ...]:
    if not isinstance(runs, list):
        raise DataError(source, "feature_field must be a list of [field, count] runs")
    out: list[int] = []
    for run in runs:
        if not (isinstance(run, list) and len(run) == 2 and all(type(v) is int for v in run)
                and -1 <= run[0] < num_fields and run[1] > 0):
            raise DataError(source, f"bad feature_field run {run!r}")
        if len(out) + run[1] > MAX_FEATURES:
            raise DataError(source, f"more than {MAX_FEATURES} features")
        out.extend([run[0]] * run[1])
    if not out:
        raise DataError(source, "schema has no features")
    return tuple(out)


@dataclass
class Dataset:
    """Train/valid/test splits over one schema, plus where they came from."""

    name: str
    schema: FieldSchema
    splits: dict[str, Split]
    source: str
    notes: list[str] = field(default_factory=list)  # e.g. "split 70/20/10 with seed 0"

    def __post_init__(self):
        assert set(self.splits) == set(SPLITS), f"splits must be {SPLITS}, got {sorted(self.splits)}"
        for name, split in self.splits.items():
            assert split.num_fields == self.schema.num_fields, f"{name}: {split.num_fields} columns vs schema"

    @property
    def train(self) -> Split:
        return self.splits["train"]

    @property
    def valid(self) -> Split:
        return self.splits["valid"]

    @property
    def test(self) -> Split:
        return self.splits["test"]

    @property
    def label_range(self) -> tuple[float, float]:
        """Range predictions are clipped to for RMSE, as the authors do (from training labels)."""
        return float(self.train.labels.min()), float(self.train.labels.max())

    @property
    def is_binary(self) -> bool:
        """Labels are two classes ({0,1} or {-1,+1}), so the binary task applies."""
        values = np.unique(np.concatenate([s.labels for s in self.splits.values()]))
        return set(values.tolist()) <= {0.0, 1.0} or set(values.tolist()) <= {-1.0, 1.0}

    @cached_property
    def fingerprint(self) -> str:
        """Content hash of all splits: a checkpoint records it to recognise its training data."""
        h = hashlib.sha256()
        h.update(json.dumps([self.schema.num_features, self.schema.num_fields]).encode())
        for name in SPLITS:
            split = self.splits[name]
            for array in (split.feature_ids, split.feature_values, split.labels):
                h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()[:32]

    def info(self) -> dict:
        """What a checkpoint records about its training data."""
        return {"name": self.name, "source": self.source, "fingerprint": self.fingerprint,
                "label_range": list(self.label_range), "rows": {n: len(s) for n, s in self.splits.items()}}

    def summary(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "fields": self.schema.num_fields,
            "features": self.schema.num_features,
            "pairs": self.schema.num_pairs,
            **{f"{name}_rows": len(split) for name, split in self.splits.items()},
            "label_range": list(self.label_range),
            "fingerprint": self.fingerprint,
        }


# --------------------------------------------------------------------------- libfm reader


@dataclass
class _LibfmRows:
    split: Split
    line_numbers: np.ndarray  # (N,) 1-based line of each row, for error messages


_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[ord(c) for c in " \t\r\n\v\f"]] = True


def read_libfm(path: str | os.PathLike) -> Split:
    """Read a libfm file with the same number of features on every row (one per field)."""
    return _read_libfm(Path(path)).split


def _read_libfm(path: Path) -> _LibfmRows:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(path, f"cannot read file ({exc.strerror or exc})") from None
    return _parse_libfm(raw, path)


def _parse_libfm(raw: bytes, source: object) -> _LibfmRows:
    """Vectorised parse. The structure (one label, then `id:value` tokens) is checked with numpy
    on the raw bytes; the numbers are parsed by pandas' C reader. Any failure falls back to a
    line-by-line scan that names the first bad line and what is wrong with it."""
    if not raw.strip():
        raise DataError(source, "file is empty")
    buf = np.frombuffer(raw, dtype=np.uint8)
    is_space = _WHITESPACE[buf]  # (bytes,)
    newline_pos = np.flatnonzero(buf == ord("\n"))
    num_lines = len(newline_pos) + (0 if raw.endswith(b"\n") else 1)
    line_ends = np.append(newline_pos, len(buf)) if not raw.endswith(b"\n") else newline_pos
    # A token starts where a non-space byte follows a space (or the file start).
    token_start = np.flatnonzero(~is_space & np.concatenate(([True], is_space[:-1])))  # (T,)
    token_line = np.searchsorted(line_ends, token_start)  # (T,) 0-based line of each token
    tokens_per_line = np.bincount(token_line, minlength=num_lines)  # (L,)
    colon_pos = np.flatnonzero(buf == ord(":"))
    colon_token = np.searchsorted(token_start, colon_pos, side="right") - 1  # (C,)
    colons_per_token = np.bincount(colon_token, minlength=len(token_start))  # (T,)
    first_token = np.zeros(len(token_start), dtype=bool)
    first_token[np.searchsorted(token_line, np.flatnonzero(tokens_per_line), side="left")] = True
    # Labels carry no colon, every feature token exactly one.
    structure_ok = np.array_equal(colons_per_token, (~first_token).astype(colons_per_token.dtype))
    nonblank = np.flatnonzero(tokens_per_line > 0)  # (N,) 0-based lines that hold rows
    features_per_row = tokens_per_line[nonblank] - 1
    width = int(features_per_row[0]) if len(nonblank) else 0
    if not structure_ok or width == 0 or np.any(features_per_row != width):
        _diagnose_libfm(raw, source)  # raises with the line
        raise DataError(source, "malformed libfm data")  # pragma: no cover - diagnose always raises
    if width > MAX_FIELDS:
        raise DataError(source, f"{width} features per row; at most {MAX_FIELDS} fields are supported", line=1)
    try:
        table = pd.read_csv(
            io.BytesIO(raw.replace(b":", b" ")), sep=r"\s+", header=None, names=range(1 + 2 * width),
            dtype=np.float64, engine="c", index_col=False, skip_blank_lines=True,
        ).to_numpy()  # (N, 1 + 2F)
    except (ValueError, pd.errors.ParserError):
        _diagnose_libfm(raw, source)
        raise
    if table.shape[0] != len(nonblank) or not np.isfinite(table).all():
        _diagnose_libfm(raw, source)
    ids = table[:, 1::2]  # (N, F)
    bad = (ids < 0) | (ids != np.floor(ids)) | (ids >= MAX_FEATURES)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        value = ids[row][bad[row]][0]
        problem = ("is negative" if value < 0 else "is not an integer" if value != np.floor(value)
                   else f"is too large (ids must be below {MAX_FEATURES:,})")
        raise DataError(source, f"feature id {value:g} {problem}", line=int(nonblank[row]) + 1)
    split = Split(ids.astype(np.int64), table[:, 2::2].astype(np.float32), table[:, 0].astype(np.float32))
    return _LibfmRows(split, nonblank.astype(np.int64) + 1)


def _diagnose_libfm(raw: bytes, source: object) -> None:
    """Slow path, only after the fast path failed: find the first bad line and say why."""
    width = None
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            label = float(tokens[0])
        except ValueError:
            raise DataError(source, f"label {tokens[0]!r} is not a number", line=number) from None
        if not np.isfinite(label):
            raise DataError(source, f"label {tokens[0]!r} is not finite", line=number)
        if len(tokens) == 1:
            raise DataError(source, "row has a label but no features", line=number)
        for token in tokens[1:]:
            parts = token.split(":")
            if len(parts) != 2:
                raise DataError(source, f"token {token!r} is not of the form id:value", line=number)
            try:
                feature_id, value = int(parts[0]), float(parts[1])
            except ValueError:
                raise DataError(source, f"token {token!r} is not of the form id:value with an "
                                "integer id and a numeric value", line=number) from None
            if feature_id < 0:
                raise DataError(source, f"feature id {feature_id} is negative", line=number)
            if not np.isfinite(value):
                raise DataError(source, f"value in {token!r} is not finite", line=number)
        if width is None:
            width = len(tokens) - 1
        elif len(tokens) - 1 != width:
            raise DataError(source, f"row has {len(tokens) - 1} features, the first row has {width}; "
                            "every row needs exactly one feature per field", line=number)
    raise DataError(source, "no rows" if width is None else "malformed libfm data")


# --------------------------------------------------------------------------- fields


def read_feature_names(path: str | os.PathLike) -> tuple[list[str], dict[int, int], dict[int, str]]:
    """Read a `feature<TAB>field<TAB>value` table (like frappe.features.tsv).

    Returns the field names in first-appearance order, feature id -> field index, id -> value.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(path, f"cannot read feature table ({exc})") from None
    expected = ["feature", "field", "value"]
    if list(table.columns[:3]) != expected:
        raise DataError(path, f"header must start with {expected}, got {list(table.columns)}", line=1)
    ids = pd.to_numeric(table["feature"], errors="coerce")
    bad = ids.isna() | (ids < 0) | (ids >= MAX_FEATURES)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(path, f"feature id {table['feature'].iloc[row]!r} is not a valid id", line=row + 2)
    field_names = list(dict.fromkeys(table["field"]))
    field_index = {name: i for i, name in enumerate(field_names)}
    feature_field = dict(zip(ids.astype(int).tolist(), table["field"].map(field_index).tolist()))
    feature_value = dict(zip(ids.astype(int).tolist(), table["value"].tolist()))
    return field_names, feature_field, feature_value


def schema_from_tsv(path: str | os.PathLike, num_features: int) -> FieldSchema:
    field_names, feature_field, feature_value = read_feature_names(path)
    size = max(num_features, max(feature_field) + 1)
    fields = tuple(feature_field.get(i, -1) for i in range(size))
    names = tuple(feature_value.get(i, str(i)) for i in range(size))
    return FieldSchema(tuple(field_names), fields, names)


def schema_from_sizes(field_sizes: dict[str, int], num_features: int) -> FieldSchema:
    """Contiguous field ranges in the given order (the Frappe README's layout)."""
    fields: list[int] = []
    for index, size in enumerate(field_sizes.values()):
        fields.extend([index] * size)
    fields.extend([-1] * max(0, num_features - len(fields)))
    return FieldSchema(tuple(field_sizes), tuple(fields))


def infer_schema(splits: dict[str, Split], source: object) -> FieldSchema:
    """Each column its own field; the field owns the id range [min, max] seen in that column."""
    ids = np.concatenate([s.feature_ids for s in splits.values()])  # (N_all, F)
    low, high = ids.min(axis=0), ids.max(axis=0)  # (F,)
    order = np.argsort(low)
    for a, b in zip(order[:-1], order[1:]):
        if high[a] >= low[b]:
            raise DataError(source, f"columns {a + 1} and {b + 1} share feature ids "
                            f"({low[a]}-{high[a]} vs {low[b]}-{high[b]}), so fields cannot be inferred "
                            "from id ranges; put a features.tsv (feature, field, value) beside the data")
    num_features = int(high.max()) + 1
    fields = np.full(num_features, -1, dtype=np.int64)
    for f in range(ids.shape[1]):
        fields[low[f]: high[f] + 1] = f
    return FieldSchema(tuple(f"field{f}" for f in range(ids.shape[1])), tuple(fields.tolist()))


def _order_columns_by_field(rows: _LibfmRows, schema: FieldSchema, source: object) -> Split:
    """Put field f's feature in column f, whatever order the file lists them in."""
    split = rows.split
    if split.num_fields != schema.num_fields:
        raise DataError(source, f"rows have {split.num_fields} features but the schema has "
                        f"{schema.num_fields} fields", line=int(rows.line_numbers[0]))
    if split.feature_ids.max() >= schema.num_features:
        row = int(np.flatnonzero(split.feature_ids.max(axis=1) >= schema.num_features)[0])
        raise DataError(source, f"feature id {split.feature_ids[row].max()} is beyond the schema's "
                        f"{schema.num_features} features", line=int(rows.line_numbers[row]))
    feature_field = np.asarray(schema.feature_field)
    row_fields = feature_field[split.feature_ids]  # (N, F)
    order = np.argsort(row_fields, axis=1, kind="stable")  # (N, F)
    sorted_fields = np.take_along_axis(row_fields, order, axis=1)
    bad = np.any(sorted_fields != np.arange(schema.num_fields), axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        seen = [schema.field_names[f] if f >= 0 else "unknown" for f in row_fields[row]]
        raise DataError(source, f"row needs one feature of each field {list(schema.field_names)}, "
                        f"has {seen}", line=int(rows.line_numbers[row]))
    if np.all(order == np.arange(schema.num_fields)):
        return split
    return Split(np.take_along_axis(split.feature_ids, order, axis=1),
                 np.take_along_axis(split.feature_values, order, axis=1), split.labels)


# --------------------------------------------------------------------------- loaders


def split_indices(num_rows: int, seed: int, fractions=(0.7, 0.2, 0.1)) -> dict[str, np.ndarray]:
    """Seeded 70/20/10 split for data that comes without published splits."""
    permutation = np.random.default_rng(seed).permutation(num_rows)
    n_train = int(round(fractions[0] * num_rows))
    n_valid = int(round(fractions[1] * num_rows))
    return {"train": np.sort(permutation[:n_train]),
            "valid": np.sort(permutation[n_train:n_train + n_valid]),
            "test": np.sort(permutation[n_train + n_valid:])}


def find_libfm_splits(directory: Path) -> dict[str, Path] | None:
    """`NAME.{train,validation,test}.libfm` in a directory, or None when there is no such set."""
    for train in sorted(directory.glob("*.train.libfm")):
        stem = train.name[: -len(".train.libfm")]
        paths = {split: directory / f"{stem}.{suffix}.libfm" for split, suffix in LIBFM_SPLIT_SUFFIX.items()}
        if all(p.is_file() for p in paths.values()):
            return paths
    return None


def load_libfm_dir(directory: str | os.PathLike, name: str | None = None,
                   field_sizes: dict[str, int] | None = None) -> Dataset:
    directory = Path(directory)
    paths = find_libfm_splits(directory)
    if paths is None:
        raise DataError(directory, "no NAME.train.libfm, NAME.validation.libfm and NAME.test.libfm here")
    rows = {split: _read_libfm(path) for split, path in paths.items()}
    widths = {split: r.split.num_fields for split, r in rows.items()}
    if len(set(widths.values())) != 1:
        raise DataError(directory, f"splits have different numbers of fields: {widths}")
    num_features = max(int(r.split.feature_ids.max()) for r in rows.values()) + 1
    tsv = sorted(directory.glob("*features.tsv"))
    if tsv:
        schema = schema_from_tsv(tsv[0], num_features)
    elif field_sizes is not None and sum(field_sizes.values()) >= num_features:
        schema = schema_from_sizes(field_sizes, num_features)
    else:
        schema = infer_schema({s: r.split for s, r in rows.items()}, directory)
    splits = {s: _order_columns_by_field(rows[s], schema, paths[s]) for s in SPLITS}
    return Dataset(name or directory.name, schema, splits, str(directory))


def load_libfm_file(path: str | os.PathLike, seed: int = 0) -> Dataset:
    path = Path(path)
    rows = _read_libfm(path)
    schema = infer_schema({"all": rows.split}, path)
    everything = _order_columns_by_field(rows, schema, path)
    splits = {name: everything.take(idx) for name, idx in split_indices(len(everything), seed).items()}
    return Dataset(path.stem, schema, splits, str(path), notes=[f"split 70/20/10 with seed {seed}"])


LABEL_COLUMN_NAMES = ("label", "target", "y", "rating", "click")


def load_csv(path: str | os.PathLike, label: str | None = None, seed: int = 0,
             categorical: list[str] | None = None, numeric: list[str] | None = None) -> Dataset:
    """A CSV with a header. Each other column becomes one field.

    Column kinds: text, boolean and integer columns are categorical (one-hot, one feature per
    value plus an `<unknown>` feature for values never seen); float columns are numeric (one
    feature whose x is the value standardised on the training rows). Override with
    `categorical=` / `numeric=`.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read CSV ({exc})") from None
    except pd.errors.ParserError as exc:
        raise DataError(path, f"not a valid CSV: {exc}") from None
    except pd.errors.EmptyDataError:
        raise DataError(path, "file is empty") from None
    if len(frame) < 10:
        raise DataError(path, f"only {len(frame)} data rows; at least 10 are needed to split and train")
    label = label or _guess_label_column(frame)
    if label not in frame.columns:
        raise DataError(path, f"no label column {label!r}; columns are {list(frame.columns)}", line=1)
    labels = pd.to_numeric(frame[label], errors="coerce")
    bad = labels.isna() | ~np.isfinite(labels.fillna(0))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(path, f"label {frame[label].iloc[row]!r} in column {label!r} is not a number",
                        line=row + 2)
    columns = [c for c in frame.columns if c != label]
    if len(columns) < 2:
        raise DataError(path, "need at least two feature columns besides the label", line=1)
    if len(columns) > MAX_FIELDS:
        raise DataError(path, f"{len(columns)} feature columns; at most {MAX_FIELDS} are supported", line=1)
    index = split_indices(len(frame), seed)
    encoding = _fit_csv_encoding(frame, columns, index["train"], label, categorical or [], numeric or [], path)
    schema = schema_from_csv_encoding(encoding)
    ids, values = encode_csv_frame(frame, schema)
    everything = Split(ids, values, labels.to_numpy(np.float32))
    splits = {name: everything.take(idx) for name, idx in index.items()}
    return Dataset(path.stem, schema, splits, str(path), notes=[f"split 70/20/10 with seed {seed}"])


def _guess_label_column(frame: pd.DataFrame) -> str:
    lowered = {str(c).lower(): c for c in frame.columns}
    for name in LABEL_COLUMN_NAMES:
        if name in lowered:
            return lowered[name]
    return frame.columns[-1]


def _fit_csv_encoding(frame, columns, train_rows, label, categorical, numeric, source) -> dict:
    unknown = set(categorical + numeric) - set(columns)
    if unknown:
        raise DataError(source, f"columns {sorted(unknown)} are not in the file", line=1)
    specs = []
    for column in columns:
        series = frame[column]
        is_numeric = column in numeric or (
            column not in categorical and pd.api.types.is_float_dtype(series.dtype))
        if is_numeric:
            values = pd.to_numeric(series, errors="coerce")
            if values.isna().all():
                raise DataError(source, f"numeric column {column!r} has no numbers", line=2)
            train = values.iloc[train_rows]
            std = float(train.std()) if train.notna().sum() > 1 else 1.0
            specs.append({"name": str(column), "kind": "numeric", "mean": float(train.mean()),
                          "std": std if std > 0 else 1.0})
        else:
            vocabulary = list(dict.fromkeys(series.astype(str)))
            specs.append({"name": str(column), "kind": "categorical", "values": vocabulary})
    return {"label": str(label), "columns": specs}


def schema_from_csv_encoding(encoding: dict) -> FieldSchema:
    fields: list[int] = []
    names: list[str] = []
    for index, spec in enumerate(encoding["columns"]):
        values = spec["values"] + ["<unknown>"] if spec["kind"] == "categorical" else ["value"]
        fields.extend([index] * len(values))
        names.extend(values)
    return FieldSchema(tuple(spec["name"] for spec in encoding["columns"]), tuple(fields), tuple(names),
                       csv_encoding=encoding)


def encode_csv_frame(frame: pd.DataFrame, schema: FieldSchema) -> tuple[np.ndarray, np.ndarray]:
    """Encode rows with a fitted schema (the same one a checkpoint carries)."""
    assert schema.csv_encoding is not None, "schema does not come from a CSV"
    n = len(frame)
    ids = np.zeros((n, schema.num_fields), dtype=np.int64)  # (N, F)
    values = np.ones((n, schema.num_fields), dtype=np.float32)  # (N, F)
    offset = 0
    for f, spec in enumerate(schema.csv_encoding["columns"]):
        if spec["name"] not in frame.columns:
            raise DataError("CSV", f"column {spec['name']!r} that the model was trained on is missing")
        series = frame[spec["name"]]
        if spec["kind"] == "numeric":
            x = pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
            # Missing numbers sit at the training mean, i.e. standardised value 0.
            values[:, f] = np.nan_to_num((x - spec["mean"]) / spec["std"], nan=0.0, posinf=0.0, neginf=0.0)
            ids[:, f] = offset
            offset += 1
        else:
            lookup = {v: i for i, v in enumerate(spec["values"])}
            unknown_id = len(spec["values"])
            ids[:, f] = offset + series.astype(str).map(lookup).fillna(unknown_id).to_numpy(np.int64)
            offset += len(spec["values"]) + 1
    return ids, values


# --------------------------------------------------------------------------- registry

# Published field layout of the AFM authors' Frappe files (the data README): 10 one-hot fields.
FRAPPE_FIELDS = {"user": 957, "item": 4082, "daytime": 7, "weekday": 7, "isweekend": 2,
                 "homework": 3, "cost": 2, "weather": 9, "country": 80, "city": 233}
ML_TAG_FIELDS_NAMES = ("user", "movie", "tag")


@dataclass(frozen=True)
class RegistryEntry:
    description: str
    files: str  # what the directory must hold


REGISTRY = {
    "sample": RegistryEntry("Synthetic sample with planted pairwise interactions (bundled)",
                            "sample.{train,validation,test}.libfm"),
    "frappe": RegistryEntry("Frappe app-usage context data, 10 fields, 5,382 features (AFM paper)",
                            "frappe.{train,validation,test}.libfm"),
    "ml-tag": RegistryEntry("MovieLens tag data, 3 fields (user, movie, tag), 90,445 features",
                            "ml-tag.{train,validation,test}.libfm"),
}


def data_root_candidates(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where registry datasets are looked for, first match wins. An explicit directory is the
    only place looked at: a user who names one does not want a copy found elsewhere."""
    if data_dir:
        return [Path(data_dir)]
    candidates = []
    if os.environ.get("AFM_DATA_DIR"):
        candidates.append(Path(os.environ["AFM_DATA_DIR"]))
    candidates += [Path.cwd() / "data", PROJECT_ROOT / "data", PROJECT_ROOT.parent / "shared" / "data"]
    return candidates


def resolve_dataset_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Find the directory holding dataset `name` (the root itself or root/name)."""
    looked = []
    for root in data_root_candidates(data_dir):
        for candidate in (root / name, root):
            looked.append(str(candidate))
            if candidate.is_dir() and (candidate / f"{name}.train.libfm").is_file():
                return candidate
    raise DataError(name, f"dataset not found (looked in {', '.join(dict.fromkeys(looked))}); "
                    f"fetch it with `python -m afm download {name} --dest data` or pass --data-dir")


def load_dataset(spec: str | os.PathLike, data_dir: str | os.PathLike | None = None, seed: int = 0,
                 label: str | None = None) -> Dataset:
    """A registry name (`sample`, `frappe`, `ml-tag`), a directory of libfm splits, a single
    libfm file or a CSV file."""
    spec_str = str(spec)
    if spec_str == "sample":
        return load_libfm_dir(SAMPLE_DIR, name="sample")
    if spec_str == "frappe":
        return load_libfm_dir(resolve_dataset_dir("frappe", data_dir), name="frappe", field_sizes=FRAPPE_FIELDS)
    if spec_str == "ml-tag":
        dataset = load_libfm_dir(resolve_dataset_dir("ml-tag", data_dir), name="ml-tag")
        if dataset.schema.field_names == ("field0", "field1", "field2"):
            dataset.schema = FieldSchema(ML_TAG_FIELDS_NAMES, dataset.schema.feature_field)
        return dataset
    path = Path(spec_str)
    if path.is_dir():
        return load_libfm_dir(path)
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return load_csv(path, label=label, seed=seed)
        return load_libfm_file(path, seed=seed)
    names = ", ".join(REGISTRY)
    raise DataError(spec_str, f"not a dataset name ({names}), directory or file")
