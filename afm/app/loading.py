"""Loading a checkpoint on the Data & model page: an uploaded file or one saved on this machine
becomes a run of the session, with what keeps it from scoring the current data said."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from afm.app import cache, state
from afm.app.jobs import Run
from afm.checkpoint import load_checkpoint
from afm.data import Dataset
from afm.errors import AFMError
from afm.paths import runs_dir, sample_dir

NONE_PICKED = "(none)"


def saved_checkpoints() -> dict[str, Path]:
    """Checkpoints on this machine by the name the page shows: `runs/...`, `sample_data/...`."""
    folders = {"runs": runs_dir(), "sample_data": sample_dir()}
    return {f"{label}/{p.relative_to(folder)}": p for label, folder in folders.items() if folder.is_dir()
            for p in sorted(folder.glob("**/*.safetensors"))}


def load_run(uploaded, picked: str, saved: dict[str, Path], dataset: Dataset) -> None:
    """Make the uploaded checkpoint (else the picked saved one) the active run; say what is wrong
    (why it cannot score this data is said, with its own data offered, under the session's models)."""
    try:
        if uploaded is not None:
            data = uploaded.getvalue()
            checkpoint, key = load_checkpoint(data, name=uploaded.name), cache.content_key(data)
            label = uploaded.name
        elif picked != NONE_PICKED:
            checkpoint, key = cache.checkpoint_file(str(saved[picked]), cache.file_stamp(str(saved[picked])))
            label = picked
        else:
            raise AFMError("choose a file to upload or a saved checkpoint first")
        run = Run.from_checkpoint(checkpoint, f"{checkpoint.model_config.model.upper()} from {label}",
                                  f"loaded: {label}", key=key)
        if checkpoint.unchecked:
            st.caption("This file was saved without a checksum of its weights (before checkpoint format 2): "
                       "they load unchecked.")
        seen = state.dataset_for(run, dataset)
        problem = state.fit_problem(run, seen)
        if not problem:
            for warning in run.check_fits(seen):
                st.warning(warning)
        state.add_run(run)  # the active model now, kept as it is on this data (the user chose it)
        st.success(f"Loaded {label}; it is now the active model"
                   + (" (it cannot score this dataset: why, and its own data, under *Models in this session*)."
                      if problem else "."))
    except AFMError as exc:
        st.error(f"Cannot use this checkpoint: {exc}")
