"""Datasets by name: the bundled sample, Frappe and MovieLens-tag (the paper's two), or any
directory of libfm splits, single libfm file or CSV file. Where they live: `afm.paths`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from afm.data.libfm import load_libfm_dir, load_libfm_file
from afm.data.schema import FieldSchema
from afm.data.splits import Dataset
from afm.data.tabular import load_csv
from afm.errors import DataError
from afm.paths import data_roots, sample_dir

# Published field layout of the AFM authors' Frappe files (the data README): 10 one-hot fields.
FRAPPE_FIELDS = {"user": 957, "item": 4082, "daytime": 7, "weekday": 7, "isweekend": 2,
                 "homework": 3, "cost": 2, "weather": 9, "country": 80, "city": 233}
ML_TAG_FIELD_NAMES = ("user", "movie", "tag")
BUNDLED_SAMPLES = ("sample", "sample-fixed")  # folders of sample_data/ (afm.synthetic makes them)


@dataclass(frozen=True)
class RegistryEntry:
    description: str
    files: str  # what the directory must hold


REGISTRY = {
    "sample": RegistryEntry("Synthetic: the device decides whether user x item matters (AFM's case; bundled)",
                            "sample/sample.{train,validation,test}.libfm"),
    "sample-fixed": RegistryEntry("Synthetic: three field pairs matter in every row (FwFM's case; bundled)",
                                  "sample-fixed/sample-fixed.{train,validation,test}.libfm"),
    "frappe": RegistryEntry("Frappe app-usage context data, 10 fields, 5,382 features (AFM paper)",
                            "frappe.{train,validation,test}.libfm"),
    "ml-tag": RegistryEntry("MovieLens tag data, 3 fields (user, movie, tag), 90,445 features",
                            "ml-tag.{train,validation,test}.libfm"),
}


def resolve_dataset_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Find the directory holding dataset `name` (a root itself or root/name)."""
    looked = []
    for root in data_roots(data_dir):
        for candidate in (root / name, root):
            looked.append(str(candidate))
            if candidate.is_dir() and (candidate / f"{name}.train.libfm").is_file():
                return candidate
    raise DataError(name, f"dataset not found (looked in {', '.join(dict.fromkeys(looked))}); "
                    f"fetch it with `python -m afm download {name} --dest data` or pass --data-dir")


def load_dataset(spec: str | os.PathLike, data_dir: str | os.PathLike | None = None, seed: int = 0,
                 label: str | None = None, schema: FieldSchema | None = None) -> Dataset:
    """A registry name (`sample`, `frappe`, `ml-tag`), a directory of libfm splits, a single
    libfm file or a CSV file.

    `schema`: a checkpoint's schema, to read the data as that model was trained: CSV rows are
    encoded with its saved vocabularies and scaling (never refitted), libfm ids are checked
    against its feature table."""
    spec_str = str(spec)
    if spec_str in BUNDLED_SAMPLES:
        return load_libfm_dir(sample_dir() / spec_str, name=spec_str, schema=schema)
    if spec_str == "frappe":
        return load_libfm_dir(resolve_dataset_dir("frappe", data_dir), name="frappe", field_sizes=FRAPPE_FIELDS,
                              schema=schema)
    if spec_str == "ml-tag":
        dataset = load_libfm_dir(resolve_dataset_dir("ml-tag", data_dir), name="ml-tag", schema=schema)
        if dataset.schema.field_names == ("field0", "field1", "field2"):
            dataset.schema = FieldSchema(ML_TAG_FIELD_NAMES, dataset.schema.feature_field)
        return dataset
    path = Path(spec_str)
    if path.is_dir():
        return load_libfm_dir(path, schema=schema)
    if path.exists():
        if path.suffix.lower() == ".csv":
            return load_csv(path, label=label, seed=seed, schema=schema)
        if schema is not None and schema.csv_encoding is not None:
            raise DataError(path, "the model was trained on a CSV; give it CSV rows with the same columns")
        return load_libfm_file(path, seed=seed, schema=schema)
    names = ", ".join(REGISTRY)
    raise DataError(spec_str, f"not a dataset name ({names}), directory or file")
