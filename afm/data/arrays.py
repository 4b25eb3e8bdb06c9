"""Datasets as memory-mapped arrays on disk, for data larger than memory.

A directory holds, per split, `SPLIT.ids.npy` (N, F) int64, `SPLIT.values.npy` (N, F) float32
and `SPLIT.labels.npy` (N,) float32, and beside them `arrays.json`: the format, the field
schema, the rows of each split and what would otherwise need every row to compute (the label
range, whether labels are binary, the content fingerprint, the same one the rows would have in
memory). `open_arrays` (and `load_dataset(DIR)`) gives an ordinary `Dataset` whose arrays are
read-only memory maps: the operating system pages rows in as they are read and may drop them
again at any time, so a process holds only the rows it is working on (the trainer streams
them in blocks, `afm.batches`).

Written once: from a directory of libfm splits a chunk of lines at a time (a first pass checks
every line and measures, a second writes; memory holds one chunk), or from any dataset loaded
in memory (a CSV, a single libfm file). The arrays go into a temporary directory beside the
destination, renamed into place when complete: a reader never sees a part.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from afm.data.libfm import find_libfm_splits, iter_libfm_rows, order_columns_by_field, schema_of_dir
from afm.data.schema import MAX_TABLE_BYTES, FieldSchema
from afm.data.splits import SPLITS, Dataset, Split, content_fingerprint
from afm.errors import ConfigError, DataError
from afm.files import read_regular_file, write_atomic

MANIFEST = "arrays.json"
FORMAT = "afm-arrays"
FORMAT_VERSION = 1
ARRAYS = {"ids": (np.int64, 2), "values": (np.float32, 2), "labels": (np.float32, 1)}  # name: (dtype, ndim)
COPY_ROWS = 1 << 18  # rows copied at once from an in-memory dataset
CHECK_ROWS = 1 << 18  # rows checked at once when a directory is opened


def is_arrays_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST).is_file()


def array_path(directory: Path, split: str, name: str) -> Path:
    return directory / f"{split}.{name}.npy"


@dataclass
class MappedDataset(Dataset):
    """A `Dataset` over memory-mapped arrays; what needs every row comes from the manifest."""

    stats: dict = field(default_factory=dict)  # label_range, binary, fingerprint

    @property
    def label_range(self) -> tuple[float, float]:
        low, high = self.stats["label_range"]
        return float(low), float(high)

    @property
    def is_binary(self) -> bool:
        return bool(self.stats["binary"])

    @property
    def distinct_labels(self) -> tuple[float, ...] | None:
        """From the manifest, without reading the labels: known only for two classes."""
        return tuple(sorted(set(self.label_range))) if self.is_binary else None

    @property
    def fingerprint(self) -> str:
        return self.stats["fingerprint"]


# --------------------------------------------------------------------------- writing


class LabelStats:
    """Label range of the training rows and whether all labels are two classes, row chunk by chunk."""

    def __init__(self):
        self.low, self.high = np.inf, -np.inf
        self.values: set[float] = set()  # distinct labels while there are at most three

    def add(self, split: str, labels: np.ndarray) -> None:
        if split == "train" and len(labels):
            self.low, self.high = min(self.low, float(labels.min())), max(self.high, float(labels.max()))
        if len(self.values) <= 2:
            self.values |= set(np.unique(labels).tolist())

    def to_json(self) -> dict:
        binary = self.values <= {0.0, 1.0} or self.values <= {-1.0, 1.0}
        return {"label_range": [self.low, self.high], "binary": bool(binary)}


def check_new_destination(dest: str | os.PathLike) -> Path:
    dest = Path(dest)
    if dest.exists():
        raise ConfigError(f"--dest {dest}: already exists; give a new directory (arrays are written once)")
    return dest


class ArraysWriter:
    """A new arrays directory, filled split by split with rows in order. Use as a context
    manager: on success the manifest is written and the directory renamed into place; on any
    failure the temporary directory is removed and nothing appears at `dest`."""

    def __init__(self, dest: str | os.PathLike, schema: FieldSchema, rows: dict[str, int], name: str,
                 location: str, notes: Sequence[str] = ()):
        self.dest = check_new_destination(dest)
        self.schema, self.rows, self.name, self.location, self.notes = schema, dict(rows), name, location, list(notes)
        self.filled = dict.fromkeys(SPLITS, 0)
        self.labels = LabelStats()
        self.temporary = self.dest.parent / f".{self.dest.name}.{os.getpid()}.{secrets.token_hex(6)}.part"
        self.arrays: dict[tuple[str, str], np.memmap] = {}

    def __enter__(self) -> ArraysWriter:
        try:
            self.temporary.mkdir(parents=True)
            fields = self.schema.num_fields
            for split in SPLITS:
                for name, (dtype, ndim) in ARRAYS.items():
                    shape = (self.rows[split], fields) if ndim == 2 else (self.rows[split],)
                    self.arrays[split, name] = np.lib.format.open_memmap(
                        array_path(self.temporary, split, name), mode="w+", dtype=dtype, shape=shape)
        except OSError as exc:
            self._remove()
            raise ConfigError(f"--dest {self.dest}: cannot write here ({exc.strerror or exc})") from None
        return self

    def append(self, split: str, rows: Split) -> None:
        start, stop = self.filled[split], self.filled[split] + len(rows)
        assert stop <= self.rows[split], f"{split}: more rows than announced ({stop} > {self.rows[split]})"
        self.arrays[split, "ids"][start:stop] = rows.feature_ids
        self.arrays[split, "values"][start:stop] = rows.feature_values
        self.arrays[split, "labels"][start:stop] = rows.labels
        self.labels.add(split, rows.labels)
        self.filled[split] = stop

    def finish(self) -> MappedDataset:
        assert self.filled == self.rows, f"rows written {self.filled} differ from those announced {self.rows}"
        for array in self.arrays.values():
            array.flush()
        self.arrays.clear()
        splits = {split: _open_split(self.temporary, split, self.rows[split], self.schema.num_fields, self.temporary)
                  for split in SPLITS}
        stats = {**self.labels.to_json(), "fingerprint": content_fingerprint(self.schema, splits)}
        # "source" in the manifest: the arrays format predates the name `location`.
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "name": self.name, "source": self.location,
                    "notes": self.notes, "num_fields": self.schema.num_fields, "rows": self.rows, **stats,
                    "schema": self.schema.to_json()}
        write_atomic(self.temporary / MANIFEST, json.dumps(manifest).encode(),
                     lambda problem: ConfigError(f"--dest {self.dest}: {problem}"))
        try:
            os.rename(self.temporary, self.dest)
        except OSError as exc:
            raise ConfigError(f"--dest {self.dest}: cannot create it ({exc.strerror or exc})") from None
        return open_arrays(self.dest)

    def _remove(self) -> None:
        self.arrays.clear()
        shutil.rmtree(self.temporary, ignore_errors=True)

    def __exit__(self, exc_type, exc, traceback) -> bool:
        if exc_type is not None:
            self._remove()
        return False


def write_arrays(dataset: Dataset, dest: str | os.PathLike) -> MappedDataset:
    """Write a dataset that is in memory (a CSV, a single libfm file) as arrays, COPY_ROWS rows
    at a time."""
    rows = {name: len(split) for name, split in dataset.splits.items()}
    with ArraysWriter(dest, dataset.schema, rows, dataset.name, dataset.location, dataset.notes) as writer:
        for name, split in dataset.splits.items():
            for start in range(0, len(split), COPY_ROWS):
                writer.append(name, split.take(np.arange(start, min(start + COPY_ROWS, len(split)))))
        return writer.finish()


def encode_libfm_dir(directory: str | os.PathLike, dest: str | os.PathLike, name: str | None = None,
                     field_sizes: dict[str, int] | None = None, field_names: Sequence[str] | None = None,
                     schema: FieldSchema | None = None) -> MappedDataset:
    """Stream a directory of libfm splits into arrays (see the module docstring). With `schema`
    (a checkpoint's), rows are checked against that model's fields and table, as
    `load_libfm_dir` does."""
    directory = Path(directory)
    check_new_destination(dest)
    paths = find_libfm_splits(directory)
    if paths is None:
        raise DataError(directory, "no NAME.train.libfm, NAME.validation.libfm and NAME.test.libfm here")
    rows, widths, low, high = {}, {}, [], []
    for split, path in paths.items():  # pass 1: every line checked, rows counted, id ranges measured
        rows[split] = 0
        for chunk in iter_libfm_rows(path):
            ids = chunk.split.feature_ids  # (n, F)
            widths[split] = ids.shape[1]
            rows[split] += len(ids)
            low.append(ids.min(axis=0))
            high.append(ids.max(axis=0))
    if len(set(widths.values())) != 1:
        raise DataError(directory, f"splits have different numbers of fields: {widths}")
    if schema is None:
        schema = schema_of_dir(directory, [np.stack([np.min(low, axis=0), np.max(high, axis=0)])], field_sizes,
                               field_names)
    with ArraysWriter(dest, schema, rows, name or directory.name, str(directory)) as writer:
        for split, path in paths.items():  # pass 2: columns in field order, written
            for chunk in iter_libfm_rows(path):
                writer.append(split, order_columns_by_field(chunk, schema, path))
        return writer.finish()


# --------------------------------------------------------------------------- reading

NPY_MAGIC = b"\x93NUMPY"  # how every .npy file starts


def _open_split(directory: Path, split: str, rows: int, fields: int, source: object) -> Split:
    arrays = {}
    for name, (dtype, ndim) in ARRAYS.items():
        path = array_path(directory, split, name)
        try:
            with open(path, "rb") as handle:  # numpy takes what is not an .npy file for a pickle
                start = handle.read(len(NPY_MAGIC))
            if start != NPY_MAGIC:
                raise DataError(source, f"{path.name} is not an .npy array ("
                                f"{'empty' if not start else 'it does not start as one'}); encode the data again "
                                "with `afm encode`")
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise DataError(source, f"{path.name} is missing") from None
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(source, f"{path.name} is not a readable .npy array ({str(exc)[:120]})") from None
        shape = (rows, fields) if ndim == 2 else (rows,)
        if array.dtype != np.dtype(dtype) or array.shape != shape:
            raise DataError(source, f"{path.name} holds {array.dtype} {array.shape}; the manifest needs "
                            f"{np.dtype(dtype)} {shape}")
        arrays[name] = array
    return Split(arrays["ids"], arrays["values"], arrays["labels"])


def check_split_contents(split: Split, schema: FieldSchema, stored: FieldSchema, name: str,
                         source: object) -> None:
    """Every id of the split within the table and in its own field's column, every value and
    label finite in float32: checked `CHECK_ROWS` rows at a time (memory maps stay unread beyond
    a chunk), so a hand-edited or damaged array is an error naming the split, not an IndexError
    in training."""
    num_features = min(schema.num_features, stored.num_features)
    columns = np.arange(split.num_fields)
    for start in range(0, len(split), CHECK_ROWS):
        ids = np.asarray(split.feature_ids[start:start + CHECK_ROWS])  # (n, F)
        bad = (ids < 0) | (ids >= num_features)
        if bad.any():
            row, field = (int(v[0]) for v in np.nonzero(bad))
            raise DataError(source, f"the {name} split holds feature id {ids[row, field]} (row {start + row:,}, "
                            f"column {field}), outside the schema's ids 0..{num_features - 1:,}; encode the data "
                            "again with `afm encode`")
        wrong = schema.feature_field[ids] != columns  # (n, F): column f holds field f's features
        if wrong.any():
            row, field = (int(v[0]) for v in np.nonzero(wrong))
            raise DataError(source, f"the {name} split holds feature id {ids[row, field]} in column {field} "
                            f"(row {start + row:,}), which is not a feature of field "
                            f"{schema.field_names[field]!r}; encode the data again with `afm encode`")
        for what, array in (("values", split.feature_values), ("labels", split.labels)):
            part = np.asarray(array[start:start + CHECK_ROWS])  # float32: finite is within range
            bad = ~np.isfinite(part)
            if bad.any():
                row = int(np.nonzero(bad)[0][0])
                raise DataError(source, f"the {name} split's {what} hold {part[bad][0]:g} (row {start + row:,}); "
                                "every value and label must be a finite number")


def read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    raw = read_regular_file(path, MAX_TABLE_BYTES, lambda problem: DataError(path, problem))
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise DataError(path, "is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(path, f"not an arrays manifest (no \"format\": \"{FORMAT}\")")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(path, f"format version {str(manifest.get('format_version'))[:20]!r} is not supported "
                        f"(this version reads {FORMAT_VERSION})")
    rows = manifest.get("rows")
    if not (isinstance(rows, dict) and set(rows) == set(SPLITS)
            and all(type(n) is int and n >= 0 for n in rows.values())):
        raise DataError(path, f"rows must give a count >= 0 for each of {SPLITS}")
    low_high = manifest.get("label_range")
    if not (isinstance(low_high, list) and len(low_high) == 2 and all(isinstance(v, (int, float)) for v in low_high)
            and isinstance(manifest.get("binary"), bool) and isinstance(manifest.get("fingerprint"), str)
            and isinstance(manifest.get("name"), str) and isinstance(manifest.get("source"), str)):
        raise DataError(path, "label_range, binary, fingerprint, name and source are missing or of the wrong type")
    return manifest


def open_arrays(directory: str | os.PathLike, schema: FieldSchema | None = None) -> MappedDataset:
    """The arrays in `directory` as a dataset, memory-mapped read-only. With `schema` (a
    checkpoint's), the arrays must have been encoded as that model's data was: the same fields,
    the same meaning of every id they use, the same CSV encoding."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    stored = FieldSchema.from_json(manifest.get("schema"), directory / MANIFEST)
    if stored.num_fields != manifest.get("num_fields"):
        raise DataError(directory / MANIFEST, "the schema and num_fields disagree")
    if schema is not None:
        check_same_encoding(stored, schema, directory)
    splits = {split: _open_split(directory, split, manifest["rows"][split], stored.num_fields, directory)
              for split in SPLITS}
    for name, split in splits.items():
        check_split_contents(split, schema or stored, stored, name, directory)
    stats = {key: manifest[key] for key in ("label_range", "binary", "fingerprint")}
    notes = [str(n) for n in manifest.get("notes", []) if isinstance(n, str)]
    notes.append(f"memory-mapped arrays written from {manifest['source']}")
    return MappedDataset(manifest["name"], schema or stored, splits, str(directory), notes, stats=stats)


def check_same_encoding(stored: FieldSchema, model: FieldSchema, directory: Path) -> None:
    """Ids of these arrays mean to the model what they meant when the arrays were written."""
    if stored.csv_encoding != model.csv_encoding:
        raise DataError(directory, "these arrays were encoded differently from the model's training data; encode "
                        "the data again with `afm encode --schema-from CHECKPOINT`")
    if stored.num_fields != model.num_fields:
        raise DataError(directory, f"the arrays have {stored.num_fields} fields, the model {model.num_fields}")
    shared = min(stored.num_features, model.num_features)
    known = stored.feature_field[:shared] >= 0
    if not np.array_equal(stored.feature_field[:shared][known], model.feature_field[:shared][known]):
        raise DataError(directory, "the arrays put feature ids in other fields than the model does; encode the "
                        "data again with `afm encode --schema-from CHECKPOINT`")
