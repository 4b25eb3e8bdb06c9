"""Uploaded files live in a folder of their own session, removed when the session ends (its
state is dropped) or the server exits; folders left by server processes that are gone (killed)
are removed when the next one starts. Nothing uploaded outlives the people using it."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
import weakref
from pathlib import Path

import streamlit as st

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def uploads_root() -> Path:
    return Path(os.environ.get("AFM_UPLOAD_DIR") or Path(tempfile.gettempdir()) / "afm-uploads")


class UploadFolder:
    """One session's folder, `ROOT/<server pid>-<token>/`, deleted with this object."""

    def __init__(self, root: Path | None = None):
        root = root or uploads_root()
        root.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-{secrets.token_hex(4)}-", dir=root))
        self._remove = weakref.finalize(self, shutil.rmtree, str(self.path), True)

    def remove(self) -> None:
        self._remove()

    def save(self, name: str, data: bytes) -> Path:
        """Keep `data` under a safe version of the user's file name (a new upload of the same
        name replaces the old one)."""
        safe = _SAFE_NAME.sub("_", Path(name).name).strip("._") or "upload"
        path = self.path / safe[-100:]
        path.write_bytes(data)
        return path


def remove_orphans(root: Path | None = None) -> list[Path]:
    """Delete the session folders of server processes that no longer run."""
    root = root or uploads_root()
    removed = []
    try:
        folders = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return removed
    for folder in folders:
        pid = folder.name.split("-", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def session_folder() -> UploadFolder:
    """This session's upload folder, made on first use."""
    folder = st.session_state.get("upload_folder")
    if folder is None or not folder.path.is_dir():
        folder = st.session_state.upload_folder = UploadFolder()
    return folder


def save_upload(uploaded) -> tuple[str, str]:
    """Keep a `st.file_uploader` file in this session's folder: (server path, the user's name)."""
    return str(session_folder().save(uploaded.name, uploaded.getvalue())), uploaded.name


def keep_upload(uploaded) -> None:
    """The session's `upload`: this file, saved once (again only when the user gives another)."""
    kept = st.session_state.get("upload")
    if kept is None or kept[1] != uploaded.name or st.session_state.get("upload_id") != uploaded.file_id:
        st.session_state.upload = save_upload(uploaded)
        st.session_state.upload_id = uploaded.file_id


def forget_if_removed() -> None:
    """The uploader's on_change: the user removed the file (x), so the session forgets it. Coming
    back to the page makes a new, empty uploader without calling this: the upload is kept."""
    if st.session_state.get("upload_file") is None:
        st.session_state.upload = None


def upload_in_use() -> tuple[str, str] | None:
    """The session's upload, (server path, the user's name): the file in the uploader when there
    is one, else the one given earlier in the session (kept across pages until replaced or removed)."""
    uploaded = st.file_uploader("A CSV with a header row, or a libfm file (`label id:value ...`)",
                                type=["csv", "libfm", "txt"], key="upload_file", on_change=forget_if_removed)
    if uploaded is not None:
        keep_upload(uploaded)
    elif st.session_state.get("upload") is not None:
        st.caption(f"Using **{st.session_state.upload[1]}**, uploaded earlier in this session; upload another file "
                   "to replace it.")
    return st.session_state.get("upload")


def label_picked(path: str) -> bool:
    """The label column of an uploaded CSV, chosen from its header: the column named like a label
    (label, target, clicked, ...) at first, else none until the user picks one; never the last
    column in silence. False while none is picked."""
    from afm.app.cache import csv_header, file_stamp
    from afm.app.state import user_message
    from afm.data.tabular import label_by_name
    from afm.errors import AFMError

    try:
        columns = csv_header(path, file_stamp(path))  # read once per file, not on every rerun
    except AFMError as exc:  # said with the name the user gave the file, not the server's path
        st.error(user_message(exc))
        return False
    if st.session_state.get("label_column") not in columns:
        st.session_state.label_column = label_by_name(columns)  # None: the user picks
    picked = st.selectbox("Label column: what the model predicts", columns, key="label_column",
                          placeholder="Pick the column to predict", persist_state="session",
                          help="Found by its name (label, target, y, rating, click, clicked, converted, ...) when "
                               "one says so; every other column is a feature.")
    if picked is None:
        st.info("Which column should the model predict? No column is named like a label; pick it above.")
    return picked is not None
