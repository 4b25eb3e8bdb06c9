"""Hostile inputs, crashes and limits: each item of docs/robustness.md has its test here.

The contract: bad input gets one line naming the file, line and problem (exit 2 from the CLI),
nothing is allocated beyond the stated budgets, nothing half-written is left, no code runs."""

from __future__ import annotations

import fcntl
import io
import json
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from afm.checkpoint import Checkpoint, Outcome, TrainedOn, load_checkpoint, save_checkpoint
from afm.cli import main
from afm.data import load_csv, load_dataset, read_libfm
from afm.data.libfm import parse_libfm
from afm.errors import MAX_MESSAGE_CHARS, CheckpointError, ConfigError, DataError, shorten_path
from afm.files import remove_stale_temporaries
from afm.models import ModelConfig, build_model
from afm.paths import CHECKOUT
from afm.train import TrainConfig
from afm.training_plan import check_training_memory
from tests.conftest import cli, random_dataset


def one_line_error(code, stdout, stderr, *fragments):
    assert code == 2, (code, stderr)
    assert stdout == "" and "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def small_checkpoint(tmp_path, name="m.safetensors"):
    data = random_dataset()
    model = build_model(ModelConfig(model="afm", num_features=data.schema.num_features,
                                    num_fields=data.schema.num_fields, embedding_dim=4, attention_dim=4), seed=0)
    checkpoint = Checkpoint(model, model.config, {"task": "regression"},
                            [{"epoch": 0, "valid_rmse": 1.0}], data.schema, TrainedOn.of(data), Outcome(best_epoch=0))
    return save_checkpoint(tmp_path / name, checkpoint), checkpoint, data


# --------------------------------------------------------------------------- applying a model to new data


def test_int32_ids_beyond_46340_features_give_the_int64_predictions():
    """AFM's distinct-pair keys are id_i * num_features + id_j: in int32 they wrapped around."""
    config = ModelConfig(model="afm", num_features=60_000, num_fields=3, embedding_dim=4, attention_dim=4)
    model = build_model(config, seed=1).eval()
    ids = torch.tensor([[59_999, 50_000, 46_341], [1, 59_998, 47_000]], dtype=torch.int64)
    values = torch.ones(2, 3)
    expected = model.inference(ids, values)
    assert torch.equal(model.inference(ids.int(), values), expected)
    assert torch.equal(model.decompose(ids.int(), values).prediction, expected)
    plain = model(ids, values)  # the general path (one_hot not claimed), no pair keys
    torch.testing.assert_close(expected, plain)


# --------------------------------------------------------------------------- budgets before allocation


def test_one_huge_libfm_id_is_cheap_to_read_and_refused_for_training_with_advice(tmp_path, capsys, monkeypatch):
    path = tmp_path / "huge.libfm"
    path.write_text("".join(f"{i % 2} {i % 3}:1 {3 + i % 4}:1\n" for i in range(200)) + "1 0:1 49999999:1\n")
    code, stdout, _ = cli(capsys, "info", "--data", str(path))
    assert code == 0 and json.loads(stdout.splitlines()[-1])["features"] == 50_000_000
    out = str(tmp_path / "m.safetensors")
    one_line_error(*cli(capsys, "train", "--data", str(path), "--model", "fm", "--k", "64", "--out", out),
                   "50,000,000 x 64", "lower k", "remap")
    monkeypatch.setenv("AFM_MEMORY_BUDGET", "8G")  # the same answer on a machine with more memory
    one_line_error(*cli(capsys, "train", "--data", str(path), "--model", "fm", "--k", "16", "--out", out),
                   "GB", "lower k", "remap")
    assert not (tmp_path / "m.safetensors").exists()


def test_many_csv_columns_with_the_papers_afm_are_refused_before_allocating(tmp_path, capsys):
    """300 rows x 256 columns: P = 32,640 pairs; a batch of 128 at k = t = 256 (the paper's recipe; the
    default for a CSV is now sized to it, k = 8) would need tens of GB."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.integers(0, 3, (300, 256)), columns=[f"c{i}" for i in range(256)])
    frame["label"] = rng.normal(size=300)
    frame.to_csv(tmp_path / "wide.csv", index=False)
    line = one_line_error(*cli(capsys, "train", "--data", str(tmp_path / "wide.csv"), "--preset", "paper", "--out",
                               str(tmp_path / "m.safetensors")), "activations of one batch", "lower the batch size")
    assert "32,640 pairs" in line


def test_memory_plan_respects_a_configured_budget(monkeypatch):
    config = ModelConfig(model="afm", num_features=5000, num_fields=10, embedding_dim=64, attention_dim=64)
    assert check_training_memory(config, TrainConfig(batch_size=128), rows=10_000).total < 1024**3
    monkeypatch.setenv("AFM_MEMORY_BUDGET", "100M")
    with pytest.raises(ConfigError, match="lower the batch size to 9[0-9][0-9] or less"):
        check_training_memory(config, TrainConfig(batch_size=4096), rows=10_000)


def test_a_small_checkpoint_claiming_50m_features_is_refused_without_allocating(tmp_path):
    path, checkpoint, _ = small_checkpoint(tmp_path)
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + length])
    schema = json.loads(header["__metadata__"]["schema"])
    schema["feature_field"] = [[0, 50_000_000 - 1], [1, 1]]  # claims 50 M features
    header["__metadata__"]["schema"] = json.dumps(schema)
    blob = json.dumps(header).encode()
    (tmp_path / "claims.safetensors").write_bytes(len(blob).to_bytes(8, "little") + blob + raw[8 + length:])
    with pytest.raises(CheckpointError, match="schema describes 50,000,000 features but the model has"):
        load_checkpoint(tmp_path / "claims.safetensors")


def test_a_50_mb_line_is_quoted_not_copied(tmp_path, capsys):
    path = tmp_path / "long.libfm"
    path.write_bytes(b"1 0:1 3:1\n" + b"1 " + b"x" * 50_000_000)
    _, _, stderr = cli(capsys, "info", "--data", str(path))
    line = one_line_error(2, "", stderr, "line 2")
    assert len(line) < 600


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "directory"])
def test_only_regular_files_are_read(tmp_path, capsys, special):
    if special == "fifo":
        target = tmp_path / "pipe"
        os.mkfifo(target)
    elif special == "directory":
        target = tmp_path / "folder.safetensors"
        target.mkdir()
    else:
        target = special
    started = time.monotonic()
    one_line_error(*cli(capsys, "evaluate", "--checkpoint", str(target), "--data", "sample"), str(target))
    with pytest.raises(DataError):
        read_libfm(target)
    assert time.monotonic() - started < 10  # neither hangs nor reads forever


# --------------------------------------------------------------------------- files on disk


def test_a_device_is_never_replaced(tmp_path, capsys):
    before = os.stat("/dev/null")
    line = one_line_error(*cli(capsys, "train", "--data", "sample", "--model", "fm", "--k", "4", "--epochs", "1",
                               "--out", "/dev/null"), "not a regular file")
    assert "/dev/null" in line
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_a_planted_part_symlink_is_not_followed(server, tmp_path):
    from afm.download import download_dataset
    from tests.test_download import publish

    base_url, www = server
    manifest = publish(www)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    dest = tmp_path / "data" / "toy"
    dest.mkdir(parents=True)
    for name in ("toy.train.libfm.part", f".toy.train.libfm.{os.getpid()}.part"):
        (dest / name).symlink_to(victim)
    download_dataset("toy", tmp_path / "data", base_url=base_url, manifest=manifest, progress=io.StringIO())
    assert victim.read_text() == "precious"
    assert (dest / "toy.train.libfm").read_bytes() == (www / "toy" / "toy.train.libfm").read_bytes()
    assert not (dest / "toy.train.libfm").is_symlink()


def test_saving_over_a_file_keeps_its_mode(tmp_path):
    path, checkpoint, _ = small_checkpoint(tmp_path)
    os.chmod(path, 0o600)
    save_checkpoint(path, checkpoint)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_temporaries_of_killed_saves_are_removed(tmp_path):
    path, checkpoint, _ = small_checkpoint(tmp_path)
    # A save killed mid-way: its writer process is gone (pid of a finished child).
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".m.safetensors.{child.stdout.strip()}.0123456789ab.part"
    dead.write_bytes(b"x" * 1000)
    old = tmp_path / ".other.safetensors.1.abcdef012345.part"  # pid 1 runs, but it is two hours old
    old.write_bytes(b"y")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    alive = tmp_path / f".m.safetensors.{os.getpid()}.fedcba987654.part"  # a save in progress: it holds a lock
    alive.write_bytes(b"z")
    holder = os.open(alive, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    save_checkpoint(path, checkpoint)
    assert not dead.exists() and not old.exists() and alive.exists()
    assert remove_stale_temporaries(tmp_path, max_age=-1) == []  # locked: alive, however old
    os.close(holder)  # its writer is gone
    assert remove_stale_temporaries(tmp_path) == [alive]


def test_a_killed_save_leaves_the_old_checkpoint_whole(tmp_path):
    path, checkpoint, _ = small_checkpoint(tmp_path)
    before = path.read_bytes()
    code = ("import os, sys\nfrom afm.files import write_atomic\n"
            "def kill(fd):\n    os.write(fd, b'partial')\n    os.kill(os.getpid(), 9)\n"
            f"write_atomic({str(path)!r}, kill, lambda p: RuntimeError(p))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.returncode == -9
    assert path.read_bytes() == before
    load_checkpoint(path)  # still whole; the next save clears the orphaned temporary
    save_checkpoint(path, checkpoint)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


@pytest.mark.parametrize("case", ["parent is a file", "read-only", "full disk"])
def test_unwritable_targets_are_one_line_errors(tmp_path, capsys, monkeypatch, case):
    if case == "parent is a file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "m.safetensors"
    elif case == "read-only":
        if os.geteuid() == 0:
            monkeypatch.setattr(os, "open", _refusing_open(os.open, tmp_path / "ro", 30))  # root ignores modes
        (tmp_path / "ro").mkdir()
        os.chmod(tmp_path / "ro", 0o500)
        out = tmp_path / "ro" / "m.safetensors"
    else:
        monkeypatch.setattr(os, "fsync", _raise(OSError(28, "No space left on device")))
        out = tmp_path / "m.safetensors"
    line = one_line_error(*cli(capsys, "train", "--data", "sample", "--model", "fm", "--k", "4", "--epochs", "1",
                               "--quiet", "--out", str(out)), str(out))
    assert not out.exists() and ".part" not in " ".join(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert "Traceback" not in line


def _raise(exc):
    def fail(*args, **kwargs):
        raise exc
    return fail


def _refusing_open(real_open, folder, error_number):
    def open_(path, flags, *args, **kwargs):
        if str(path).startswith(str(folder)) and flags & os.O_CREAT:
            raise OSError(error_number, os.strerror(error_number), str(path))
        return real_open(path, flags, *args, **kwargs)
    return open_


# --------------------------------------------------------------------------- hostile checkpoints


def hostile(tmp_path, name, change):
    path, _, _ = small_checkpoint(tmp_path)
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + length])
    change(header["__metadata__"])
    blob = json.dumps(header).encode()
    target = tmp_path / f"{name}.safetensors"
    target.write_bytes(len(blob).to_bytes(8, "little") + blob + raw[8 + length:])
    return target


@pytest.mark.parametrize("name, change, fragment", [
    ("nested", lambda m: m.update(history="[" * 100_000 + "]" * 100_000), "nested too deeply"),
    ("bool features", lambda m: m.update(model_config=json.dumps({**json.loads(m["model_config"]),
                                                                  "num_features": True})), "num_features"),
    ("label range", lambda m: m.update(trained_on=json.dumps({"label_range": ["a", 1]})), "label_range"),
    ("label range order", lambda m: m.update(trained_on=json.dumps({"label_range": [2, 1]})), "label_range"),
    ("task", lambda m: m.update(train_config=json.dumps({"task": "rank"})), "task"),
    ("epoch", lambda m: m.update(history=json.dumps([{"epoch": "x"}])), "epoch"),
])
def test_hostile_metadata_is_a_one_line_error(tmp_path, capsys, name, change, fragment):
    path = hostile(tmp_path, name, change)
    one_line_error(*cli(capsys, "history", "--checkpoint", str(path)), fragment)


def test_empty_history_is_a_one_line_error_for_history(tmp_path, capsys):
    path = hostile(tmp_path, "empty", lambda m: m.update(history="[]"))
    assert load_checkpoint(path).history == []  # loads (an imported model has no history) ...
    one_line_error(*cli(capsys, "history", "--checkpoint", str(path)), "no training history")


def test_deeply_nested_header_json(tmp_path):
    blob = b"[" * 200_000 + b"]" * 200_000
    path = tmp_path / "deep.safetensors"
    path.write_bytes(len(blob).to_bytes(8, "little") + blob)
    with pytest.raises(CheckpointError, match="nested too deeply|not an object"):
        load_checkpoint(path)


# --------------------------------------------------------------------------- messages


def test_gzip_binary_and_cr_only_files(tmp_path):
    import gzip

    packed = tmp_path / "d.libfm"
    packed.write_bytes(gzip.compress(b"1 0:1 3:1\n" * 10))
    with pytest.raises(DataError, match="gzip-compressed; decompress it first"):
        read_libfm(packed)
    cr = tmp_path / "cr.libfm"
    cr.write_bytes(b"1 0:1 3:1\r1 0:1 3:1\r1 0:1 x:1\r")
    with pytest.raises(DataError) as info:
        read_libfm(cr)
    assert info.value.line == 3
    cr.write_bytes(b"1 0:1 3:1\r-1 1:1 4:1\r")
    assert read_libfm(cr).labels.tolist() == [1, -1]


def test_malformed_base_url_is_a_one_line_error(tmp_path, capsys):
    one_line_error(*cli(capsys, "download", "frappe", "--dest", str(tmp_path), "--base-url", "notaurl"),
                   "--base-url must be an http(s) address")


LONG_PATH = "/data/" + "/".join(["folder" * 30] * 30) + "/model.safetensors"  # 5,000+ characters


@pytest.mark.parametrize("make", [
    lambda problem: DataError(LONG_PATH, problem, line=7),
    lambda problem: CheckpointError(LONG_PATH, problem),
    lambda problem: ConfigError(f"--out {LONG_PATH}: {problem}"),
    lambda problem: ConfigError(f"--out {LONG_PATH.replace('folder', 'my folder ')}: {problem}")])
def test_a_long_path_is_shortened_in_the_middle_and_the_problem_kept_whole(make):
    """The 1,000-character cap used to keep the path and cut off what was wrong."""
    problem = "cannot write here (File name too long); give a shorter path"
    message = str(make(problem))
    assert len(message) <= MAX_MESSAGE_CHARS and "\n" not in message
    assert message.endswith(problem), message[-120:]
    assert "/data/" in message[:40] and "…" in message and "/model.safetensors" in message[-200:]


def test_shorten_path_keeps_the_start_and_the_file_name():
    assert shorten_path("/short/path.csv") == "/short/path.csv"
    short = shorten_path("/home/me/" + "d" * 500 + "/rows.csv", 60)
    assert len(short) == 60 and short.startswith("/home/me/d") and short.endswith("…/rows.csv")
    name = shorten_path("/x/" + "n" * 500 + ".csv", 60)  # a file name too long itself: start and end
    assert len(name) == 60 and name.startswith("/x/n") and name.endswith("n.csv")


def test_a_long_problem_after_a_short_source_is_cut_in_the_middle_not_at_its_end():
    message = str(ConfigError("short: " + " ".join(f"word{i}" for i in range(400)) + " THE END"))
    assert len(message) <= MAX_MESSAGE_CHARS and message.startswith("short: word0") and message.endswith("THE END")


@pytest.mark.parametrize("task, label, fragment", [("regression", "3", "every training label is 3.0: there is "
                                                    "nothing to learn"),
                                                   ("binary", "1", "only one class (1) in the training labels")])
def test_labels_all_one_value_are_a_one_line_error_and_nothing_is_saved(tmp_path, capsys, task, label, fragment):
    """Every label equal: the untrained model was saved and the summary said valid_rmse 0.0."""
    data = tmp_path / "same.csv"
    data.write_text("user,item,label\n" + "".join(f"u{i % 5},i{i % 7},{label}\n" for i in range(80)))
    out = tmp_path / "m.safetensors"
    one_line_error(*cli(capsys, "train", "--data", str(data), "--task", task, "--model", "fm", "--k", "4",
                        "--epochs", "2", "--quiet", "--out", str(out)), fragment)
    assert not out.exists()


def test_explaining_no_rows_is_a_data_error_not_an_assert():
    from afm.analysis.attention import decompose_split, permutation_pair_importance, summarize_pairs

    data = random_dataset()
    model = build_model(ModelConfig(model="afm", num_features=data.schema.num_features,
                                    num_fields=data.schema.num_fields, embedding_dim=4, attention_dim=4), seed=0)
    none = np.array([], dtype=np.int64)
    with pytest.raises(DataError, match="there are none to decompose"):
        decompose_split(model, data.test, rows=none)
    with pytest.raises(DataError, match="there are none to decompose"):
        decompose_split(model, data.test.take(none))
    terms = decompose_split(model, data.test)
    with pytest.raises(DataError, match="there are none to summarise"):
        summarize_pairs(terms, data.schema, rows=np.zeros(len(data.test), dtype=bool))
    with pytest.raises(DataError, match="there are none to shuffle"):
        permutation_pair_importance(lambda ids, values: np.zeros(len(ids)), data.test.take(none), 4)


# --------------------------------------------------------------------------- divergence and Ctrl-C


def test_divergence_saves_the_best_epoch_and_says_so(tmp_path, capsys, monkeypatch):
    """Epoch 1 is fine; epoch 2's loss is made infinite: the file holds epoch 1, exit 3."""
    import afm.train as train

    original = train.batch_objective
    calls = {"n": 0}
    batches_per_epoch = int(np.ceil(10_500 / 512))

    def blows_up_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        loss = original(*args, **kwargs)
        return loss * float("inf") if calls["n"] > batches_per_epoch else loss

    monkeypatch.setattr(train, "batch_objective", blows_up_in_epoch_two)
    out = tmp_path / "m.safetensors"
    code, stdout, stderr = cli(capsys, "train", "--data", "sample", "--model", "fm", "--k", "4", "--epochs", "5",
                               "--batch-size", "512", "--lr", "0.2", "--quiet", "--out", str(out))
    assert code == 3, stderr
    assert "best epoch so far (1) was saved" in stderr
    summary = json.loads(stdout.splitlines()[-1])
    assert summary["stop_reason"] == "diverged" and summary["best_epoch"] == 1
    assert load_checkpoint(out).best_epoch == 1


@pytest.mark.parametrize("signal_number, name", [(2, "Ctrl-C"), (15, "SIGTERM")])
def test_ctrl_c_or_sigterm_saves_the_best_epoch_with_exit_3_and_before_any_epoch_writes_nothing(tmp_path,
                                                                                              signal_number, name):
    out = tmp_path / "m.safetensors"
    command = [sys.executable, "-m", "afm", "train", "--data", "sample", "--model", "afm", "--k", "32", "--t", "32",
               "--epochs", "200", "--batch-size", "64", "--lr", "0.1", "--compile", "off", "--out", str(out)]
    process = subprocess.Popen(command, cwd=CHECKOUT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    seen = ""
    while "epoch 1 " not in seen and time.monotonic() < deadline:  # wait for the first finished epoch
        seen += process.stderr.readline()
    process.send_signal(signal_number)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 3, seen + stderr
    assert f"stopped ({name}); the best epoch so far" in stderr and out.exists()
    assert json.loads(stdout.splitlines()[-1])["stop_reason"] == "stopped"

    early = tmp_path / "early.safetensors"
    process = subprocess.Popen([*command[:-1], str(early)], cwd=CHECKOUT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    while "afm: afm on" not in process.stderr.readline():
        pass
    process.send_signal(signal_number)
    process.send_signal(signal_number)  # the second one abandons the run at once
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "nothing was written" in stderr and not early.exists()


# --------------------------------------------------------------------------- property tests of the readers

_ROWS = st.lists(st.tuples(st.floats(-1e6, 1e6, allow_nan=False, width=32),
                           st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=3, max_size=3)),
                 min_size=1, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_ROWS, ends=st.sampled_from(["\n", "\r\n", "\r"]), spaces=st.sampled_from([" ", "\t", "  "]))
def test_libfm_round_trip(rows, ends, spaces):
    """Whatever numbers, separators and line ends: the reader gives back what was written."""
    lines = [f"{label!r}{spaces}" + spaces.join(f"{3 * r + f}:{value!r}" for f, value in enumerate(values))
             for r, (label, values) in enumerate(rows)]
    split = parse_libfm((ends.join(lines) + ends).encode(), "mem")
    assert split.split.labels.tolist() == [np.float32(label) for label, _ in rows]
    assert split.split.feature_values.tolist() == [[np.float32(v) for v in values] for _, values in rows]
    assert split.split.feature_ids[:, 0].tolist() == [3 * r for r in range(len(rows))]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_libfm_reader_never_fails_other_than_with_a_data_error(raw):
    try:
        parse_libfm(raw, "fuzz")
    except DataError as exc:
        assert len(str(exc)) < 1100


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cities=st.lists(st.sampled_from(["oslo", "rome", "lima", "pune", "", "é"]), min_size=12, max_size=60),
       seed=st.integers(0, 2**16))
def test_csv_encoded_with_a_checkpoint_is_row_order_free(tmp_path_factory, cities, seed):
    """Encoding rows with a saved schema does not depend on their order or on which rows come along."""
    rng = np.random.default_rng(seed)
    n = len(cities)
    frame = pd.DataFrame({"city": cities, "plan": rng.integers(0, 3, n), "price": rng.normal(10, 2, n).round(3),
                          "label": np.arange(n, dtype=float)})  # labels name the rows
    folder = tmp_path_factory.mktemp("csv")
    frame.to_csv(folder / "a.csv", index=False)
    schema = load_csv(folder / "a.csv").schema
    frame.iloc[rng.permutation(n)[: max(1, n // 2)]].to_csv(folder / "b.csv", index=False)
    whole = load_dataset(folder / "a.csv", schema=schema).rows("all")
    part = load_dataset(folder / "b.csv", schema=schema).rows("all")
    by_row = {int(label): (ids.tolist(), values.tolist())
              for label, ids, values in zip(whole.labels, whole.feature_ids, whole.feature_values)}
    assert len(part) == max(1, n // 2)
    for label, ids, values in zip(part.labels, part.feature_ids, part.feature_values):
        assert by_row[int(label)] == (ids.tolist(), values.tolist())


# --------------------------------------------------------------------------- uploads


def test_a_sessions_upload_folder_goes_with_the_session(tmp_path):
    import gc

    from afm.app.uploads import UploadFolder

    folder = UploadFolder(tmp_path)
    saved = folder.save("../../etc/passwd", b"1 0:1 1:1\n")
    assert saved.parent == folder.path and saved.name == "passwd"  # no way out of the folder
    path = folder.path
    del folder
    gc.collect()
    assert not path.exists()


def test_folders_of_dead_servers_are_removed_at_start_up(tmp_path):
    from afm.app.uploads import UploadFolder, remove_orphans

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f"{child.stdout.strip()}-dead-abc"
    orphan.mkdir()
    (orphan / "data.csv").write_text("a,b\n")
    mine = UploadFolder(tmp_path)
    assert remove_orphans(tmp_path) == [orphan]
    assert not orphan.exists() and mine.path.exists()


@pytest.mark.parametrize("command", [["train", "--model", "fm", "--out", "OUT"], ["info"], ["encode", "--dest", "OUT"]])
def test_a_path_too_long_for_the_system_is_a_one_line_error(capsys, tmp_path, command):
    """ENAMETOOLONG from the first look at a 5,000-character --data (was an internal error, exit 1)."""

    argv = [str(tmp_path / "o") if a == "OUT" else a for a in command]
    code = main([argv[0], "--data", str(tmp_path / ("a" * 5000)), *argv[1:]])
    err = capsys.readouterr().err
    assert code == 2 and "File name too long" in err and len(err.strip().splitlines()) == 1 and len(err) < 1100
