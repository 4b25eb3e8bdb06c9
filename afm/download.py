"""`python -m afm download frappe|ml-tag --dest DIR`: fetch the AFM authors' public copies.

Each file is checked against the git blob SHA-1 recorded in the authors' repository tree (and
its size where known), streamed to a `.part` file and renamed only when complete and correct,
so an interrupted or tampered download never passes for data.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from afm.errors import DownloadError, quote
from afm.files import write_atomic

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/hexiangnan/attentional_factorization_machine/master/data"
MAX_FILE_BYTES = 1024**3  # a mirror that sends more than this is not sending our data
CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    name: str
    git_blob_sha1: str  # from the authors' repository tree
    size: int | None = None  # bytes, where the tree told us


# The authors' repository at commit 09c6756 (the data/ tree).
MANIFEST = {
    "frappe": [
        RemoteFile("frappe.train.libfm", "176b2aaf1f63dd13d3e66a5c17c8ec8186e91893"),
        RemoteFile("frappe.validation.libfm", "50b9c04bcf58dcb46d0b0070d3d6f88b45c9baab", 4_163_044),
        RemoteFile("frappe.test.libfm", "d7cdd03f0e2415c97618de617f20bedd50e8fce7", 2_081_389),
    ],
    "ml-tag": [
        RemoteFile("ml-tag.train.libfm", "45c9017ca7cb14b3df2b7378f3a935577a8a102f"),
        RemoteFile("ml-tag.validation.libfm", "0950186b80ca3158f40c3734e28d236785ad77ac"),
        RemoteFile("ml-tag.test.libfm", "aef8f29a1a396d6ea34e692d26eec9bba2f7ae8b"),
    ],
}


def git_blob_sha1(source: Path | int) -> str:
    """The id git gives a file's content, sha1(b"blob <size>\\0" + content), of a path or of an
    open file descriptor (read from its start, left where it was)."""
    if isinstance(source, int):
        size = os.fstat(source).st_size
        chunks = iter(lambda offset=[0]: _pread(source, offset), b"")
    else:
        size = source.stat().st_size
        handle = source.open("rb")
        chunks = iter(lambda: handle.read(CHUNK), b"")
    digest = hashlib.sha1(f"blob {size}\0".encode())
    for chunk in chunks:
        digest.update(chunk)
    if not isinstance(source, int):
        handle.close()
    return digest.hexdigest()


def _pread(fd: int, offset: list[int]) -> bytes:
    chunk = os.pread(fd, CHUNK, offset[0])
    offset[0] += len(chunk)
    return chunk


def download_dataset(name: str, dest: str | os.PathLike, base_url: str | None = None, timeout: float = 60.0,
                     manifest: dict[str, list[RemoteFile]] | None = None, progress=sys.stderr) -> Path:
    """Download dataset `name` into DEST/NAME/ and return that directory."""
    files = (manifest or MANIFEST).get(name)
    if files is None:
        raise DownloadError(f"unknown dataset {name!r}; choose one of {sorted(manifest or MANIFEST)}")
    base_url = (base_url or os.environ.get("AFM_DOWNLOAD_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    parsed = urllib.parse.urlsplit(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise DownloadError(f"--base-url must be an http(s) address such as {DEFAULT_BASE_URL}, got {quote(base_url)}")
    target = Path(dest) / name
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {target}: {exc.strerror or exc}") from None
    for remote in files:
        path = target / remote.name
        if path.is_file() and git_blob_sha1(path) == remote.git_blob_sha1:
            print(f"{remote.name}: already downloaded and verified", file=progress)
            continue
        _fetch(f"{base_url}/{name}/{remote.name}", path, remote, timeout, progress)
    return target


def _fetch(url: str, path: Path, remote: RemoteFile, timeout: float, progress) -> None:
    """Stream into a temporary file beside `path` (`afm.files.write_atomic`: created exclusively,
    never through a link a stranger planted), verify it, and only then rename it into place."""

    def download_into(fd: int) -> None:
        try:
            response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - http(s) URLs only
        except urllib.error.HTTPError as exc:
            raise DownloadError(f"{url}: the server answered {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise DownloadError(f"{url}: cannot connect ({exc.reason}); are you offline? "
                                "Use --base-url for a mirror") from None
        except (TimeoutError, OSError, ValueError) as exc:
            raise DownloadError(f"{url}: cannot connect ({exc}); are you offline?") from None
        with response:
            announced = response.headers.get("Content-Length")
            total = int(announced) if announced and announced.isdigit() else None
            if remote.size is not None and total is not None and total != remote.size:
                raise DownloadError(f"{url}: server announces {total} bytes, the published file has {remote.size}")
            if total is not None and total > MAX_FILE_BYTES:
                raise DownloadError(f"{url}: server announces {total} bytes, more than any of these files")
            with os.fdopen(fd, "wb", closefd=False) as handle:
                received = _stream(response, handle, url, total, progress, remote.name)
        if total is not None and received != total:
            raise DownloadError(f"{url}: connection closed after {received} of {total} bytes; run again")
        if remote.size is not None and received != remote.size:
            raise DownloadError(f"{url}: got {received} bytes, the published file has {remote.size}")
        actual = git_blob_sha1(fd)
        if actual != remote.git_blob_sha1:
            raise DownloadError(f"{url}: content differs from the published file "
                                f"(git blob {actual}, expected {remote.git_blob_sha1})")

    write_atomic(path, download_into, lambda problem: DownloadError(f"{path}: {problem}"))


def _stream(response, handle, url: str, total: int | None, progress, label: str) -> int:
    received, last_draw, start = 0, 0.0, time.monotonic()
    while True:
        try:
            chunk = response.read(CHUNK)
        except (TimeoutError, OSError) as exc:
            raise DownloadError(f"{url}: download interrupted after {received} bytes ({exc}); run again") \
                from None
        if not chunk:
            break
        received += len(chunk)
        if received > MAX_FILE_BYTES:
            raise DownloadError(f"{url}: more than {MAX_FILE_BYTES} bytes; this is not the published file")
        handle.write(chunk)
        now = time.monotonic()
        if now - last_draw > 0.2:
            last_draw = now
            _draw(progress, label, received, total, now - start)
    _draw(progress, label, received, total, time.monotonic() - start, final=True)
    return received


def _draw(progress, label: str, received: int, total: int | None, seconds: float, final: bool = False) -> None:
    megabytes = received / 1e6
    if total:
        filled = int(30 * received / total)
        bar = f"[{'#' * filled}{'.' * (30 - filled)}] {megabytes:.1f}/{total / 1e6:.1f} MB"
    else:
        bar = f"{megabytes:.1f} MB"
    rate = megabytes / seconds if seconds > 0 else 0.0
    progress.write(f"\r{label}: {bar} {rate:.1f} MB/s" + ("\n" if final else ""))
    progress.flush()
