"""Datasets by name: the bundled sample, Frappe and MovieLens-tag (the paper's two), or any
directory of libfm splits or of memory-mapped arrays, single libfm file or CSV file. Where they
live: `afm.paths`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from afm.data.arrays import check_new_destination, encode_libfm_dir, is_arrays_dir, open_arrays, write_arrays
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
BUNDLED_SAMPLES = ("sample", "sample-fixed")  # folders of sample_data/ (afm.samples.planted makes them)


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


@dataclass(frozen=True)
class LibfmFolder:
    """A directory of libfm splits and what is known about its fields."""

    directory: Path
    name: str | None = None
    field_sizes: dict[str, int] | None = None  # the published layout, when the files carry none
    field_names: tuple[str, ...] | None = None  # names of inferred fields


def libfm_folder(spec: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> LibfmFolder | None:
    """The libfm splits a registry name or directory names; None for files and arrays directories."""
    spec_str = str(spec)
    if spec_str in BUNDLED_SAMPLES:
        return LibfmFolder(sample_dir() / spec_str, spec_str)
    if spec_str == "frappe":
        return LibfmFolder(resolve_dataset_dir("frappe", data_dir), "frappe", field_sizes=FRAPPE_FIELDS)
    if spec_str == "ml-tag":
        return LibfmFolder(resolve_dataset_dir("ml-tag", data_dir), "ml-tag", field_names=ML_TAG_FIELD_NAMES)
    path = Path(spec_str)
    return LibfmFolder(path) if _is_dir(path) and not is_arrays_dir(path) else None


def _is_dir(path: Path) -> bool:
    """Path.is_dir, with the errors it lets through (a 5,000-character name: ENAMETOOLONG) as ours."""
    try:
        return path.is_dir()
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot be read ({getattr(exc, 'strerror', None) or exc})") from None


def load_dataset(spec: str | os.PathLike, data_dir: str | os.PathLike | None = None, seed: int = 0,
                 label: str | None = None, schema: FieldSchema | None = None) -> Dataset:
    """A registry name (`sample`, `frappe`, `ml-tag`), a directory of libfm splits, a directory
    of memory-mapped arrays (`afm encode`), a single libfm file or a CSV file.

    `schema`: a checkpoint's schema, to read the data as that model was trained: CSV rows are
    encoded with its saved vocabularies and scaling (never refitted), libfm ids are checked
    against its feature table."""
    folder = libfm_folder(spec, data_dir)
    if folder is not None:
        return load_libfm_dir(folder.directory, name=folder.name, field_sizes=folder.field_sizes, schema=schema,
                              field_names=folder.field_names)
    spec_str = str(spec)
    path = Path(spec_str)
    if _is_dir(path):
        return open_arrays(path, schema=schema)
    if path.exists():
        if path.suffix.lower() == ".csv":
            return load_csv(path, label=label, seed=seed, schema=schema)
        if schema is not None and schema.csv_encoding is not None:
            raise DataError(path, "the model was trained on a CSV; give it CSV rows with the same columns")
        return load_libfm_file(path, seed=seed, schema=schema)
    names = ", ".join(REGISTRY)
    raise DataError(spec_str, f"not a dataset name ({names}), directory or file")


def encode_dataset(spec: str | os.PathLike, dest: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                   seed: int = 0, label: str | None = None, schema: FieldSchema | None = None) -> Dataset:
    """Write any dataset `load_dataset` reads as memory-mapped arrays at `dest`: libfm splits are
    streamed a chunk at a time; a CSV or a single libfm file is read into memory once (its split
    and encoding need all rows)."""
    folder = libfm_folder(spec, data_dir)
    if folder is not None:
        return encode_libfm_dir(folder.directory, dest, name=folder.name, field_sizes=folder.field_sizes,
                                field_names=folder.field_names, schema=schema)
    check_new_destination(dest)
    return write_arrays(load_dataset(spec, data_dir, seed, label, schema), dest)
