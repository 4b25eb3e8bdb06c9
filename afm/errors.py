"""Errors a user can cause. Each carries one readable line: what file, where, what is wrong.

The CLI turns any `AFMError` into exit code 2 and that line on stderr; the app shows it in
`st.error`. Anything else escaping is a bug in this package, not a user mistake.
"""

from __future__ import annotations

from afm.limits import QUOTE_CHARS

MAX_MESSAGE_CHARS = 1000  # a message is one line a person reads, never a copy of the input
PATH_CHARS = 200  # a path or URL in a message longer than this is shortened in the middle


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """A short, printable excerpt of user input for a message: repr() of at most `limit`
    characters (bytes decoded leniently), so a 50 MB line is never copied into an error."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value[: limit * 4]).decode("utf-8", errors="replace")
    text = str(value)
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"… ({len(text):,} characters)"


def shorten_path(path: object, limit: int = PATH_CHARS) -> str:
    """A path short enough for a message: its start and its file name, the middle left out
    ("/data/runs/…/model.safetensors"). A file name too long itself: the path's start and end."""
    text = str(path)
    limit = max(limit, 24)
    if len(text) <= limit:
        return text
    cut = text.rfind("/", 0, len(text) - 1)  # the separator before the file name (or last folder)
    name = text[cut:] if cut > 0 else ""
    if not name or len(name) > limit * 2 // 3:
        keep = limit // 3
        return text[:keep] + "…" + text[-(limit - keep - 1):]
    return text[:limit - len(name) - 1] + "…" + name


def _one_line(text: str) -> str:
    """One line of at most MAX_MESSAGE_CHARS: whitespace collapsed; when too long, every long
    word (a path, a URL) shortened in the middle first, so the problem after it stays whole."""
    text = " ".join(text.split())
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    text = " ".join(shorten_path(word) for word in text.split(" "))
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    keep = MAX_MESSAGE_CHARS // 3  # the start names the thing, the end says what is wrong
    return text[:keep] + " … " + text[-(MAX_MESSAGE_CHARS - keep - 3):]


def _short_source(source: str, problem: str) -> str:
    """The file a message names, shortened when the message would be too long (a path with
    spaces is more than one word to `_one_line`)."""
    return source if len(source) + len(str(problem)) + 40 <= MAX_MESSAGE_CHARS else shorten_path(source)


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
        super().__init__(f"{_short_source(self.source, problem)}{f', line {line}' if line is not None else ''}: "
                         f"{problem}")


class CheckpointError(AFMError):
    """A checkpoint that is not ours, is damaged, or does not fit the data."""

    def __init__(self, source: object, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{_short_source(self.source, problem)}: {problem}")


class ConfigError(AFMError):
    """Hyperparameters or options that make no sense together."""


class DownloadError(AFMError):
    """A dataset download that failed (offline, wrong size, wrong checksum)."""


class UnseenValuesWarning(UserWarning):
    """New rows of which most cells of a field hold values the model did not see in training."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Python's MemoryError, torch's CUDA OutOfMemoryError, or the RuntimeError that torch's CPU
    allocator raises ("DefaultCPUAllocator: can't allocate memory")."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)
