"""Errors a user can cause. Each carries one readable line: what file, where, what is wrong.

The CLI turns any `AFMError` into exit code 2 and that line on stderr; the app shows it in
`st.error`. Anything else escaping is a bug in this package, not a user mistake.
"""

from __future__ import annotations

from afm.limits import QUOTE_CHARS

MAX_MESSAGE_CHARS = 1000  # a message is one line a person reads, never a copy of the input


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """A short, printable excerpt of user input for a message: repr() of at most `limit`
    characters (bytes decoded leniently), so a 50 MB line is never copied into an error."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value[: limit * 4]).decode("utf-8", errors="replace")
    text = str(value)
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"… ({len(text):,} characters)"


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "…"


class AFMError(Exception):
    """Base class for errors caused by the user's input (data, arguments, checkpoints)."""

    def __init__(self, message: str = ""):
        super().__init__(_one_line(str(message)))


class DataError(AFMError):
    """A data file or directory that cannot be read as a dataset."""

    def __init__(self, source: object, problem: str, line: int | None = None):
        self.source = str(source)
        self.line = line
        self.problem = problem
        where = f"{self.source}, line {line}" if line is not None else self.source
        super().__init__(f"{where}: {problem}")


class CheckpointError(AFMError):
    """A checkpoint that is not ours, is damaged, or does not fit the data."""

    def __init__(self, source: object, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class ConfigError(AFMError):
    """Hyperparameters or options that make no sense together."""


class DownloadError(AFMError):
    """A dataset download that failed (offline, wrong size, wrong checksum)."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Python's MemoryError, torch's CUDA OutOfMemoryError, or the RuntimeError that torch's CPU
    allocator raises ("DefaultCPUAllocator: can't allocate memory")."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)
