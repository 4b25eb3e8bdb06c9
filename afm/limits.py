"""Stated limits, in one place. Inputs (data files, feature tables, checkpoints, model configs)
are checked against them before anything is allocated, so a hostile or corrupt file fails with
a message instead of exhausting memory."""

from __future__ import annotations

MAX_FEATURES = 50_000_000  # feature ids in data, rows of an embedding table
MAX_FIELDS = 256  # fields per row; P = F(F-1)/2 pairs
MAX_DIM = 4096  # embedding size k and attention size t
MAX_TABLE_WEIGHTS = 2_000_000_000  # num_features x k of one embedding table
QUOTE_CHARS = 60  # how much of a bad token or line an error message quotes
MAX_TEXT_FILE_BYTES = 4 * 1024**3  # a libfm or CSV file read into memory (larger: convert to arrays first)
MAX_CSV_COLUMNS = 4 * MAX_FIELDS  # cells of a CSV header, counted before the file reaches the parser
MAX_HEADER_BYTES = 1024**2  # a CSV header line longer than this is not a header
MEMORY_FRACTION = 0.8  # of the memory available now that one training may plan to use
PAIR_SLOT_BUDGET = 64_000_000  # floats in one (batch, P, k) tensor outside training: 256 MB
STREAM_WINDOW_BYTES = 32 * 1024**2  # rows shuffled together when training streams memory-mapped data


def parse_bytes(text: str) -> int:
    """'8G', '512M', '1.5g' or a plain number of bytes."""
    text = text.strip().upper().removesuffix("B")
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}.get(text[-1:], 1)
    number = float(text[:-1] if scale > 1 else text)
    if not number > 0:
        raise ValueError(f"not a positive size: {text!r}")
    return int(number * scale)


def available_memory_bytes() -> int:
    """Memory a new allocation can use now on the CPU: MemAvailable, capped by the cgroup's
    limit where one is set; `AFM_MEMORY_BUDGET` (e.g. "4G", for a shared server) caps both."""
    import os

    available = None
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available = 8 * 1024**3
    try:
        with open("/sys/fs/cgroup/memory.max") as limit, open("/sys/fs/cgroup/memory.current") as used:
            cap = limit.read().strip()
            if cap != "max":
                available = min(available, int(cap) - int(used.read().strip()))
    except (OSError, ValueError):
        pass
    budget = os.environ.get("AFM_MEMORY_BUDGET")
    if budget:
        available = min(available, parse_bytes(budget))
    return max(available, 0)


def rows_within(per_row_floats: int, cap: int, budget: int = PAIR_SLOT_BUDGET) -> int:
    """How many rows of `per_row_floats` floats fit one batch of the budget (at least 1, at most `cap`)."""
    return max(1, min(cap, budget // max(per_row_floats, 1)))
