"""What every page shares: per-session state behind an init guard, the caches, and the checks
that turn user mistakes into `st.error` messages instead of tracebacks."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

from afm.analysis.attention import decompose_split, summarize_pairs
from afm.bundled import sample_checkpoint_path
from afm.checkpoint import load_checkpoint
from afm.data import PROJECT_ROOT, Dataset, data_root_candidates, load_dataset
from afm.errors import AFMError
from afm.jobs import Run
from afm.models import MODEL_NAMES

PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}
SAVED_CHECKPOINT_DIRS = (PROJECT_ROOT / "runs", PROJECT_ROOT / "sample_data")


def init_state() -> None:
    """Per-session state, created once per browser session. The bundled sample runs make the
    app useful at once: every page has a model to show."""
    if "runs" in st.session_state:
        return
    st.session_state.runs = {}
    st.session_state.active_run = None
    st.session_state.dataset_spec = "sample"
    st.session_state.data_dir = default_data_dir()
    st.session_state.label_column = None
    st.session_state.job = None
    for name in MODEL_NAMES:
        path = sample_checkpoint_path(name)
        if path.is_file():
            try:
                add_run(Run.from_checkpoint(cached_checkpoint(str(path), path.stat().st_mtime),
                                            f"sample {name.upper()}", "bundled"), make_active=name == "afm")
            except AFMError as exc:  # a damaged bundle must not take the app down
                st.session_state.startup_error = str(exc)


def default_data_dir() -> str:
    for root in data_root_candidates():
        if (root / "frappe").is_dir() or (root / "ml-tag").is_dir():
            return str(root)
    return os.environ.get("AFM_DATA_DIR", str(PROJECT_ROOT / "data"))


def add_run(run: Run, make_active: bool = True) -> None:
    name, number = run.name, 2
    while name in st.session_state.runs and st.session_state.runs[name].key != run.key:
        name, number = f"{run.name} ({number})", number + 1
    run.name = name
    st.session_state.runs[name] = run
    if make_active:
        st.session_state.active_run = name


@st.cache_data(show_spinner="Loading the dataset…", max_entries=6)
def cached_dataset(spec: str, data_dir: str | None, label: str | None, stamp: float) -> Dataset:
    """`stamp` (the file's modification time) makes an edited file load afresh."""
    dataset = load_dataset(spec, data_dir=data_dir or None, label=label or None)
    _ = dataset.fingerprint  # hash once here; the cached copies carry it
    return dataset


@st.cache_resource(max_entries=16)
def cached_checkpoint(path: str, stamp: float):
    """Checkpoints read from disk, shared between sessions and never mutated:
    `Run.from_checkpoint` copies the model before anyone trains or edits it."""
    return load_checkpoint(path)


def current_dataset(show_errors: bool = True) -> Dataset | None:
    spec = st.session_state.dataset_spec
    path = Path(spec)
    stamp = path.stat().st_mtime if path.exists() else 0.0
    try:
        return cached_dataset(spec, st.session_state.data_dir, st.session_state.label_column, stamp)
    except AFMError as exc:
        if show_errors:
            st.error(f"Cannot load the dataset: {exc}")
            if spec in ("frappe", "ml-tag"):
                st.info(f"Download it with `python -m afm download {spec} --dest data` and set the data directory "
                        "to that `data` folder on the Data & model page.")
        return None


def save_upload(uploaded) -> Path:
    """Keep an uploaded file in this session's temporary folder (named by content)."""
    folder = st.session_state.get("upload_dir")
    if not folder or not Path(folder).is_dir():
        folder = st.session_state.upload_dir = tempfile.mkdtemp(prefix="afm-upload-")
    data = uploaded.getvalue()
    suffix = Path(uploaded.name).suffix.lower() or ".libfm"
    path = Path(folder) / f"{Path(uploaded.name).stem[:40]}-{hashlib.sha256(data).hexdigest()[:10]}{suffix}"
    if not path.exists():
        path.write_bytes(data)
    return path


def active_run() -> Run | None:
    name = st.session_state.get("active_run")
    return st.session_state.runs.get(name) if name else None


def run_fits(run: Run, dataset: Dataset) -> str | None:
    """None when the run can score the dataset, else the reason it cannot."""
    config = run.model_config
    if config.num_fields != dataset.schema.num_fields:
        return (f"the model {run.name!r} expects {config.num_fields} fields but {dataset.name!r} has "
                f"{dataset.schema.num_fields}")
    largest = max(int(s.feature_ids.max()) for s in dataset.splits.values() if len(s))
    if largest >= config.num_features:
        return f"{dataset.name!r} has feature id {largest}, beyond the {config.num_features} the model knows"
    return None


def require_run_and_data() -> tuple[Run, Dataset]:
    """The active run and the current dataset, or a message and a stop."""
    init_state()
    dataset = current_dataset()
    if dataset is None:
        st.stop()
    run = active_run()
    if run is None:
        st.info("No model yet: train or load one on the **Data & model** page.")
        st.stop()
    problem = run_fits(run, dataset)
    if problem:
        st.error(f"The active model does not fit the data: {problem}. Pick another run or dataset on the "
                 "**Data & model** page.")
        st.stop()
    return run, dataset


def run_picker(label: str = "Model", key: str = "picker_active_run") -> None:
    """Choose the active run. `active_run` is the one source of truth: the widget is synced from
    it before drawing (widget keys vanish on pages that do not draw them) and writes back on change."""
    names = list(st.session_state.runs)
    if not names:
        return
    if st.session_state.active_run not in names:
        st.session_state.active_run = names[0]
    st.session_state[key] = st.session_state.active_run

    def chosen() -> None:
        st.session_state.active_run = st.session_state[key]

    st.selectbox(label, names, key=key, on_change=chosen)


@st.cache_data(show_spinner="Decomposing predictions…", max_entries=24)
def pair_analysis(run_key: str, fingerprint: str, split: str, _run: Run, _dataset: Dataset):
    """Per-row terms and the per-pair summary of one run on one split (cached per run and data).
    The leading underscores keep Streamlit from hashing the model and arrays; the run key and
    the data fingerprint identify them, and the run key is unique across sessions."""
    terms = decompose_split(_run.model, _dataset.splits[split])
    return terms, summarize_pairs(terms, _dataset.schema)


def tensors(split, rows: np.ndarray):
    return (torch.from_numpy(split.feature_ids[rows]), torch.from_numpy(split.feature_values[rows]),
            torch.from_numpy(split.labels[rows]))


def preview_frame(dataset: Dataset, rows: int = 8) -> pd.DataFrame:
    """The first training rows with readable feature names."""
    split = dataset.train
    frame = pd.DataFrame({name: [dataset.schema.feature_names[i] if dataset.schema.feature_names else str(i)
                                 for i in split.feature_ids[:rows, f]]
                          for f, name in enumerate(dataset.schema.field_names)})
    frame.insert(0, "label", split.labels[:rows])
    return frame


def sidebar_status() -> None:
    with st.sidebar:
        run = active_run()
        st.caption("Dataset")
        st.write(f"`{st.session_state.dataset_spec}`")
        st.caption("Active model")
        st.write(run.name if run else "none")
        job = st.session_state.get("job")
        if job is not None and not job.finished:
            st.info(f"Training {job.name}…")
        if st.session_state.get("startup_error"):
            st.warning(f"A bundled checkpoint could not be loaded: {st.session_state.startup_error}")
