"""afm.files under hostile conditions: writers the sweeper cannot see by PID, file systems without
locks, names at the length limits, paths no file system accepts (docs/robustness.md)."""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from afm import files
from afm.cli import main
from afm.errors import MAX_MESSAGE_CHARS, DataError
from afm.files import (
    check_writable_target,
    iter_regular_file,
    open_regular_file,
    read_regular_file,
    remove_stale_temporaries,
    write_atomic,
)

INVISIBLE_PID = 999_999_999  # beyond any pid_max: what a writer in another container or machine looks like


def error(problem):
    return DataError("target", problem)


def _no_such_process(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


WRITER = """
import os, sys
from afm import files
os.getpid = lambda: {pid}  # the name now carries a PID the sweeper cannot see
def slowly(fd):
    os.write(fd, b"first half, ")
    print("ready", flush=True)
    sys.stdin.readline()  # the parent sweeps the folder meanwhile
    os.write(fd, b"second half")
files.write_atomic({target!r}, slowly, lambda problem: RuntimeError(problem))
print("done", flush=True)
"""


def test_a_live_writer_invisible_by_pid_keeps_its_temporary(tmp_path):
    """Lost work: the sweep used to delete the .part of any writer whose PID it could not see."""
    assert _no_such_process(INVISIBLE_PID)
    target = tmp_path / "model.safetensors"
    writer = subprocess.Popen([sys.executable, "-c", WRITER.format(pid=INVISIBLE_PID, target=str(target))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready", writer.stderr.read()
        [temporary] = tmp_path.glob(".*.part")
        assert f".{INVISIBLE_PID}." in temporary.name
        write_atomic(tmp_path / "other.json", b"{}", error)  # a write beside it sweeps the folder
        assert remove_stale_temporaries(tmp_path, max_age=-1) == []  # locked: alive however old
        assert temporary.exists()
        out, err = writer.communicate("go\n", timeout=60)
    finally:
        writer.kill()
        writer.wait(timeout=60)
    assert writer.returncode == 0 and out.strip() == "done", err
    assert target.read_bytes() == b"first half, second half"
    assert not list(tmp_path.glob(".*.part"))


def test_a_locked_temporary_named_with_an_unseen_pid_survives_and_an_unlocked_one_goes(tmp_path):
    held = tmp_path / f".m.safetensors.{INVISIBLE_PID}.0123456789ab.part"
    held.write_bytes(b"in progress")
    abandoned = tmp_path / f".m.safetensors.{INVISIBLE_PID}.ba9876543210.part"  # unlocked: its writer is gone
    abandoned.write_bytes(b"killed")
    old = tmp_path / ".n.safetensors.1.abcdef012345.part"  # unlocked and two hours old
    old.write_bytes(b"old")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys\n"
                               f"fd = os.open({str(held)!r}, os.O_RDWR)\nfcntl.flock(fd, fcntl.LOCK_EX)\n"
                               "print('locked', flush=True)\nsys.stdin.readline()\n"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert sorted(remove_stale_temporaries(tmp_path)) == sorted([abandoned, old])
        assert held.exists()
    finally:
        holder.communicate("", timeout=60)
    assert remove_stale_temporaries(tmp_path) == [held]  # its holder is gone now


def test_a_lock_held_by_a_thread_of_this_process_counts_too(tmp_path):
    held = tmp_path / f".m.safetensors.{INVISIBLE_PID}.0123456789ab.part"
    held.write_bytes(b"in progress")
    fd = os.open(held, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert remove_stale_temporaries(tmp_path, max_age=-1) == [] and held.exists()
    finally:
        os.close(fd)


def test_without_working_locks_age_alone_decides(tmp_path, monkeypatch):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    fresh = tmp_path / f".m.safetensors.{INVISIBLE_PID}.0123456789ab.part"
    fresh.write_bytes(b"maybe in progress")
    old = tmp_path / f".m.safetensors.{INVISIBLE_PID}.ba9876543210.part"
    old.write_bytes(b"abandoned")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert remove_stale_temporaries(tmp_path) == [old] and fresh.exists()
    write_atomic(tmp_path / "m.safetensors", b"saved", error)  # writes still work unlocked
    assert (tmp_path / "m.safetensors").read_bytes() == b"saved"


def test_files_that_only_look_like_temporaries_are_left_alone(tmp_path):
    notes = tmp_path / ".notes.part"  # a user's file, not `.NAME.PID.TOKEN.part`
    notes.write_text("mine")
    os.utime(notes, (time.time() - 7200, time.time() - 7200))
    arrays = tmp_path / f".arrays.{INVISIBLE_PID}.0123456789ab.part"  # an `afm encode` directory being filled
    arrays.mkdir()
    write_atomic(tmp_path / "m.safetensors", b"saved", error)
    assert notes.read_text() == "mine" and arrays.is_dir()


def test_a_temporary_taken_by_a_sweeper_before_its_lock_is_replaced(tmp_path, monkeypatch):
    """The window between creating a temporary and locking it: a sweeper that locks it first
    removes it, and the writer takes another name instead of writing into a deleted file."""
    real_lock, calls = files._lock, []

    def sweeper_first(fd):
        if not calls:
            calls.append(fd)
            for candidate in tmp_path.glob(".*.part"):
                candidate.unlink()  # what a sweeper holding the lock does
        return real_lock(fd)

    monkeypatch.setattr(files, "_lock", sweeper_first)
    write_atomic(tmp_path / "m.safetensors", b"saved", error)
    assert (tmp_path / "m.safetensors").read_bytes() == b"saved" and calls


def test_a_target_name_at_the_length_limit_can_be_written(tmp_path):
    """Its temporary name (`.NAME.PID.TOKEN.part`) would pass the limit: NAME is cut short there."""
    target = tmp_path / ("n" * 250 + ".csv")
    write_atomic(target, b"row\n", error)
    assert target.read_bytes() == b"row\n" and not list(tmp_path.glob(".*.part"))


LONG_NAME = "a" * 5000 + ".csv"  # one component past any file system's limit (ENAMETOOLONG)
LONG_FOLDERS = "/".join(["b" * 200] * 25) + "/data.csv"  # a path past PATH_MAX


@pytest.mark.parametrize("relative", [LONG_NAME, LONG_FOLDERS])
@pytest.mark.parametrize("operation", ["read", "open", "iterate", "write", "check"])
def test_paths_too_long_are_one_line_errors_that_keep_the_problem(tmp_path, relative, operation):
    path = tmp_path / relative

    def fail(problem):
        return DataError(path, problem)

    run = {"read": lambda: read_regular_file(path, 10, fail), "open": lambda: open_regular_file(path, fail),
           "iterate": lambda: list(iter_regular_file(path, 10, fail)),
           "write": lambda: write_atomic(path, b"x", fail), "check": lambda: check_writable_target(path, fail)}
    with pytest.raises(DataError) as info:
        run[operation]()
    message = str(info.value)
    assert len(message) <= MAX_MESSAGE_CHARS and "\n" not in message
    assert message.endswith("(File name too long)"), message[-200:]
    assert message.startswith(str(tmp_path)) and Path(relative).name[-20:] in message


def test_a_path_with_a_nul_character_is_a_data_error(tmp_path):
    for run in (lambda p: read_regular_file(p, 10, error), lambda p: write_atomic(p, b"x", error),
                lambda p: open_regular_file(p, error)):
        with pytest.raises(DataError, match="NUL"):
            run(str(tmp_path / "a\0b"))


def test_a_too_long_out_path_is_a_one_line_error_from_the_cli(tmp_path, capsys):
    out = tmp_path / LONG_FOLDERS.replace("data.csv", "m.safetensors")
    code = main(["train", "--data", "sample", "--model", "fm", "--k", "4", "--epochs", "1", "--quiet",
                 "--out", str(out)])
    stderr = capsys.readouterr().err
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "File name too long" in stderr and "m.safetensors" in stderr and len(stderr) < MAX_MESSAGE_CHARS + 100
