"""The command line's contract, on inputs nobody listed: hypothesis draws a command, an argument
vector and files (valid ones, and ones mutated byte by byte: CSV, libfm, features.tsv,
checkpoints), runs `afm` in this process, and checks for every command:

- the exit status is 0, 2 or 3 (1 is a bug of ours; anything else is a crash);
- with 2, stderr is one short line and no traceback;
- no input file changed (hashes before and after);
- nothing is left behind but the outputs asked for (no temporary `.part` files);
- bounded time and memory: an example running past EXAMPLE_SECONDS is stopped and fails with its
  argument vector (a hang, not slowness: the inputs take well under a second), and none may raise
  the process's peak resident memory by more than EXAMPLE_PEAK_BYTES.

Small files, one epoch, k = 2, a fixed number of examples.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import resource
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from afm.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_AFM = ROOT / "sample_data" / "sample" / "sample_afm.safetensors"
pytestmark = pytest.mark.slow

EXAMPLE_SECONDS = 120
EXAMPLE_PEAK_BYTES = 1024**3


class ExampleRanTooLong(BaseException):  # not an Exception: the CLI's own handlers must not catch it
    pass


@contextlib.contextmanager
def time_limit(seconds: int):
    def stop(signum, frame):
        raise ExampleRanTooLong(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


HOSTILE = ["0", "-1", "1e39", "nan", "inf", "1.5", "", "abc", "4294967296", "--", "0x10", "18446744073709551616"]


def number(valid: list[str], most_work: int | None = None):
    """Mostly a valid value (so the command gets to its work), sometimes a hostile one. With
    `most_work`, integers that ask for more work than that (e.g. 10,000 epochs: valid, but
    minutes of training, not a contract to check) are left out; those beyond 2**31 are refused."""
    integers = st.integers(-3, 10**20) if most_work is None else st.one_of(st.integers(-3, most_work),
                                                                            st.integers(2**31, 10**20))
    return st.one_of(*[st.just(v) for v in valid] * 3, st.sampled_from(HOSTILE), integers.map(str))


def csv_bytes(draw) -> bytes:
    """A labelled CSV of random shape, then perhaps damaged."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    fields = draw(st.integers(1, 5))
    rows = draw(st.integers(0, 60))
    header = [f"c{n}" for n in range(fields)] + [draw(st.sampled_from(["label", "y", "score", "c0"]))]
    classes = draw(st.sampled_from([None, None, ("no", "yes"), ("cat", "dog"), ("0", "yes"), ("a", "b", "c")]))
    lines = [",".join(header)]
    for _ in range(rows):
        cells = [draw(st.sampled_from(["007", "7", "a", "b", "", "1.5", "x y", '"q,uoted"']))
                 if rng.random() < 0.5 else str(int(rng.integers(0, 4))) for _ in range(fields)]
        label = str(float(rng.normal())) if classes is None else classes[int(rng.integers(0, len(classes)))]
        lines.append(",".join(cells + [label]))
    return mutate(draw, ("\n".join(lines) + "\n").encode())


def libfm_bytes(draw) -> bytes:
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    rows = draw(st.integers(0, 60))
    fields = draw(st.integers(1, 4))
    lines = [" ".join([f"{rng.normal():.3f}"] + [f"{f * 5 + int(rng.integers(0, 5))}:1" for f in range(fields)])
             for _ in range(rows)]
    return mutate(draw, ("\n".join(lines) + "\n").encode())


def mutate(draw, data: bytes) -> bytes:
    """Leave it, or flip, insert, delete or truncate a few bytes."""
    how = draw(st.sampled_from(["keep", "keep", "keep", "flip", "insert", "truncate", "delete"]))
    if how == "keep" or not data:
        return data
    position = draw(st.integers(0, len(data) - 1))
    if how == "flip":
        return data[:position] + bytes([data[position] ^ draw(st.integers(1, 255))]) + data[position + 1:]
    if how == "insert":
        return data[:position] + draw(st.binary(min_size=1, max_size=8)) + data[position:]
    if how == "delete":
        return data[:position] + data[position + draw(st.integers(1, 16)):]
    return data[:position]


def checkpoint_bytes(draw) -> bytes:
    return mutate(draw, SAMPLE_AFM.read_bytes())


def copy_of_sample(draw, folder: Path, kind: str) -> str:
    """The bundled sample as a libfm folder (with its features.tsv) or as an arrays directory
    (`afm encode`), one of its files mutated."""
    target = folder / kind
    if kind == "libfm-folder":
        shutil.copytree(ROOT / "sample_data" / "sample", target, ignore=shutil.ignore_patterns("*.safetensors"))
    else:
        shutil.copytree(ARRAYS(), target)
    files = sorted(p for p in target.iterdir() if p.is_file())
    victim = files[draw(st.integers(0, len(files) - 1))]
    victim.write_bytes(mutate(draw, victim.read_bytes()))
    return str(target)


_ARRAYS: list[Path] = []


def ARRAYS() -> Path:  # noqa: N802 - a module constant made once, on first use
    """The sample encoded once per session as an arrays directory."""
    if not _ARRAYS:
        import tempfile

        dest = Path(tempfile.mkdtemp(prefix="afm-contract-")) / "arrays"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert main(["encode", "--data", "sample", "--dest", str(dest)]) == 0
        _ARRAYS.append(dest)
    return _ARRAYS[0]


@st.composite
def invocations(draw, folder: Path):
    """(argv, the input files it reads) for one command with generated files and arguments."""
    data_kind = draw(st.sampled_from(["csv", "libfm", "sample", "libfm-folder", "arrays", "sample-rows"]))
    data = "sample"
    if data_kind in ("libfm-folder", "arrays"):
        data = copy_of_sample(draw, folder, data_kind)
    elif data_kind == "sample-rows":  # rows the bundled model can score, perhaps damaged
        data = str(folder / "rows.libfm")
        lines = (ROOT / "sample_data" / "sample" / "sample.test.libfm").read_bytes().splitlines(keepends=True)
        Path(data).write_bytes(mutate(draw, b"".join(lines[:draw(st.integers(1, 200))])))
    elif data_kind != "sample":
        data = str(folder / f"rows.{data_kind}")
        Path(data).write_bytes(csv_bytes(draw) if data_kind == "csv" else libfm_bytes(draw))
    checkpoint = folder / "model.safetensors"
    checkpoint.write_bytes(checkpoint_bytes(draw) if draw(st.booleans()) else SAMPLE_AFM.read_bytes())
    out = folder / draw(st.sampled_from(["out.csv", "out.safetensors", "out.html", "rows.csv", "model.safetensors"]))
    command = draw(st.sampled_from(["train", "evaluate", "predict", "info", "history", "pairs", "encode"]))
    split = draw(st.sampled_from(["test", "valid", "train", "all"]))
    argv = {
        "train": ["train", "--data", data, "--model", draw(st.sampled_from(["fm", "fwfm", "afm"])), "--k", "2",
                  "--task", draw(st.sampled_from(["regression", "binary"])),
                  "--t", "2", "--epochs", draw(number(["1", "1", "0"], most_work=3)), "--out", str(out),
                  "--seed", draw(number(["0", "1", "7"])), "--device", "cpu"],
        "evaluate": ["evaluate", "--checkpoint", str(checkpoint), "--data", data, "--split", split, "--device", "cpu"],
        "predict": ["predict", "--checkpoint", str(checkpoint), "--data",
                    data if not data.endswith(("sample", "folder", "arrays")) else str(folder / "missing.csv"),
                    "--out", str(out), "--explain", draw(st.sampled_from(["0", "2", "-1"])), "--quiet",
                    "--device", "cpu"],
        "info": ["info", "--data", data],
        "history": ["history", "--checkpoint", str(checkpoint), "--every", draw(number(["1", "2", "5"]))],
        "pairs": ["pairs", "--checkpoint", str(checkpoint), "--data", data, "--rows", draw(number(["16", "32", "3"])),
                  "--out", str(out), "--device", "cpu"],
        "encode": ["encode", "--data", data, "--dest", str(folder / "arrays")],
    }[command]
    reads_checkpoint = command not in ("train", "info", "encode")  # train --out may replace an old model
    inputs = [p for p in (Path(data), checkpoint if reads_checkpoint else None) if p and p.is_file()] + (
        [p for p in Path(data).iterdir() if p.is_file()] if Path(data).is_dir() else [])
    return argv, inputs


def digest(paths) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


# Seeded in CI, so a red run names its example and reruns alike; random elsewhere, to find new ones.
@settings(max_examples=120, deadline=None, derandomize=bool(os.environ.get("CI")),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_every_command_keeps_the_contract_on_generated_arguments_and_files(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("cli")
    argv, inputs = data.draw(invocations(folder))
    before = digest(inputs)
    stderr, stdout = io.StringIO(), io.StringIO()
    peak_before = peak_rss_bytes()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        try:
            with time_limit(EXAMPLE_SECONDS):
                code = main(argv)
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code
        except ExampleRanTooLong as slow:
            pytest.fail(f"{argv}: {slow}")
    grown = peak_rss_bytes() - peak_before
    assert grown <= EXAMPLE_PEAK_BYTES, (argv, f"peak memory grew by {grown / 1024**2:.0f} MiB")
    err = stderr.getvalue()
    if os.environ.get("CONTRACT_LOG"):  # to see what the examples reached: CONTRACT_LOG=file pytest ...
        with open(os.environ["CONTRACT_LOG"], "a") as log:
            log.write(f"{argv[0]} {code} {err.strip()[-200:]!r}\n")
    assert code in (0, 2, 3), (argv, code, err[-2000:])
    assert "Traceback" not in err, (argv, err[-2000:])
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip() and not line.startswith("note:")]
        assert len(lines) == 1 and len(lines[0]) <= 1200, (argv, err[-2000:])
    changed = {p for p, h in digest(inputs).items() if before.get(p) != h}
    # An input may be replaced only by a refused command... never: every change to an input is a bug.
    assert not changed, (argv, code, err[-500:])
    leftovers = [p for p in folder.rglob("*") if ".part" in p.name]
    assert not leftovers, (argv, leftovers)
    shutil.rmtree(folder, ignore_errors=True)


def test_the_examples_time_limit_stops_a_hang():
    import time

    with pytest.raises(ExampleRanTooLong), time_limit(1):
        time.sleep(30)
