"""The libfm reader: `label id:value id:value ...`, one row per line, one feature per field.

The fast path checks the structure with numpy on the raw bytes and parses the numbers with
pandas' C reader (Frappe's 202,027 training rows in about half a second); any failure falls
back to a line-by-line scan that names the first bad line and what is wrong with it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from afm.data.schema import FieldSchema, infer_schema, schema_from_sizes, schema_from_tsv
from afm.data.splits import SPLITS, Dataset, Split, split_indices
from afm.data.text import FLOAT32_MAX, beyond_float32, check_text
from afm.errors import DataError, quote
from afm.files import iter_regular_file, read_regular_file, write_atomic
from afm.limits import MAX_FEATURES, MAX_FIELDS, MAX_TEXT_FILE_BYTES

# libfm file suffix of each split, as the AFM authors name them.
LIBFM_SPLIT_SUFFIX = {"train": "train", "valid": "validation", "test": "test"}


@dataclass
class LibfmRows:
    split: Split
    line_numbers: np.ndarray  # (N,) 1-based line of each row, for error messages


_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[ord(c) for c in " \t\r\n\v\f"]] = True


def read_libfm(path: str | os.PathLike) -> Split:
    """Read a libfm file with the same number of features on every row (one per field)."""
    return read_libfm_rows(Path(path)).split


def read_libfm_rows(path: Path) -> LibfmRows:
    raw = read_regular_file(path, MAX_TEXT_FILE_BYTES, lambda problem: DataError(path, problem))
    return parse_libfm(raw, path)


def parse_libfm(raw: bytes, source: object) -> LibfmRows:
    """Vectorised parse of a whole file's bytes (see the module docstring)."""
    raw = check_text(raw, source)
    if not raw.strip():
        raise DataError(source, "file is empty")
    buf = np.frombuffer(raw, dtype=np.uint8)
    is_space = _WHITESPACE[buf]  # (bytes,)
    newline_pos = np.flatnonzero(buf == ord("\n"))
    num_lines = len(newline_pos) + (0 if raw.endswith(b"\n") else 1)
    line_ends = np.append(newline_pos, len(buf)) if not raw.endswith(b"\n") else newline_pos
    # A token starts where a non-space byte follows a space (or the file start).
    token_start = np.flatnonzero(~is_space & np.concatenate(([True], is_space[:-1])))  # (T,)
    token_line = np.searchsorted(line_ends, token_start)  # (T,) 0-based line of each token
    tokens_per_line = np.bincount(token_line, minlength=num_lines)  # (L,)
    colon_pos = np.flatnonzero(buf == ord(":"))
    colon_token = np.searchsorted(token_start, colon_pos, side="right") - 1  # (C,)
    colons_per_token = np.bincount(colon_token, minlength=len(token_start))  # (T,)
    first_token = np.zeros(len(token_start), dtype=bool)
    first_token[np.searchsorted(token_line, np.flatnonzero(tokens_per_line), side="left")] = True
    # Labels carry no colon, every feature token exactly one.
    structure_ok = np.array_equal(colons_per_token, (~first_token).astype(colons_per_token.dtype))
    nonblank = np.flatnonzero(tokens_per_line > 0)  # (N,) 0-based lines that hold rows
    features_per_row = tokens_per_line[nonblank] - 1
    width = int(features_per_row[0]) if len(nonblank) else 0
    if not structure_ok or width == 0 or np.any(features_per_row != width):
        diagnose_libfm(raw, source)  # raises with the line
    if width > MAX_FIELDS:
        raise DataError(source, f"{width} features per row; at most {MAX_FIELDS} fields are supported", line=1)
    try:
        table = pd.read_csv(
            io.BytesIO(raw.replace(b":", b" ")), sep=r"\s+", header=None, names=range(1 + 2 * width),
            dtype=np.float64, engine="c", index_col=False, skip_blank_lines=True,
        ).to_numpy()  # (N, 1 + 2F)
    except (ValueError, pd.errors.ParserError):
        diagnose_libfm(raw, source)
        raise DataError(source, "malformed libfm data") from None  # pragma: no cover - diagnose raises
    if table.shape[0] != len(nonblank) or not np.isfinite(table).all():
        diagnose_libfm(raw, source)
    ids = table[:, 1::2]  # (N, F)
    bad = (ids < 0) | (ids != np.floor(ids)) | (ids >= MAX_FEATURES)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        value = ids[row][bad[row]][0]
        problem = ("is negative" if value < 0 else "is not an integer" if value != np.floor(value)
                   else f"is too large (ids must be below {MAX_FEATURES:,})")
        raise DataError(source, f"feature id {value:g} {problem}", line=int(nonblank[row]) + 1)
    _check_float32(table, nonblank, source)
    split = Split(ids.astype(np.int64), table[:, 2::2].astype(np.float32), table[:, 0].astype(np.float32))
    return LibfmRows(split, nonblank.astype(np.int64) + 1)


def _check_float32(table: np.ndarray, nonblank: np.ndarray, source: object) -> None:
    """Labels and values the model can hold: finite in float32, not only in float64."""
    large = beyond_float32(table[:, 0::2])  # (N, 1 + F): the label, then each value
    if large.any():
        row, column = (int(v[0]) for v in np.nonzero(large))
        what = "label" if column == 0 else f"value (of feature {table[row, 2 * column - 1]:.0f})"
        raise DataError(source, f"{what} {table[row, 2 * column]:g} is beyond the float32 range "
                        f"(±{FLOAT32_MAX:.3g}) the model computes in; rescale the numbers", line=int(nonblank[row]) + 1)


def diagnose_libfm(raw: bytes, source: object) -> None:
    """Slow path, only after the fast path failed: find the first bad line and say why."""
    width = None
    for number, line in enumerate(raw.decode("utf-8", errors="replace").split("\n"), start=1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            label = float(tokens[0])
        except ValueError:
            raise DataError(source, f"label {quote(tokens[0])} is not a number", line=number) from None
        if not np.isfinite(label):
            raise DataError(source, f"label {quote(tokens[0])} is not finite", line=number)
        if abs(label) > FLOAT32_MAX:
            raise DataError(source, f"label {quote(tokens[0])} is beyond the float32 range the model computes in",
                            line=number)
        if len(tokens) == 1:
            raise DataError(source, "row has a label but no features", line=number)
        for token in tokens[1:]:
            parts = token.split(":")
            if len(parts) != 2:
                raise DataError(source, f"token {quote(token)} is not of the form id:value", line=number)
            try:
                feature_id, value = int(parts[0]), float(parts[1])
            except ValueError:
                raise DataError(source, f"token {quote(token)} is not of the form id:value with an "
                                "integer id and a numeric value", line=number) from None
            if feature_id < 0:
                raise DataError(source, f"feature id {feature_id} is negative", line=number)
            if not np.isfinite(value):
                raise DataError(source, f"value in {quote(token)} is not finite", line=number)
            if abs(value) > FLOAT32_MAX:
                raise DataError(source, f"value in {quote(token)} is beyond the float32 range the model "
                                "computes in", line=number)
        if width is None:
            width = len(tokens) - 1
        elif len(tokens) - 1 != width:
            raise DataError(source, f"row has {len(tokens) - 1} features, the first row has {width}; "
                            "every row needs exactly one feature per field", line=number)
    raise DataError(source, "no rows" if width is None else "malformed libfm data")


def order_columns_by_field(rows: LibfmRows, schema: FieldSchema, source: object) -> Split:
    """Put field f's feature in column f, whatever order the file lists them in."""
    split = rows.split
    if split.num_fields != schema.num_fields:
        raise DataError(source, f"rows have {split.num_fields} features; the schema expects {schema.num_fields} "
                        f"fields ({', '.join(schema.field_names[:12])})", line=int(rows.line_numbers[0]))
    too_large = split.feature_ids.max(axis=1) >= schema.num_features  # (N,)
    if too_large.any():
        row = int(np.flatnonzero(too_large)[0])
        raise DataError(source, f"feature id {split.feature_ids[row].max()} is beyond the schema's "
                        f"{schema.num_features:,} features", line=int(rows.line_numbers[row]))
    row_fields = schema.feature_field[split.feature_ids]  # (N, F)
    order = np.argsort(row_fields, axis=1, kind="stable")  # (N, F)
    sorted_fields = np.take_along_axis(row_fields, order, axis=1)
    bad = np.any(sorted_fields != np.arange(schema.num_fields), axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        seen = [schema.field_names[f] if f >= 0 else "unknown" for f in row_fields[row]]
        raise DataError(source, f"row needs one feature of each field {list(schema.field_names)}, "
                        f"has {seen}", line=int(rows.line_numbers[row]))
    if np.all(order == np.arange(schema.num_fields)):
        return split
    return Split(np.take_along_axis(split.feature_ids, order, axis=1),
                 np.take_along_axis(split.feature_values, order, axis=1), split.labels)


def find_libfm_splits(directory: Path) -> dict[str, Path] | None:
    """`NAME.{train,validation,test}.libfm` in a directory, or None when there is no such set."""
    for train in sorted(directory.glob("*.train.libfm")):
        stem = train.name[: -len(".train.libfm")]
        paths = {split: directory / f"{stem}.{suffix}.libfm" for split, suffix in LIBFM_SPLIT_SUFFIX.items()}
        if all(p.is_file() for p in paths.values()):
            return paths
    return None


def schema_of_dir(directory: Path, feature_ids: list[np.ndarray], field_sizes: dict[str, int] | None = None,
                  field_names: Sequence[str] | None = None) -> FieldSchema:
    """The schema of libfm splits in `directory`: its features.tsv, else the known layout
    `field_sizes`, else inferred from each column's id range (and named `field_names`).
    `feature_ids`: (N, F) arrays of the splits (any rows that hold each column's smallest and
    largest id will do)."""
    num_features = max(int(ids.max()) for ids in feature_ids) + 1
    tsv = sorted(directory.glob("*features.tsv"))
    if tsv:
        return schema_from_tsv(tsv[0], num_features)
    if field_sizes is not None and sum(field_sizes.values()) >= num_features:
        return schema_from_sizes(field_sizes, num_features)
    return infer_schema(feature_ids, directory, field_names)


def load_libfm_dir(directory: str | os.PathLike, name: str | None = None,
                   field_sizes: dict[str, int] | None = None, schema: FieldSchema | None = None,
                   field_names: Sequence[str] | None = None) -> Dataset:
    """Published splits in one directory. With `schema` (a checkpoint's), the rows are read as
    that model sees them: its fields, and no id beyond its table."""
    directory = Path(directory)
    paths = find_libfm_splits(directory)
    if paths is None:
        raise DataError(directory, "no NAME.train.libfm, NAME.validation.libfm and NAME.test.libfm here")
    rows = {split: read_libfm_rows(path) for split, path in paths.items()}
    widths = {split: r.split.num_fields for split, r in rows.items()}
    if len(set(widths.values())) != 1:
        raise DataError(directory, f"splits have different numbers of fields: {widths}")
    if schema is None:
        schema = schema_of_dir(directory, [r.split.feature_ids for r in rows.values()], field_sizes, field_names)
    splits = {s: order_columns_by_field(rows[s], schema, paths[s]) for s in SPLITS}
    return Dataset(name or directory.name, schema, splits, str(directory))


def load_libfm_file(path: str | os.PathLike, seed: int = 0, schema: FieldSchema | None = None) -> Dataset:
    """One file, split 70/20/10 with `seed`."""
    path = Path(path)
    rows = read_libfm_rows(path)
    if schema is None:
        schema = infer_schema([rows.split.feature_ids], path)
    everything = order_columns_by_field(rows, schema, path)
    splits = {name: everything.take(idx) for name, idx in split_indices(len(everything), seed).items()}
    return Dataset(path.stem, schema, splits, str(path), notes=[f"split 70/20/10 with seed {seed}"])


# --------------------------------------------------------------------------- files of any size

LIBFM_CHUNK_BYTES = 8 * 1024**2  # whole lines parsed at once when a file is streamed: ~130 MB at peak


def _line_count(raw: bytes) -> int:
    """Lines as `check_text` numbers them (CR, LF and CRLF each end one)."""
    return raw.count(b"\n") + raw.count(b"\r") - raw.count(b"\r\n")


def iter_libfm_rows(path: str | os.PathLike, chunk_bytes: int | None = None) -> Iterator[LibfmRows]:
    """A libfm file of any size, parsed a chunk of whole lines at a time (`LIBFM_CHUNK_BYTES`)
    with the same checks as `read_libfm`; line numbers, in the rows and in errors, count from the
    start of the file. (Chunks end at a line feed: a file with CR-only line ends is read whole.)"""
    path = Path(path)
    chunk_bytes = chunk_bytes or LIBFM_CHUNK_BYTES
    lines_before, width = 0, None

    def parse(raw: bytes) -> Iterator[LibfmRows]:
        nonlocal lines_before, width
        if raw.strip():
            try:
                rows = parse_libfm(raw, path)
            except DataError as exc:
                line = exc.line + lines_before if exc.line is not None else None
                raise DataError(path, exc.problem, line=line) from None
            rows.line_numbers += lines_before
            width = rows.split.num_fields if width is None else width
            if rows.split.num_fields != width:
                raise DataError(path, f"row has {rows.split.num_fields} features, the first row has {width}; every "
                                "row needs exactly one feature per field", line=int(rows.line_numbers[0]))
            yield rows
        lines_before += _line_count(raw)

    pending = b""
    for block in iter_regular_file(path, chunk_bytes, lambda problem: DataError(path, problem)):
        data = pending + block
        cut = data.rfind(b"\n") + 1  # a CRLF is never cut in two: the cut follows its LF
        if cut == 0:
            pending = data
            continue
        yield from parse(data[:cut])
        pending = data[cut:]
    yield from parse(pending)
    if width is None:
        raise DataError(path, "file is empty")


WRITE_CHUNK_ROWS = 100_000


def format_libfm(labels: np.ndarray, feature_ids: np.ndarray, feature_values: np.ndarray | None = None) -> bytes:
    """Rows as libfm text, `label id:value ...` (value 1 when `feature_values` is None: one-hot).
    Labels and values are written with 9 significant digits, so float32 numbers read back exactly."""
    rows, width = feature_ids.shape
    columns = 1 + width * (1 if feature_values is None else 2)
    cells = np.empty((rows, columns), dtype=object)  # Python numbers, in the order the template wants
    cells[:, 0] = labels.astype(np.float64)
    if feature_values is None:
        cells[:, 1:] = feature_ids.astype(np.int64)
        template = "%.9g" + " %d:1" * width + "\n"
    else:
        cells[:, 1::2] = feature_ids.astype(np.int64)
        cells[:, 2::2] = feature_values.astype(np.float64)
        template = "%.9g" + " %d:%.9g" * width + "\n"
    # One format operation per chunk: about a third of a second per million rows.
    return ((template * rows) % tuple(cells.ravel().tolist())).encode()


def write_libfm(path: str | os.PathLike,
                chunks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]]) -> Path:
    """Write (labels, ids, values-or-None) chunks to one libfm file, atomically; memory holds one
    chunk's text at a time."""

    def write(fd: int) -> None:
        for labels, feature_ids, feature_values in chunks:
            for start in range(0, len(labels), WRITE_CHUNK_ROWS):
                part = slice(start, start + WRITE_CHUNK_ROWS)
                view = memoryview(format_libfm(labels[part], feature_ids[part],
                                               None if feature_values is None else feature_values[part]))
                while view:
                    view = view[os.write(fd, view):]

    return write_atomic(path, write, lambda problem: DataError(path, problem))
