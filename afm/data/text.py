"""Text files: bytes that should be text, and CSV files read as text.

Bytes: `check_text` refuses compressed, binary and UTF-16/UTF-32 input with a word on what to do,
drops a UTF-8 byte-order mark and makes every line end a line feed; `text_blocks` does the same
for a file read a block at a time. `beyond_float32` finds numbers that are finite in float64 but
not in float32, the precision the model computes in.

CSV: every cell the string it is, every row numbered by its line in the file. pandas' C reader
does the parsing (`header=None, dtype=str, na_filter=False`: no cell is converted, `007` stays
`007`), after these checks of our own:
- the header line's size and number of cells are counted on the raw bytes first, so a line of
  20 MB of commas is refused at once (pandas would spend many minutes naming its columns);
- the header names every column once: a duplicate name is an error (pandas would rename it
  `city.1`), an unnamed column is an error, except an empty last column that trailing commas
  make (`a,b,label,` on every line): it is dropped; a header that is one column whose name holds
  `;` or a tab is a semicolon- or tab-separated file, and is named so;
- rows are numbered by the file line they start on, also when a quoted cell spans lines:
  `record_ends` finds the line feeds outside quoted cells.
The stream of rows to score (`afm.data.stream`) reads a file in blocks with the same functions;
`read_csv_file` reads a whole one with pandas' own cell types (MovieLens' tags.csv).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from afm.errors import DataError, quote
from afm.files import read_regular_file
from afm.limits import MAX_CSV_COLUMNS, MAX_FIELDS, MAX_HEADER_BYTES, MAX_TEXT_FILE_BYTES

UTF8_BOM = b"\xef\xbb\xbf"
FLOAT32_MAX = float(np.finfo(np.float32).max)  # about 3.4e38: larger numbers become inf in the model
_WIDE_SAMPLE = 4096  # bytes looked at for the NUL pattern of UTF-16 text without a byte-order mark


def wide_encoding(raw: bytes) -> str | None:
    """'UTF-16' or 'UTF-32' when `raw` starts like text in one of them (a byte-order mark, or
    ASCII text with a NUL beside every character), else None."""
    if raw[:4] in (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"):
        return "UTF-32"
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "UTF-16"
    sample = raw[:_WIDE_SAMPLE]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    for zeros, text in ((odd, even), (even, odd)):  # little-endian: NULs at odd offsets
        if zeros.count(0) >= 0.9 * len(zeros) and text.count(0) <= 0.1 * len(text):
            return "UTF-16"
    return None


def check_text(raw: bytes, source: object) -> bytes:
    """Refuse binary input with a useful word, and make every line end a newline: files with
    CR-only line ends (old Mac) then number their lines like any other. A UTF-8 byte-order mark
    at the start is dropped."""
    if raw[:2] == b"\x1f\x8b":
        raise DataError(source, "is gzip-compressed; decompress it first (gunzip)")
    if raw[:4] == b"PK\x03\x04":
        raise DataError(source, "is a zip archive; extract it first")
    wide = wide_encoding(raw)
    if wide is not None:
        raise DataError(source, f"is {wide} text; save it as UTF-8 (e.g. in a spreadsheet: Save As, CSV UTF-8; "
                        f"or iconv -f {wide} -t UTF-8)")
    if raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM):]
    nul = raw.find(b"\0", 0, 1 << 20)
    if nul >= 0:
        raise DataError(source, f"is a binary file, not text (a NUL byte at offset {nul:,})")
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return raw


def text_blocks(handle: BinaryIO, source: object, block_bytes: int) -> Iterator[tuple[bytes, int, bool]]:
    """A file's text a block at a time, as `check_text` makes a whole file's: the first block
    checked (compression, wide encodings, byte-order mark), NUL bytes refused (with the line they
    follow), every line end a line feed; a CR that ends a block waits for the next, since it may be
    half of a CRLF. Yields (text, raw bytes read so far, whether this is the end of the file)."""
    carry, first, lines_before, raw_read, done = b"", True, 0, 0, False
    while not done:
        try:
            block = handle.read(block_bytes)
        except OSError as exc:
            raise DataError(source, f"cannot read file ({exc.strerror or exc})") from None
        done = not block
        raw_read += len(block)
        data, carry = carry + block, b""
        if first and not done and len(data) < len(UTF8_BOM) + 1:  # the start is judged whole (a BOM, a magic)
            carry = data
            continue
        if not done and data.endswith(b"\r"):
            data, carry = data[:-1], b"\r"
        if first:
            text = check_text(data, source) if data else b""
            first = not text
        elif b"\0" in data:
            raise DataError(source, f"is a binary file, not text (a NUL byte after line {lines_before:,})")
        else:
            text = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n") if b"\r" in data else data
        lines_before += text.count(b"\n")
        yield text, raw_read, done


def not_utf8(raw: bytes, error: UnicodeDecodeError, source: object, first_line: int = 1) -> DataError:
    """The error for bytes that are not UTF-8, naming the line of the first bad byte."""
    line = first_line + raw.count(b"\n", 0, error.start)
    return DataError(source, f"not UTF-8 text (byte {raw[error.start]:#04x}); save it as UTF-8", line=line)


def first_not_utf8(raw: bytes, source: object, first_line: int = 1) -> DataError | None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return not_utf8(raw, exc, source, first_line)
    return None


def beyond_float32(x: np.ndarray) -> np.ndarray:
    """Where finite float64 numbers would be inf as float32 (|x| > float32's largest)."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(x) & (np.abs(x) > FLOAT32_MAX)


def float32_problem(text: object) -> str:
    return (f"{quote(text)} is beyond the float32 range (±{FLOAT32_MAX:.3g}) the model computes in; "
            "rescale the numbers")


MAX_RECORD_BYTES = 64 * 1024**2  # one row (a quoted cell may span lines) longer than this is not a row
_OPTIONS = dict(header=None, dtype=str, na_filter=False, skipinitialspace=True, skip_blank_lines=False,
                index_col=False, engine="c", encoding="utf-8")
_QUOTE, _COMMA, _NEWLINE, _SPACE = ord('"'), ord(","), ord("\n"), ord(" ")


# --------------------------------------------------------------------------- CSV: where records end


def _at_field_start(raw: bytes, position: int) -> bool:
    """A quote at `position` opens a quoted cell: only spaces lie between it and a delimiter,
    a line feed or the start (pandas reads any other quote as a character of the cell)."""
    j = position - 1
    while j >= 0 and raw[j] == _SPACE:
        j -= 1
    return j < 0 or raw[j] in (_COMMA, _NEWLINE)


def _parity_holds(raw: bytes, buf: np.ndarray, quotes: np.ndarray) -> bool:
    """Every even-numbered quote opens a cell or escapes a quote (`""`), so quoted spans are
    simply quote pairs: true for all but files with stray quotes inside unquoted cells."""
    opens = quotes[0::2]
    before = buf[np.maximum(opens - 1, 0)]
    ok = (opens == 0) | (before == _COMMA) | (before == _NEWLINE)
    ok[1:] |= opens[1:] - 1 == quotes[1::2][: len(opens) - 1]  # `""`: right after the previous quote
    for i in np.flatnonzero(~ok & (before == _SPACE)).tolist():
        ok[i] = _at_field_start(raw, int(opens[i]))
    return bool(ok.all())


def _scan_quotes(raw: bytes, quotes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(opens, closes) of quoted spans, quote by quote as pandas' tokenizer reads them."""
    opens, closes, inside, i = [], [], False, 0
    while i < len(quotes):
        position = quotes[i]
        if inside:
            if i + 1 < len(quotes) and quotes[i + 1] == position + 1:
                i += 2  # `""` inside a quoted cell: one quote character
                continue
            closes.append(position)
            inside = False
        elif _at_field_start(raw, position):
            opens.append(position)
            inside = True
        i += 1
    return np.array(opens, dtype=np.int64), np.array(closes, dtype=np.int64)


def record_ends(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the line feeds that end a record, each one's 0-based line): the line feeds
    outside quoted cells. `raw` must start outside a quoted cell."""
    buf = np.frombuffer(raw, dtype=np.uint8)
    newlines = np.flatnonzero(buf == _NEWLINE)
    every = np.arange(len(newlines), dtype=np.int64)
    if b'"' not in raw:
        return newlines, every
    quotes = np.flatnonzero(buf == _QUOTE)
    if _parity_holds(raw, buf, quotes):
        opens, closes = quotes[0::2], quotes[1::2]
    else:
        opens, closes = _scan_quotes(raw, quotes.tolist())
    if len(opens) == 0:
        return newlines, every
    closes = np.append(closes, len(raw)) if len(closes) < len(opens) else closes  # never closed: to the end
    span = np.searchsorted(opens, newlines, side="right") - 1
    inside = (span >= 0) & (newlines < closes[np.maximum(span, 0)])
    return newlines[~inside], every[~inside]


def record_lines(raw: bytes, first_line: int) -> np.ndarray:
    """The file line each record of `raw` starts on (`raw` holds whole records)."""
    ends, end_lines = record_ends(raw)
    starts = np.concatenate(([first_line], first_line + end_lines + 1)).astype(np.int64)
    trailing = len(raw) > (int(ends[-1]) + 1 if len(ends) else 0)
    return starts[: len(ends) + int(trailing)]


# --------------------------------------------------------------------------- CSV: parsing


def _parser_error(exc: Exception, lines: np.ndarray, source: object) -> DataError:
    text = str(exc)

    def line_of(record: int) -> int | None:
        return int(lines[record]) if 0 <= record < len(lines) else None

    cells = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if cells:
        expected, record, saw = (int(g) for g in cells.groups())
        return DataError(source, f"this row has {saw:,} cells, the header names {expected:,} (a comma inside a "
                         "cell needs the cell in double quotes; a trailing comma on every row needs one on the "
                         "header too)", line=line_of(record - 1))
    unclosed = re.search(r"EOF inside string starting at row (\d+)", text)
    if unclosed:
        return DataError(source, 'a quoted cell that starts on this line is never closed (a " without its '
                         'closing ")', line=line_of(int(unclosed.group(1))))
    return DataError(source, f"not a valid CSV: {quote(text, 200)}")


class _Joined(io.RawIOBase):
    """Byte strings read as one file, without copying them together."""

    def __init__(self, *parts: bytes):
        self.parts, self.part, self.position = [memoryview(p) for p in parts if p], 0, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self.part < len(self.parts) and self.position == len(self.parts[self.part]):
            self.part, self.position = self.part + 1, 0
        if self.part == len(self.parts):
            return 0
        view = self.parts[self.part]
        count = min(len(buffer), len(view) - self.position)
        buffer[:count] = view[self.position:self.position + count]
        self.position += count
        return count


def parse_records(raw: bytes, width: int, source: object, first_line: int,
                  header: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    """Whole records as a frame of `width` text columns (0..width-1), and each one's line.
    `header`: the first record is the header (else rows alone, as the pieces of a stream).

    pandas cuts a cell too many from the first row and from a last row without a line feed
    (with a warning), where it refuses any other row with one: rows alone are read after a row
    of `width` empty cells, and every file ends in a line feed."""
    lines = record_lines(raw, first_line)
    lead = b"" if header else b"," * (width - 1) + b"\n"
    source_bytes = _Joined(lead, raw, b"" if raw.endswith(b"\n") else b"\n")
    try:
        frame = pd.read_csv(io.BufferedReader(source_bytes), names=range(width), **_OPTIONS)
    except UnicodeDecodeError:
        raise first_not_utf8(raw, source, first_line) or DataError(source, "not UTF-8 text") from None
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame({c: pd.Series([], dtype=str) for c in range(width)})
    except (pd.errors.ParserError, ValueError) as exc:
        raise _parser_error(exc, np.concatenate(([first_line], lines)) if lead else lines, source) from None
    if lead:
        frame = frame.iloc[1:].reset_index(drop=True)
    if len(frame) != len(lines):  # not expected; never index past the lines
        lines = np.arange(len(frame), dtype=np.int64) + first_line
    return frame, lines


@dataclass(frozen=True)
class CsvHeader:
    """The column names of a CSV and where the header is."""

    names: tuple[str, ...]
    line: int
    phantom: bool = False  # an unnamed last column (trailing commas): dropped if its cells are empty

    @property
    def width(self) -> int:
        return len(self.names) + int(self.phantom)

    @classmethod
    def read(cls, raw: bytes, source: object, line: int = 1) -> CsvHeader:
        """The header record at the start of `raw`, checked before any parsing of the rows."""
        end = raw.find(b"\n", 0, MAX_HEADER_BYTES + 1)
        if end < 0 and len(raw) > MAX_HEADER_BYTES:
            raise DataError(source, f"the first line (the header of column names) is longer than "
                            f"{MAX_HEADER_BYTES:,} bytes; is this a CSV with a header?", line=line)
        end = len(raw) if end < 0 else end
        if raw.count(b",", 0, end) + 1 > MAX_CSV_COLUMNS:
            raise DataError(source, f"the header has {raw.count(b',', 0, end) + 1:,} cells, more than the "
                            f"{MAX_CSV_COLUMNS:,} a CSV may have here (at most {MAX_FIELDS} feature columns are "
                            "used)", line=line)
        text = raw[: MAX_HEADER_BYTES].decode("utf-8", errors="replace")
        text += "\n" if len(raw) <= MAX_HEADER_BYTES and not text.endswith("\n") else ""  # as the rows are read
        cells = [c for c in next(csv.reader(io.StringIO(text), skipinitialspace=True), [])]
        return cls.of(cells, source, line)

    @classmethod
    def of(cls, cells: list[str], source: object, line: int = 1) -> CsvHeader:
        if len(cells) == 1:
            for mark, kind in ((";", "semicolon"), ("\t", "tab")):
                if mark in cells[0]:
                    raise DataError(source, f"the header is one column {quote(cells[0])}: the file looks "
                                    f"{kind}-separated; save it with commas between the cells", line=line)
        phantom = len(cells) > 1 and cells[-1].strip() == ""
        names = cells[:-1] if phantom else cells
        seen: dict[str, int] = {}
        for index, name in enumerate(names, start=1):
            if not name.strip():
                raise DataError(source, f"column {index} has no name in the header; name it (a table saved with "
                                "its row numbers has an unnamed first column: save it without them)", line=line)
            if name in seen:
                raise DataError(source, f"column {name!r} appears twice in the header (columns {seen[name]} and "
                                f"{index}); give each column its own name", line=line)
            seen[name] = index
        return cls(tuple(names), line, phantom)

    def frame(self, cells: pd.DataFrame, lines: np.ndarray, source: object) -> tuple[pd.DataFrame, np.ndarray]:
        """Parsed records as a frame named by this header: the phantom column dropped (an error
        where it holds something), blank rows dropped."""
        if self.phantom:
            extra = cells[len(self.names)]
            held = np.flatnonzero(extra.str.strip().ne("").to_numpy(bool))
            if len(held):
                row = int(held[0])
                raise DataError(source, f"column {len(self.names) + 1} has no name in the header but holds "
                                f"{quote(extra.iloc[row])}; name it in the header", line=int(lines[row]))
            cells = cells.drop(columns=[len(self.names)])
        cells.columns = list(self.names)
        blank = (cells == "").all(axis=1).to_numpy(bool) if len(cells.columns) else np.ones(len(cells), bool)
        return cells[~blank].reset_index(drop=True), lines[~blank]


def read_csv_text(raw: bytes, source: object) -> tuple[pd.DataFrame, np.ndarray]:
    """A whole CSV file's bytes as a frame of text cells named by its header, and the line of
    each row (blank rows are skipped)."""
    raw = check_text(raw, source)
    if not raw.strip():
        raise DataError(source, "file is empty")
    body = raw.lstrip(b" \t\n")  # blank lines before the header
    first_line = 1 + raw.count(b"\n", 0, len(raw) - len(body))
    header = CsvHeader.read(body, source, first_line)
    cells, lines = parse_records(body, header.width, source, first_line, header=True)
    return header.frame(cells.iloc[1:].reset_index(drop=True), lines[1:], source)


def read_csv_file(path: Path, **read_csv) -> pd.DataFrame:
    """A CSV file read whole with pandas (`read_csv`: further pandas.read_csv arguments), within
    the text-file limit and after the header's size is checked; a file that is not UTF-8 CSV is
    a one-line DataError naming it."""
    raw = check_text(read_regular_file(path, MAX_TEXT_FILE_BYTES, lambda problem: DataError(path, problem)), path)
    if raw.strip():
        CsvHeader.read(raw.lstrip(b"\n"), path, 1 + len(raw) - len(raw.lstrip(b"\n")))
    try:
        return pd.read_csv(io.BytesIO(raw), skip_blank_lines=False, encoding="utf-8", **read_csv)
    except UnicodeDecodeError:
        raise first_not_utf8(raw, path) or DataError(path, "not UTF-8 text") from None
    except pd.errors.EmptyDataError:
        raise DataError(path, "file is empty") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(path, f"not a valid CSV: {quote(str(exc), 200)}") from None


# --------------------------------------------------------------------------- CSV: files of any size


def iter_csv_pieces(handle: BinaryIO, source: object, chunk_rows: int,
                    block_bytes: int) -> Iterator[tuple[bytes, int, int]]:
    """(text of whole records, the line of its first, about how many bytes of the file lie up to
    its end): first the header alone, then `chunk_rows` records at a time. Line ends become
    line feeds; a CR at the end of a block waits for the next (it may be half of a CRLF)."""
    pending, lines_before, header_given = b"", 0, False
    text_read = text_used = 0
    for text, raw_read, done in text_blocks(handle, source, block_bytes):
        text_read += len(text)
        pending += text
        if not header_given:  # blank lines before the header are skipped
            blank = len(pending) - len(pending.lstrip(b" \t\n"))
            lines_before += pending.count(b"\n", 0, blank)
            pending, text_used = pending[blank:], text_used + blank
        if done and pending and not pending.endswith(b"\n"):
            pending += b"\n"
        ends, _ = record_ends(pending)
        if not header_given and not len(ends) and len(pending) > MAX_HEADER_BYTES:
            CsvHeader.read(pending, source, lines_before + 1)  # raises: the header is too long
        cuts = ends[0::chunk_rows] if not header_given else ends[chunk_rows - 1::chunk_rows]
        header_given = header_given or bool(len(ends))
        if done and pending and (not len(cuts) or cuts[-1] != len(pending) - 1):
            cuts = np.append(cuts, len(pending) - 1)  # the rest, a quoted cell never closed included
        start = 0
        for cut in cuts.tolist():
            piece = pending[start:cut + 1]
            text_used += len(piece)
            yield piece, lines_before + 1, round(min(text_used, text_read) * raw_read / max(text_read, 1))
            lines_before += piece.count(b"\n")
            start = cut + 1
        unfinished = len(pending) - (int(ends[-1]) + 1 if len(ends) else 0)  # a record still without its end
        pending = pending[start:]
        if unfinished > MAX_RECORD_BYTES:
            raise DataError(source, f"a row longer than {MAX_RECORD_BYTES:,} bytes starts here (a quoted cell "
                            "that is never closed?)", line=lines_before + 1)
