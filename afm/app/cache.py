"""Caches shared by every session of the server. Data and analyses are keyed on content (a
file's modification time, a dataset fingerprint, a checkpoint's hash), so two sessions that look
at the same thing compute it once. `cache_resource` for what is read-only (datasets, per-row
terms): one object for everyone, no copy per rerun; nothing returned from here is mutated."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import streamlit as st

from afm.analysis.attention import PairSummary, decompose_split, summarize_pairs, top_feature_pairs
from afm.analysis.erasure import ErasureCurves
from afm.analysis.gates import GateResult
from afm.analysis.pairs import (
    AttentionChecks,
    PairExplanation,
    check_attention,
    erasure_of,
    explain_pairs,
    label_gates_of,
)
from afm.analysis.reference import gradient_boosting_reference
from afm.app.jobs import Run
from afm.checkpoint import Checkpoint, load_checkpoint
from afm.cores import limit_other_openmp
from afm.data import Dataset, FieldSchema
from afm.data.arrays import MappedDataset
from afm.data.bounded import LoadAbandoned, load_bounded
from afm.data.tabular import csv_columns
from afm.errors import AFMError
from afm.models import PredictionTerms
from afm.scheduler import default_scheduler


def budgeted(function):
    """Compute with a share of the server's cores (afm.cores): the running trainings, tuning studies
    and other sessions' analyses hold the rest. Under the cache decorator: a cached answer costs nothing."""

    @functools.wraps(function)
    def within_budget(*args, **kwargs):
        with default_scheduler().budget.use("analysis") as lease, limit_other_openmp(lease.threads):
            return function(*args, **kwargs)

    return within_budget


def file_stamp(spec: str) -> float:
    """A file's modification time (0 for registry names), so an edited file loads afresh."""
    path = Path(spec)
    try:
        return path.stat().st_mtime if path.exists() else 0.0
    except OSError:
        return 0.0


def schema_key(schema: FieldSchema) -> str:
    return json.dumps(schema.to_json(), sort_keys=True)


# How a cache recognises its arguments: a model run by its key (content-based for loaded
# checkpoints), a dataset by its fingerprint, a schema by its JSON; nothing big is hashed.
BY_CONTENT = {Run: lambda run: run.key, Dataset: lambda data: data.fingerprint,
              MappedDataset: lambda data: data.fingerprint, FieldSchema: schema_key}


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=6, hash_funcs=BY_CONTENT)
def dataset(spec: str, data_dir: str | None, label: str | None, stamp: float,
            schema: FieldSchema | None = None, shown_as: str | None = None) -> Dataset:
    """A dataset, read as a model with `schema` was trained (None: as the data says). One object
    shared by every session and never written to (read-only data: no copy per rerun). `shown_as`:
    the name an upload is shown by, recorded as where the rows came from instead of a server path.
    Text files are parsed in a child process with a time limit, stopped when the session that
    asked ends (afm.data.bounded): a slow file never holds the server after its tab is closed."""
    try:
        loaded = load_bounded(spec, data_dir=data_dir or None, label=label or None, schema=schema,
                              wanted=session_is_open())
    except LoadAbandoned:
        st.stop()  # the session is gone: end its run quietly, cache nothing
    _ = loaded.fingerprint  # hash once here
    if shown_as:
        loaded.location = f"uploaded file {shown_as}"
    return loaded


def session_is_open():
    """A function telling whether the session running this script is still connected (always
    true outside a running server, as in AppTest)."""
    from streamlit import runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    context = get_script_run_ctx()
    if context is None or not runtime.exists():
        return lambda: True
    server, session = runtime.get_instance(), context.session_id
    return lambda: server.is_active_session(session)


@st.cache_data(show_spinner="Reading the data as the model was trained…", max_entries=16, hash_funcs=BY_CONTENT)
def dataset_problem(spec: str, data_dir: str | None, label: str | None, stamp: float, schema: FieldSchema,
                    shown_as: str | None = None) -> str | None:
    """Why the data cannot be read with a model's schema (None: it can; then `dataset` has it).
    Kept, so a page that asks on every rerun does not read the files again."""
    try:
        dataset(spec, data_dir, label, stamp, schema, shown_as)
        return None
    except AFMError as exc:
        return str(exc)


@st.cache_resource(max_entries=16)
def checkpoint_file(path: str, stamp: float) -> tuple[Checkpoint, str]:
    """A checkpoint read from disk and its content hash. Shared between sessions and never
    mutated: `Run.from_checkpoint` copies it before a session uses it."""
    return load_checkpoint(path), content_key(Path(path).read_bytes())


def content_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


@st.cache_resource(show_spinner="Decomposing predictions…", max_entries=24, hash_funcs=BY_CONTENT)
@budgeted
def pair_analysis(run: Run, dataset: Dataset, split: str) -> tuple[PredictionTerms, PairSummary]:
    """Per-row terms and the per-pair summary of one run on one split (read-only, shared)."""
    terms = decompose_split(run.model, dataset.splits[split])
    return terms, summarize_pairs(terms, dataset.schema)


@st.cache_data(max_entries=64, hash_funcs=BY_CONTENT)
@budgeted
def top_pairs(run: Run, dataset: Dataset, split: str, top: int, min_support: int, by: str):
    """The top feature-value pairs table of one run on one split (the page's sliders change it)."""
    terms, _ = pair_analysis(run, dataset, split)
    return top_feature_pairs(terms, dataset.splits[split], dataset.schema, top=top, min_support=min_support, by=by)


@st.cache_resource(show_spinner="Computing exact Shapley values…", max_entries=16, hash_funcs=BY_CONTENT)
@budgeted
def pair_explanation(run: Run, dataset: Dataset, split: str, rows: int, coalitions: str) -> PairExplanation:
    """Every pair view of one run on a seeded sample of `rows` rows of one split (read-only, shared)."""
    return explain_pairs(run.model, dataset.splits[split], dataset.schema, dataset.train, rows=rows,
                         coalitions=coalitions, label_gates=label_gates(dataset), split_name=split)


@st.cache_resource(show_spinner="Finding where a third field changes a pair's effect…", max_entries=8,
                   hash_funcs=BY_CONTENT)
@budgeted
def label_gates(dataset: Dataset) -> GateResult:
    """The training labels' gate table: the data's alone, so every model and setting shares it."""
    return label_gates_of(dataset.train, dataset.schema)


@st.cache_resource(show_spinner="Testing whether attention explains…", max_entries=16, hash_funcs=BY_CONTENT)
@budgeted
def attention_checks(run: Run, dataset: Dataset, split: str, rows: int, coalitions: str) -> AttentionChecks:
    explanation = pair_explanation(run, dataset, split, rows, coalitions)
    return check_attention(run.model, explanation, dataset.splits[split], dataset.train, run.task,
                           run.label_range or dataset.label_range)


@st.cache_resource(show_spinner="Erasing pairs in each measure's order…", max_entries=16, hash_funcs=BY_CONTENT)
@budgeted
def erasure(run: Run, dataset: Dataset, split: str, rows: int, coalitions: str) -> ErasureCurves:
    explanation = pair_explanation(run, dataset, split, rows, coalitions)
    return erasure_of(run.model, explanation, dataset.splits[split], run.task)


REFERENCE_ROWS = 300_000  # above this many training rows the reference waits to be asked for (it takes a while)


@st.cache_data(show_spinner="Fitting the gradient-boosting reference…", max_entries=8, hash_funcs=BY_CONTENT)
@budgeted
def reference(dataset: Dataset, task: str) -> dict:
    """scikit-learn's gradient boosting on this dataset's train split (one fit per dataset and task,
    for every session): the score a model worth explaining should reach (afm.analysis.reference)."""
    return gradient_boosting_reference(dataset, task)


@st.cache_data(show_spinner="Scoring the model…", max_entries=16, hash_funcs=BY_CONTENT)
@budgeted
def model_metrics(run: Run, dataset: Dataset, split: str) -> dict:
    return run.evaluate(dataset, split, next(run.model.parameters()).device)


@st.cache_data(max_entries=16, show_spinner=False)
def csv_header(path: str, stamp: float) -> list[str]:
    """An uploaded CSV's column names (`stamp`: its modification time, so a new file reads afresh)."""
    return csv_columns(path)
