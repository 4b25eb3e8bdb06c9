"""Reading and writing files safely: only regular files are read (size checked first), and
writes are atomic, through a temporary file created exclusively beside the target.

- A device, FIFO or directory given as input is refused before reading: `/dev/zero` would read
  until memory runs out, a FIFO would block forever.
- A target that exists and is not a regular file (a device, a directory, a link to either) is
  refused: `--out /dev/null` must not replace the system's /dev/null with a file.
- The temporary file is created with O_EXCL | O_NOFOLLOW, so a planted `.part` symlink is never
  followed; it is fsynced, then renamed over the target, so a reader sees the old file or the
  complete new one. An existing target's permission bits are kept.
- Temporary files of writes that were killed (`.NAME.PID.TOKEN.part`) are removed the next time
  something is written to that folder. A writer holds an exclusive lock (`flock`) on its
  temporary file until the rename, so a file that can be locked is abandoned and goes at once; a
  locked one stays, whatever PID its name carries (a writer in another container or on another
  machine sharing the folder is invisible by PID, never by its lock). Where the file system has
  no working locks, temporaries older than an hour go.
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

from afm.errors import AFMError, ConfigError, shorten_path

try:
    import fcntl
except ImportError:  # Windows has no fcntl: temporaries are then swept by age alone
    fcntl = None

STALE_TEMP_SECONDS = 3600  # where locks do not work, a temporary file this old is abandoned
TEMP_SUFFIX = ".part"
_OPEN_FLAGS = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
NUL_PROBLEM = "the path holds a NUL character, which no file name can"
_WRITING: set[str] = set()  # absolute paths of this process's temporary files being written now


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _open_regular(path: str | os.PathLike, error: Callable[[str], AFMError]) -> tuple[int, os.stat_result]:
    """A read-only descriptor of a regular file and its status, or `error(problem)` raised."""
    try:
        # O_NONBLOCK: opening a FIFO for reading must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise error(f"cannot read file ({_reason(exc)})") from None
    except ValueError:  # a NUL character, which no path can hold
        raise error(NUL_PROBLEM) from None
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
    except ValueError:
        raise error(NUL_PROBLEM) from None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise error("is a directory; give a file path inside it")
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise error("exists and is not a regular file (a device, FIFO or socket); refusing to replace it")


def _is_temporary_name(name: str) -> bool:
    """`.NAME.PID.TOKEN.part`, the names `create_temporary` gives (a user's `.notes.part` is not one)."""
    parts = name[1: -len(TEMP_SUFFIX)].rsplit(".", 2) if name.startswith(".") and name.endswith(TEMP_SUFFIX) else []
    return len(parts) == 3 and parts[1].isdigit() and len(parts[2]) == 12 \
        and all(c in "0123456789abcdef" for c in parts[2])


def _lock(fd: int) -> bool | None:
    """An exclusive lock on `fd` without waiting: True when taken, False when another open file
    holds one (its writer is alive, wherever it runs), None where the file system has no locks."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # ENOLCK, EOPNOTSUPP, EBADF (NFS wants a writable file): no lock to decide by
        return None
    return True


def _remove_if_abandoned(candidate: Path, now: float, max_age: float) -> bool:
    """Delete one temporary file when its writer is gone: it can be locked (every live writer
    holds a lock on its file until the rename), or, where locks do not work, it is old."""
    if os.path.abspath(candidate) in _WRITING:
        return False  # this process's own write in progress (a lock would not tell it on NFS)
    info = candidate.lstat()
    if not stat.S_ISREG(info.st_mode):
        return False
    try:
        fd = os.open(candidate, os.O_RDWR | _OPEN_FLAGS | getattr(os, "O_NONBLOCK", 0))
    except PermissionError:
        fd = os.open(candidate, os.O_RDONLY | _OPEN_FLAGS | getattr(os, "O_NONBLOCK", 0))
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            return False  # replaced meanwhile
        locked = _lock(fd)
        if locked is False or (locked is None and now - info.st_mtime <= max_age):
            return False
        candidate.unlink()  # under the lock: a writer that opened it meanwhile sees it gone and retries
        return True
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: Path, max_age: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete the temporary files (`.NAME.PID.TOKEN.part`) that killed writes left in `folder`.

    A writer holds an exclusive `flock` on its temporary file until it renames it, so liveness is
    decided by the lock, not by the PID in the name: a writer in another PID namespace, container
    or machine (shared storage, torchrun over several hosts) keeps its file. Files that can be
    locked are removed at once; where the file system has no working locks, files older than
    `max_age` seconds."""
    removed = []
    now = time.time()
    try:
        candidates = [c for c in folder.glob(f".*{TEMP_SUFFIX}") if _is_temporary_name(c.name)]
    except (OSError, ValueError):
        return removed
    for candidate in candidates:
        try:
            if _remove_if_abandoned(candidate, now, max_age):
                removed.append(candidate)
        except OSError:
            continue
    return removed


def _temporary_name(folder: Path, name: str) -> str:
    """`.NAME.PID.TOKEN.part`, NAME cut short where the whole would pass the folder's name limit
    (a 250-character file name is a legal target; its temporary must be too)."""
    try:
        name_max = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    tail = f".{os.getpid()}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
    room = max(1, name_max - len(tail) - 1)
    while len(name.encode(errors="surrogateescape")) > room:
        name = name[:-1]
    return f".{name}{tail}"


def create_temporary(folder: Path, name: str) -> tuple[int, Path]:
    """A new temporary file beside `name`, created exclusively (never through a link) and held
    under an exclusive lock until its descriptor is closed: the sign, to `remove_stale_temporaries`
    in any process on any machine, that its writer is alive. Callers close it after the rename."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS
    for _ in range(100):
        candidate = folder / _temporary_name(folder, name)
        key = os.path.abspath(candidate)
        _WRITING.add(key)
        try:
            fd = os.open(candidate, flags, 0o600)
        except FileExistsError:
            _WRITING.discard(key)
            continue
        except BaseException:
            _WRITING.discard(key)
            raise
        # A sweeper that opened the new file before the lock was taken removes it: then try another name.
        if _lock(fd) is not False and _still_linked(fd, candidate):
            return fd, candidate
        os.close(fd)
        _WRITING.discard(key)
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(folder))


def _still_linked(fd: int, path: Path) -> bool:
    try:
        info, named = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return info.st_nlink > 0 and (info.st_dev, info.st_ino) == (named.st_dev, named.st_ino)


def finished_temporary(fd: int, temporary: Path) -> None:
    """Close a `create_temporary` file (after its rename, or after removing it): the lock goes."""
    try:
        os.close(fd)
    finally:
        _WRITING.discard(os.path.abspath(temporary))


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
        os.fchmod(fd, mode)
        if callable(data):
            data(fd)
        else:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
        os.replace(temporary, path)  # still locked: no sweeper takes it for abandoned meanwhile
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise error(f"cannot write the file ({_reason(exc)}); nothing was changed") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    finally:
        finished_temporary(fd, temporary)
    return path


# Files the data readers read inside an input folder: an output named like one would replace it.
DATA_FILE_PATTERNS = ("*.libfm", "*features.tsv", "*.npy", "*.json")


def check_not_an_input(out: str | os.PathLike, inputs: dict[str, str | os.PathLike | None]) -> None:
    """The one check every writer makes before any work: refuse an output path that would replace
    one of the command's inputs ({what: path}; None and paths that do not exist, such as a registry
    name, are skipped): the input file itself (same path, a symlink or a hard link to it) or, for
    an input folder, a data file in it (DATA_FILE_PATTERNS)."""
    out = Path(out)
    for what, path in inputs.items():
        if path is None or not _exists(Path(path)):
            continue
        path = Path(path)
        inside = path.is_dir() and _same_file(out.parent, path) and any(out.match(p) for p in DATA_FILE_PATTERNS)
        if inside or _same_file(out, path):
            raise ConfigError(f"{out}: the output would replace {what}; write it elsewhere")


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError) as exc:  # a name too long for the system, a NUL in it
        raise ConfigError(f"{shorten_path(str(path))}: cannot be read ({getattr(exc, 'strerror', None) or exc})") \
            from None


def _same_file(first: Path, second: Path) -> bool:
    try:
        if first.resolve() == second.resolve():
            return True
        return os.path.samefile(first, second)  # hard links too
    except (OSError, ValueError):
        return False
