"""Reading a dataset in a child process, so that whoever waits for it can give up.

A text file is parsed by pandas' C reader, which no Python code can interrupt: a file built to be
slow (or one that is merely huge) would hold the app's thread for as long as it takes, after its
tab is closed too. `load_bounded` parses in a child process (`python -m afm.data.bounded`) and
waits for it in short polls; it kills the child when the time limit passes (`AFM_LOAD_SECONDS`,
600 s unless set) or when the caller says it no longer wants the result (the app: the session
that asked has ended). A child that dies (the kernel's out-of-memory killer, say) costs the
server nothing but that load.

The child imports `afm.data` alone (no torch: about 0.3 s) and sends the dataset back pickled
through a pipe (Frappe: 36 MB, about 20 ms); it is our own code that pickles, the file only
supplies numbers and text. Memory-mapped arrays (`afm encode`) and the bundled samples are opened
in the caller's process: they are checked, fixed-size work, and a mapped file must stay mapped
where it is used.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from afm.data.arrays import is_arrays_dir
from afm.data.registry import BUNDLED_SAMPLES, load_dataset
from afm.data.schema import FieldSchema
from afm.data.splits import Dataset
from afm.errors import AFMError, DataError

DEFAULT_LOAD_SECONDS = 600.0
POLL_SECONDS = 0.2  # how often the waiting thread looks at the clock and at `wanted`


class LoadAbandoned(AFMError):
    """The caller stopped wanting the dataset (its session ended); the child was stopped."""


def load_seconds() -> float:
    """The time limit of one load: `AFM_LOAD_SECONDS` when set to a positive number."""
    text = os.environ.get("AFM_LOAD_SECONDS", "")
    try:
        seconds = float(text)
    except ValueError:
        return DEFAULT_LOAD_SECONDS
    return seconds if seconds > 0 else DEFAULT_LOAD_SECONDS


def needs_child(spec: str | os.PathLike) -> bool:
    """Whether reading `spec` parses text files (a child process then), rather than opening the
    bundled samples or memory-mapped arrays (in this process)."""
    if str(spec) in BUNDLED_SAMPLES:
        return False
    try:
        return not is_arrays_dir(Path(spec))
    except (OSError, ValueError):
        return True  # load_dataset says what is wrong with the path, in the child


def _child_environment() -> dict[str, str]:
    """The caller's environment, with this checkout first on the path (the app may run from a
    checkout that is not installed)."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def _load(request: tuple) -> tuple[str, object]:
    """In the child: ("ok", dataset), ("error", the one-line message) or ("bug", what broke)."""
    spec, data_dir, label, schema = request
    try:
        dataset = load_dataset(spec, data_dir=data_dir, label=label, schema=schema)
        _ = dataset.fingerprint  # hashed here, not in the waiting thread
        return "ok", dataset
    except AFMError as exc:
        return "error", str(exc)
    except MemoryError:
        return "error", f"{spec}: not enough memory to read it"
    except Exception as exc:  # a bug of ours: said as the caller's own load would have raised it
        return "bug", f"{type(exc).__name__}: {exc}"


def load_bounded(spec: str | os.PathLike, data_dir: str | os.PathLike | None = None, label: str | None = None,
                 schema: FieldSchema | None = None, seconds: float | None = None,
                 wanted: Callable[[], bool] = lambda: True) -> Dataset:
    """`load_dataset(spec, data_dir=..., label=..., schema=...)`, read in a child process that is
    stopped after `seconds` (default `load_seconds()`: DataError) or as soon as `wanted()` is
    false (LoadAbandoned). Nothing of a stopped load is kept."""
    if not needs_child(spec):
        return load_dataset(spec, data_dir=data_dir, label=label, schema=schema)
    seconds = load_seconds() if seconds is None else seconds
    request = pickle.dumps((str(spec), None if data_dir is None else str(data_dir), label, schema))
    deadline = time.monotonic() + seconds
    child = subprocess.Popen([sys.executable, "-m", "afm.data.bounded"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_environment())
    try:
        while True:
            try:
                reply, errors = child.communicate(request, timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                request = None  # sent; communicate keeps what it has read so far
            if not wanted():
                raise LoadAbandoned(f"{spec}: the load was stopped, nobody waits for it any more")
            if time.monotonic() > deadline:
                raise DataError(spec, f"reading it took longer than {seconds:g} s, the limit of one load here "
                                "(AFM_LOAD_SECONDS); a file this slow to read is better converted once with "
                                "`python -m afm encode` and opened as arrays")
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    try:
        kind, value = pickle.loads(reply)
    except Exception:
        tail = errors.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        raise DataError(spec, f"reading it stopped the reading process (exit code {child.returncode}: {tail[0]}); "
                        "the file may need more memory than this server has") from None
    if kind == "ok":
        return value
    if kind == "bug":
        raise RuntimeError(value)
    raise AFMError(value)


if __name__ == "__main__":  # the child: one request on stdin, its answer on stdout
    sys.stdout.buffer.write(pickle.dumps(_load(pickle.loads(sys.stdin.buffer.read())), protocol=5))
