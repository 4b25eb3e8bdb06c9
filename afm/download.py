"""`python -m afm download frappe|ml-tag --dest DIR`: fetch the AFM authors' public copies.

Each file is checked against the git blob SHA-1 recorded in the authors' repository tree (and
its size where known), streamed to a `.part` file and renamed only when complete and correct,
so an interrupted or tampered download never passes for data. Each read waits at most the
timeout, and each file has a deadline over all its reads, so a server that trickles bytes
cannot hold a download forever.
"""

from __future__ import annotations

import hashlib
import http.client
import math
import os
import socket
import sys
import threading
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
DEADLINE_PER_TIMEOUT = 30  # with no deadline given, one file may take 30 x the per-read timeout in all


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
                     manifest: dict[str, list[RemoteFile]] | None = None, progress=sys.stderr,
                     deadline: float | None = None) -> Path:
    """Download dataset `name` into DEST/NAME/ and return that directory.

    `timeout`: seconds any one read (or the connection) may wait. `deadline`: seconds one file may
    take in all, connecting, headers and body (default `timeout` x DEADLINE_PER_TIMEOUT): a server
    that trickles a byte within every timeout cannot hold the download forever."""
    files = (manifest or MANIFEST).get(name)
    if files is None:
        raise DownloadError(f"unknown dataset {name!r}; choose one of {sorted(manifest or MANIFEST)}")
    deadline = timeout * DEADLINE_PER_TIMEOUT if deadline is None else deadline
    if not (isinstance(deadline, (int, float)) and 0 < deadline < math.inf):
        raise DownloadError(f"the deadline must be a positive number of seconds, got {quote(deadline)}")
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
        if _already_there(path, remote):
            print(f"{remote.name}: already downloaded and verified", file=progress)
            continue
        _fetch(f"{base_url}/{name}/{remote.name}", path, remote, timeout, deadline, progress)
    return target


def _already_there(path: Path, remote: RemoteFile) -> bool:
    try:
        return path.is_file() and git_blob_sha1(path) == remote.git_blob_sha1
    except OSError:  # unreadable: download it again over it
        return False


class _Deadline:
    """The time one file's download may take in all. When it is up, the download's sockets are
    shut down, which ends any read blocked on them (a server trickling one byte per read
    otherwise holds it forever, each read well within the timeout)."""

    def __init__(self, seconds: float):
        self.seconds, self.expired = seconds, False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> bool:
        self._timer.cancel()
        return False

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def open(self, url: str, timeout: float):
        """`urllib.request.urlopen(url, timeout)`, its connections (redirects too) watched."""
        deadline = self

        def watched(base):
            class Connection(base):
                def connect(self):
                    super().connect()
                    deadline.watch(self.sock)
            return Connection

        class HTTP(urllib.request.HTTPHandler):
            def http_open(self, req):
                return self.do_open(watched(http.client.HTTPConnection), req)

        class HTTPS(urllib.request.HTTPSHandler):
            def https_open(self, req):
                return self.do_open(watched(http.client.HTTPSConnection), req, context=self._context)

        return urllib.request.build_opener(HTTP, HTTPS).open(url, timeout=timeout)

    def error(self, url: str, received: int) -> DownloadError:
        return DownloadError(f"{url}: not complete after the {self.seconds:g} s one file may take ({received:,} bytes "
                             "received); the server is too slow: run again later, or use --base-url for a mirror")


def _shut(sock: socket.socket) -> None:
    try:  # the plain socket's shutdown, also under TLS: it wakes a blocked read without touching the TLS state
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _open(url: str, timeout: float, deadline: _Deadline):
    try:
        return deadline.open(url, timeout)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: the server answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError, ValueError, http.client.HTTPException) as exc:
        if deadline.expired:
            raise deadline.error(url, 0) from None
        if isinstance(exc, urllib.error.URLError):
            raise DownloadError(f"{url}: cannot connect ({exc.reason}); are you offline? "
                                "Use --base-url for a mirror") from None
        raise DownloadError(f"{url}: cannot connect ({exc}); are you offline?") from None


def _fetch(url: str, path: Path, remote: RemoteFile, timeout: float, seconds: float, progress) -> None:
    """Stream into a temporary file beside `path` (`afm.files.write_atomic`: created exclusively,
    never through a link a stranger planted), verify it, and only then rename it into place."""

    def download_into(fd: int) -> None:
        with _Deadline(seconds) as deadline, _open(url, timeout, deadline) as response:
            announced = response.headers.get("Content-Length")
            total = int(announced) if announced and announced.isdigit() else None
            if remote.size is not None and total is not None and total != remote.size:
                raise DownloadError(f"{url}: server announces {total} bytes, the published file has {remote.size}")
            if total is not None and total > MAX_FILE_BYTES:
                raise DownloadError(f"{url}: server announces {total} bytes, more than any of these files")
            with os.fdopen(fd, "wb", closefd=False) as handle:
                received = _stream(response, handle, url, total, progress, remote.name, deadline)
        try:
            _verify(fd, url, remote, received, total)
        except DownloadError:
            if deadline.expired:  # cut short by the deadline, not by the server
                raise deadline.error(url, received) from None
            raise

    write_atomic(path, download_into, lambda problem: DownloadError(f"{path}: {problem}"))


def _verify(fd: int, url: str, remote: RemoteFile, received: int, total: int | None) -> None:
    if total is not None and received != total:
        raise DownloadError(f"{url}: connection closed after {received} of {total} bytes; run again")
    if remote.size is not None and received != remote.size:
        raise DownloadError(f"{url}: got {received} bytes, the published file has {remote.size}")
    actual = git_blob_sha1(fd)
    if actual != remote.git_blob_sha1:
        raise DownloadError(f"{url}: content differs from the published file "
                            f"(git blob {actual}, expected {remote.git_blob_sha1})")


def _stream(response, handle, url: str, total: int | None, progress, label: str, deadline: _Deadline) -> int:
    received, last_draw, start = 0, 0.0, time.monotonic()
    while True:
        try:
            chunk = response.read(CHUNK)
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            if deadline.expired:
                raise deadline.error(url, received) from None
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
