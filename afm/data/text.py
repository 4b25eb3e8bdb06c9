"""Bytes that should be text: what they are when they are not, and numbers as the model holds them.

`check_text` refuses compressed, binary and UTF-16/UTF-32 input with a word on what to do, drops
a UTF-8 byte-order mark and makes every line end a line feed; `text_blocks` does the same for a
file read a block at a time. `check_float32` refuses numbers
that are finite in float64 but not in float32, the precision the model computes in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from afm.errors import DataError, quote

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
