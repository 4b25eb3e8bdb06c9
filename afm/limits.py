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
