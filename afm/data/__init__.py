"""Datasets: types (`splits`), field schemas (`schema`), the libfm reader (`libfm`), the CSV
encoder (`tabular`) and the registry of named datasets (`registry`)."""

from afm.data.libfm import LIBFM_SPLIT_SUFFIX, load_libfm_dir, load_libfm_file, read_libfm
from afm.data.registry import FRAPPE_FIELDS, REGISTRY, load_dataset, resolve_dataset_dir
from afm.data.schema import FieldSchema, read_feature_names
from afm.data.splits import SPLITS, Dataset, Split, split_indices
from afm.data.tabular import TabularEncoder, load_csv

__all__ = ["FRAPPE_FIELDS", "LIBFM_SPLIT_SUFFIX", "REGISTRY", "SPLITS", "Dataset", "FieldSchema", "Split",
           "TabularEncoder", "load_csv", "load_dataset", "load_libfm_dir", "load_libfm_file", "read_feature_names",
           "read_libfm", "resolve_dataset_dir", "split_indices"]
