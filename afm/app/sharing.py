"""The Predict & share page's work: score an uploaded file with a run (the scored CSV kept in
the session's upload folder until downloaded) and build a run's HTML report, cached on the
run's content and the data's fingerprint."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from afm.app import cache, uploads
from afm.app.jobs import Run
from afm.data import Dataset
from afm.data.bounded import load_seconds
from afm.errors import AFMError
from afm.predict import predict_file
from afm.report import build_report

PREVIEW_ROWS = 20


@dataclass
class ScoredRows:
    path: Path  # the scored CSV, in this session's upload folder
    download_name: str
    summary: dict
    preview: pd.DataFrame  # its first rows
    run_key: str  # which run scored it, and which upload
    upload_id: str
    keep_inputs: bool = True  # with the upload's own columns


def score_upload(run: Run, uploaded, explain: int, bar, keep_inputs: bool = True) -> ScoredRows:
    """Score a `st.file_uploader` file with `run`, showing progress on the `st.progress` bar; the
    CSV's own columns first unless not `keep_inputs`. Errors name the file as the user named it,
    never a server path."""
    folder = uploads.session_folder()
    source = folder.save(uploaded.name, uploaded.getvalue())
    out = folder.path / f"scored-{source.stem}.csv"

    deadline = time.monotonic() + load_seconds()

    def progress(rows: int, read: int, total: int) -> None:  # also where a closed tab's run stops
        if time.monotonic() > deadline:
            raise AFMError(f"{uploaded.name}: scoring took longer than {load_seconds():g} s, the limit of one "
                           "load here (AFM_LOAD_SECONDS); score a file this large with `python -m afm predict`")
        bar.progress(min(read / total, 1.0) if total else 0.0, text=f"{rows:,} rows scored")

    try:
        summary = predict_file(run, source, out, explain=explain, progress=progress, keep_inputs=keep_inputs)
    except AFMError as exc:
        raise AFMError(str(exc).replace(str(source), uploaded.name)) from None
    bar.progress(1.0, text=f"{summary['rows']:,} rows scored")
    return ScoredRows(out, f"scored-{Path(uploaded.name).stem}.csv", summary, pd.read_csv(out, nrows=PREVIEW_ROWS),
                      run.key, uploaded.file_id, keep_inputs)


@st.cache_data(show_spinner=False, max_entries=8, hash_funcs=cache.BY_CONTENT)
def report_html(run: Run, dataset: Dataset | None, coupling: bool) -> str:
    """The run's report (see afm.report)."""
    return build_report(run, dataset, coupling=coupling, title=f"{run.name}")
