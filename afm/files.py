"""Reading and writing files safely: only regular files are read (size checked first), and
writes are atomic, through a temporary file created exclusively beside the target.

- A device, FIFO or directory given as input is refused before reading: `/dev/zero` would read
  until memory runs out, a FIFO would block forever.
- A target that exists and is not a regular file (a device, a directory, a link to either) is
  refused: `--out /dev/null` must not replace the system's /dev/null with a file.
- The temporary file is created with O_EXCL | O_NOFOLLOW, so a planted `.part` symlink is never
  followed; it is fsynced, then renamed over the target, so a reader sees the old file or the
  complete new one. An existing target's permission bits are kept.
- Temporary files of writes that were killed (`.NAME.PID.*.part`) are removed the next time
  something is written to that folder: at once when their writer process is gone, else when
  older than an hour.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from afm.errors import AFMError

STALE_TEMP_SECONDS = 3600
TEMP_SUFFIX = ".part"


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _open_regular(path: str | os.PathLike, error: Callable[[str], AFMError]) -> tuple[int, os.stat_result]:
    """A read-only descriptor of a regular file and its status, or `error(problem)` raised."""
    try:
        # O_NONBLOCK: opening a FIFO for reading must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise error(f"cannot read file ({_reason(exc)})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise error("is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise error("is not a regular file (a device, FIFO or socket); give a file")
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def open_regular_file(path: str | os.PathLike, error: Callable[[str], AFMError]) -> BinaryIO:
    """A regular file opened for reading in binary, of any size (for readers that stream it in
    chunks), or `error(problem)` raised; the same refusals as `read_regular_file`."""
    fd, _ = _open_regular(path, error)
    try:
        os.set_blocking(fd, True)
    except OSError:
        pass
    return os.fdopen(fd, "rb")


def read_regular_file(path: str | os.PathLike, max_bytes: int, error: Callable[[str], AFMError]) -> bytes:
    """The bytes of a regular file of at most `max_bytes`, or `error(problem)` raised."""
    fd, info = _open_regular(path, error)
    try:
        if info.st_size > max_bytes:
            raise error(f"file is {info.st_size:,} bytes, more than the {max_bytes:,} allowed here")
        chunks, remaining = [], info.st_size + 1  # one byte more tells a file that grew meanwhile
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise error(f"file grew past the {max_bytes:,} bytes allowed here while being read")
        return data
    except OSError as exc:
        raise error(f"cannot read file ({_reason(exc)})") from None
    finally:
        os.close(fd)


def iter_regular_file(path: str | os.PathLike, block_bytes: int, error: Callable[[str], AFMError]) -> Iterator[bytes]:
    """A regular file of any size, `block_bytes` at a time: for data too large to hold at once."""
    with open_regular_file(path, error) as handle:
        while True:
            try:
                block = handle.read(block_bytes)
            except OSError as exc:
                raise error(f"cannot read file ({_reason(exc)})") from None
            if not block:
                return
            yield block


def check_writable_target(path: Path, error: Callable[[str], AFMError]) -> None:
    """Refuse targets that are not (or would not become) a regular file."""
    try:
        info = os.stat(path)  # follows links: a link to a device is a device
    except FileNotFoundError:
        info = None
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise error("a part of this path is a file, not a folder") from None
        raise error(f"cannot write here ({_reason(exc)})") from None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise error("is a directory; give a file path inside it")
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise error("exists and is not a regular file (a device, FIFO or socket); refusing to replace it")


def _writer_gone(temporary: Path) -> bool:
    """The process that named this temporary file (`.NAME.PID.TOKEN.part`) no longer runs."""
    parts = temporary.name[: -len(TEMP_SUFFIX)].rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, but not ours to signal
        return False
    return False


def remove_stale_temporaries(folder: Path, max_age: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete the temporary files that killed writes left in `folder`: those whose writer is
    gone, and any older than `max_age` seconds."""
    removed = []
    now = time.time()
    try:
        candidates = list(folder.glob(f".*{TEMP_SUFFIX}"))
    except OSError:
        return removed
    for candidate in candidates:
        try:
            info = candidate.lstat()
            if stat.S_ISREG(info.st_mode) and (now - info.st_mtime > max_age or _writer_gone(candidate)):
                candidate.unlink()
                removed.append(candidate)
        except OSError:
            continue
    return removed


def create_temporary(folder: Path, name: str) -> tuple[int, Path]:
    """A new temporary file beside `name`, created exclusively (never through a link)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        candidate = folder / f".{name}.{os.getpid()}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
        try:
            return os.open(candidate, flags, 0o600), candidate
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(folder))


def target_mode(path: Path, default_mode: int = 0o644) -> int:
    """The permission bits a file written to `path` gets: the existing file's, else the default
    less the umask (a temporary file starts owner-only)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return default_mode & ~umask


def write_atomic(path: str | os.PathLike, data: bytes | Callable[[int], None],
                 error: Callable[[str], AFMError], default_mode: int = 0o644) -> Path:
    """Write `data` (bytes, or a function writing to a file descriptor) to `path` atomically.

    The target keeps its permission bits when it exists, else gets `default_mode` (less the
    umask). On any failure the temporary file is removed and `error(problem)` is raised for
    what the user can fix (disk full, read-only file system, a file where a folder should be)."""
    path = Path(path)
    check_writable_target(path, error)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problem = "a part of this path is a file, not a folder" if exc.errno in (errno.ENOTDIR, errno.EEXIST) \
            else f"cannot create its folder ({_reason(exc)})"
        raise error(problem) from None
    remove_stale_temporaries(path.parent)
    mode = target_mode(path, default_mode)
    try:
        fd, temporary = create_temporary(path.parent, path.name)
    except OSError as exc:
        raise error(f"cannot write here ({_reason(exc)})") from None
    try:
        try:
            os.fchmod(fd, mode)
            if callable(data):
                data(fd)
            else:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise error(f"cannot write the file ({_reason(exc)}); nothing was changed") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
