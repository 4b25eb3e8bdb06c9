"""Caches shared by every session of the server. Data and analyses are keyed on content (a
file's modification time, a dataset fingerprint, a checkpoint's hash), so two sessions that look
at the same thing compute it once; nothing returned from here is mutated by a page."""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from afm.analysis.attention import PairSummary, decompose_split, summarize_pairs, top_feature_pairs
from afm.checkpoint import Checkpoint, load_checkpoint
from afm.data import Dataset, FieldSchema, load_dataset
from afm.errors import AFMError
from afm.jobs import Run
from afm.models import PredictionTerms


def file_stamp(spec: str) -> float:
    """A file's modification time (0 for registry names), so an edited file loads afresh."""
    path = Path(spec)
    try:
        return path.stat().st_mtime if path.exists() else 0.0
    except OSError:
        return 0.0


@st.cache_data(show_spinner="Loading the dataset…", max_entries=6)
def dataset(spec: str, data_dir: str | None, label: str | None, stamp: float,
            schema_json: str | None = None, _schema: FieldSchema | None = None) -> Dataset:
    """A dataset, read as a model with `_schema` (identified by `schema_json`) was trained."""
    loaded = load_dataset(spec, data_dir=data_dir or None, label=label or None, schema=_schema)
    _ = loaded.fingerprint  # hash once here; the cached copies carry it
    return loaded


@st.cache_data(show_spinner="Reading the data as the model was trained…", max_entries=16)
def dataset_or_problem(spec: str, data_dir: str | None, label: str | None, stamp: float, schema_json: str,
                       _schema: FieldSchema) -> tuple[Dataset | None, str | None]:
    """The data read with a model's schema, or why it cannot be (kept, so a page that asks on
    every rerun does not read the files again)."""
    try:
        return dataset(spec, data_dir, label, stamp, schema_json, _schema=_schema), None
    except AFMError as exc:
        return None, str(exc)


@st.cache_resource(max_entries=16)
def checkpoint_file(path: str, stamp: float) -> tuple[Checkpoint, str]:
    """A checkpoint read from disk and its content hash. Shared between sessions and never
    mutated: `Run.from_checkpoint` copies it before a session uses it."""
    return load_checkpoint(path), content_key(Path(path).read_bytes())


def content_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


@st.cache_data(show_spinner="Decomposing predictions…", max_entries=24)
def pair_analysis(run_key: str, fingerprint: str, split: str, _run: Run,
                  _dataset: Dataset) -> tuple[PredictionTerms, PairSummary]:
    """Per-row terms and the per-pair summary of one run on one split. The leading underscores
    keep Streamlit from hashing the model and arrays; the run key (content-based for loaded
    checkpoints) and the data fingerprint identify them."""
    terms = decompose_split(_run.model, _dataset.splits[split])
    return terms, summarize_pairs(terms, _dataset.schema)


@st.cache_data(max_entries=64)
def top_pairs(run_key: str, fingerprint: str, split: str, top: int, min_support: int, by: str, _run: Run,
              _dataset: Dataset):
    """The top feature-value pairs table of one run on one split (the page's sliders change it)."""
    terms, _ = pair_analysis(run_key, fingerprint, split, _run, _dataset)
    return top_feature_pairs(terms, _dataset.splits[split], _dataset.schema, top=top, min_support=min_support, by=by)
