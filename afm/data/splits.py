"""A dataset is train/valid/test splits over one field schema.

Every model here sees a row as F (feature id, value) slots, one per *field*: column f of
`feature_ids` always holds field f's feature. That is what lets AFM form its F(F-1)/2 pairs
with fixed index tensors and lets the analysis label pair (f, g) as "user x item".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from afm.data.schema import FieldSchema, describe_columns
from afm.errors import ConfigError, DataError, quote

if TYPE_CHECKING:
    import torch

SPLITS = ("train", "valid", "test")


@dataclass
class Split:
    """One split of a dataset: row r's field f holds feature `feature_ids[r, f]` with value x."""

    feature_ids: np.ndarray  # (N, F) int64: ids are int64 from here on (pair keys need the range)
    feature_values: np.ndarray  # (N, F) float32, the x_i of eq. (1); 1 for one-hot features
    labels: np.ndarray  # (N,) float32

    def __post_init__(self):
        assert self.feature_ids.ndim == 2, f"feature_ids must be (N, F), got {self.feature_ids.shape}"
        assert self.feature_values.shape == self.feature_ids.shape, "ids and values must have one shape"
        assert self.labels.shape == (self.feature_ids.shape[0],), "one label per row"
        if self.feature_ids.dtype != np.int64:
            self.feature_ids = self.feature_ids.astype(np.int64)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_fields(self) -> int:
        return int(self.feature_ids.shape[1])

    @property
    def one_hot(self) -> bool:
        """Every x is 1: the rows are pure one-hot features (the distinct-pair paths apply). Checked a
        million rows at a time: memory-mapped values larger than memory stay unread beyond a chunk."""
        rows = 1 << 20
        return all(bool((self.feature_values[start:start + rows] == 1).all())
                   for start in range(0, len(self), rows))

    def take(self, rows: np.ndarray) -> Split:
        return Split(self.feature_ids[rows], self.feature_values[rows], self.labels[rows])

    def tensors(self, rows: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids (N, F), values (N, F), labels (N,)) as tensors, of all rows or of `rows`."""
        part = self if rows is None else self.take(rows)
        import torch  # here: reading data needs no torch (afm.data.bounded's reader starts without it)

        return (torch.from_numpy(part.feature_ids), torch.from_numpy(part.feature_values),
                torch.from_numpy(part.labels))


def split_indices(num_rows: int, seed: int, fractions=(0.7, 0.2, 0.1)) -> dict[str, np.ndarray]:
    """Seeded 70/20/10 split for data that comes without published splits."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"the split's seed must be a whole number >= 0, got {seed!r}")
    permutation = np.random.default_rng(seed).permutation(num_rows)
    n_train = int(round(fractions[0] * num_rows))
    n_valid = int(round(fractions[1] * num_rows))
    return {"train": np.sort(permutation[:n_train]),
            "valid": np.sort(permutation[n_train:n_train + n_valid]),
            "test": np.sort(permutation[n_train + n_valid:])}


FINGERPRINT_CHUNK_ROWS = 1 << 18


def content_fingerprint(schema: FieldSchema, splits: dict[str, Split]) -> str:
    """A hash of the schema's size and every split's ids, values and labels, read a chunk of rows
    at a time (memory-mapped splits are never loaded whole); the same digest as hashing each
    array at once."""
    h = hashlib.sha256()
    h.update(json.dumps([schema.num_features, schema.num_fields]).encode())
    for name in SPLITS:
        split = splits[name]
        for array in (split.feature_ids, split.feature_values, split.labels):
            for start in range(0, len(array), FINGERPRINT_CHUNK_ROWS):
                h.update(np.ascontiguousarray(array[start:start + FINGERPRINT_CHUNK_ROWS]).tobytes())
    return h.hexdigest()[:32]


@dataclass
class Dataset:
    """Train/valid/test splits over one schema, plus where they came from."""

    name: str
    schema: FieldSchema
    splits: dict[str, Split]
    location: str  # where the rows were read from: a directory or file (an upload: "uploaded file NAME")
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

    def rows(self, split: str) -> Split:
        """One split by name, or "all": every row, train then valid then test (copied together)."""
        self.check_rows(split)
        if split != "all":
            return self.splits[split]
        parts = [self.splits[name] for name in SPLITS]
        return Split(*(np.concatenate([getattr(p, a) for p in parts])
                       for a in ("feature_ids", "feature_values", "labels")))

    def check_rows(self, split: str) -> None:
        """Rows to score must exist: an empty choice (a one-row file's test split) is an error that
        says how the rows were split, not a score of nothing."""
        if not isinstance(split, str) or (split != "all" and split not in self.splits):
            raise ConfigError(f"split must be one of {', '.join(SPLITS)} or all, got {quote(split)}")
        count = sum(len(s) for s in self.splits.values()) if split == "all" else len(self.splits[split])
        if not count:
            counts = ", ".join(f"{name} {len(self.splits[name]):,}" for name in SPLITS)
            raise DataError(self.name, f"the {split} rows are empty (rows by split: {counts}); "
                                       "choose another split, e.g. --split all")

    @property
    def label_range(self) -> tuple[float, float]:
        """Range predictions are clipped to for RMSE, as the authors do (from training labels)."""
        return float(self.train.labels.min()), float(self.train.labels.max())

    @cached_property
    def distinct_labels(self) -> tuple[float, ...] | None:
        """The label values of every split, ascending, when there are at most two (else None):
        computed once, since the Data page asks on every rerun."""
        values = np.unique(np.concatenate([s.labels for s in self.splits.values()]))
        return tuple(float(v) for v in values) if len(values) <= 2 else None

    @property
    def label_classes(self) -> tuple[str, str] | None:
        """A CSV label of two texts: (the one read as 0, the one read as 1); None otherwise."""
        classes = (self.schema.csv_encoding or {}).get("label_classes")
        return (str(classes[0]), str(classes[1])) if classes else None

    @property
    def is_binary(self) -> bool:
        """Labels are two classes ({0,1} or {-1,+1}), so the binary task applies."""
        values = set(self.distinct_labels or (0.5,))
        return values <= {0.0, 1.0} or values <= {-1.0, 1.0}

    @cached_property
    def fingerprint(self) -> str:
        """Content hash of all splits: a checkpoint records it to recognise its training data."""
        return content_fingerprint(self.schema, self.splits)

    def preview(self, rows: int = 8) -> pd.DataFrame:
        """The first training rows with readable feature values."""
        ids = self.train.feature_ids[:rows]  # (rows, F)
        frame = pd.DataFrame({name: [self.schema.value_name(i) for i in ids[:, f]]
                              for f, name in enumerate(self.schema.field_names)})
        frame.insert(0, "label", self.train.labels[:rows])
        return frame

    def summary(self) -> dict:
        """What `afm info` prints; for CSV data also `columns`: each column's kind and values or
        range (`afm.data.schema.describe_columns`)."""
        columns = describe_columns(self.schema.csv_encoding)
        return {
            "name": self.name,
            "location": self.location,
            "fields": self.schema.num_fields,
            "features": self.schema.num_features,
            "pairs": self.schema.num_pairs,
            **{f"{name}_rows": len(split) for name, split in self.splits.items()},
            "label_range": list(self.label_range),
            **({"label_classes": {self.label_classes[0]: 0, self.label_classes[1]: 1}} if self.label_classes else {}),
            "fingerprint": self.fingerprint,
            **({"columns": columns} if columns is not None else {}),
        }
