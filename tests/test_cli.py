from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from afm.checkpoint import load_checkpoint
from afm.cli import main
from afm.paths import CHECKOUT as PROJECT_ROOT


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_train_prints_the_json_contract_and_saves_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "fm.safetensors"
    code, stdout, stderr = run(capsys, "train", "--data", "sample", "--preset", "paper", "--model", "fm", "--k", "8",
                               "--epochs", "2", "--lr", "0.2", "--batch-size", "512", "--out", str(out))
    assert code == 0, stderr
    summary = last_json(stdout)
    for key in ("model", "epochs_run", "best_epoch", "valid_rmse", "test_rmse", "seconds", "samples_per_second",
                "device"):
        assert key in summary, key
    assert summary["model"] == "fm" and summary["epochs_run"] == 2 and summary["device"] == "cpu"
    assert "epoch 1" in stderr and "epoch 2" in stderr  # progress goes to stderr
    checkpoint = load_checkpoint(out)
    assert checkpoint.outcome.best_epoch == summary["best_epoch"]
    assert [r["epoch"] for r in checkpoint.history] == [0, 1, 2]

    # AFM initialised from that FM (the authors' pretraining recipe), then evaluated.
    afm = tmp_path / "afm.safetensors"
    code, stdout, stderr = run(capsys, "train", "--data", "sample", "--preset", "paper", "--model", "afm",
                               "--init-from", str(out), "--k", "8", "--t", "8", "--epochs", "1", "--batch-size", "512",
                               "--out", str(afm))
    assert code == 0, stderr
    assert last_json(stdout)["distinct_pairs"] is False  # k = t = 8, batch 512: "auto" keeps the faster plain path
    init_rmse = load_checkpoint(afm).history[0]["valid_rmse"]
    assert init_rmse < 2.0  # it starts from FM's embeddings, not from scratch

    code, stdout, stderr = run(capsys, "evaluate", "--checkpoint", str(afm), "--data", "sample", "--split", "valid")
    assert code == 0, stderr
    result = last_json(stdout)
    assert result["rows"] == 3000 and result["split"] == "valid"
    checkpoint = load_checkpoint(afm)
    best = next(r for r in checkpoint.history if r["epoch"] == checkpoint.best_epoch)
    assert result["rmse"] == pytest.approx(best["valid_rmse"], rel=1e-5)  # the best epoch's weights were saved


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "sample", "--out", "x.safetensors", "--k", "0"],
     "embedding_dim (--k) must be a whole number in 1.."),
    (["train", "--data", "sample", "--out", "x.safetensors", "--dropout", "0.5,2"], "numbers in [0, 1)"),
    (["train", "--data", "sample", "--out", "x.safetensors", "--model", "nfm"], "invalid choice"),
    (["train", "--data", "nowhere", "--out", "x.safetensors"], "not a dataset name"),
    (["train", "--data", "sample", "--out", "x.safetensors", "--device", "cuda:0"], None),
    (["evaluate", "--checkpoint", "missing.safetensors", "--data", "sample"], "cannot read"),
    (["train", "--data", "sample"], "required"),
    (["train", "--data", "sample", "--model", "fm", "--dropout", "0.1,0.2", "--out", "x.safetensors"],
     "dropout_attention (--dropout-attention) applies to AFM only"),
    # Seeds outside numpy's range are refused, not wrapped (2**32 trained as 0) or crashed on.
    (["train", "--data", "sample", "--out", "x.safetensors", "--seed", "4294967296"],
     "seed (--seed) must be a whole number in 0..4294967295"),
    (["train", "--data", "sample", "--out", "x.safetensors", "--seed", "18446744073709551616"], "in 0..4294967295"),
    (["info", "--data", "sample", "--split-seed", "-1"], "a seed in"),
    (["synthesize", "ml-tag", "--dest", "x", "--seed", "-1"], "a seed in"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    try:
        code, stdout, stderr = run(capsys, *argv)
    except SystemExit as exc:  # argparse errors exit directly
        code, captured = exc.code, capsys.readouterr()
        stdout, stderr = captured.out, captured.err
    if message is None:  # cuda: fine on a GPU machine, a clean error elsewhere
        import torch
        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
        message = "no CUDA GPU"
    assert code == 2
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], stderr
    assert "Traceback" not in stderr


def test_bad_data_file_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.libfm"
    bad.write_text("1 0:1 3:1\n" * 5 + "1 0:1 3:one\n")
    code, _, stderr = run(capsys, "info", "--data", str(bad))
    assert code == 2
    assert f"{bad}, line 6" in stderr and "id:value" in stderr


def test_wrong_checkpoint_for_the_data(tmp_path, capsys):
    other = tmp_path / "other.libfm"
    other.write_text("".join(f"{1 + i % 2} {i % 4}:1 {4 + i % 3}:1 {7 + i % 2}:1\n" for i in range(40)))
    out = tmp_path / "m.safetensors"
    assert run(capsys, "train", "--data", str(other), "--model", "fm", "--k", "4", "--epochs", "1",
               "--out", str(out))[0] == 0
    code, _, stderr = run(capsys, "evaluate", "--checkpoint", str(out), "--data", "sample")
    assert code == 2 and "expects 3 fields" in stderr


@pytest.mark.slow
def test_module_entry_point_end_to_end(tmp_path):
    """The real `python -m afm` process: exit codes and streams as outside scripts see them."""
    command = [sys.executable, "-m", "afm", "info", "--data", "sample"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert done.returncode == 0 and last_json(done.stdout)["fields"] == 10
    done = subprocess.run([sys.executable, "-m", "afm", "train", "--data", "sample", "--out", str(tmp_path / "x"),
                           "--batch-size", "-1"], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and done.stdout == ""


def test_history_table(capsys):
    path = str(PROJECT_ROOT / "sample_data" / "sample-fixed" / "sample-fixed_afm.safetensors")
    code, stdout, _ = run(capsys, "history", "--checkpoint", path, "--format", "markdown", "--every", "10")
    assert code == 0
    lines = stdout.strip().splitlines()
    assert lines[0].startswith("| epoch | train_rmse | valid_rmse")
    # Every 10th epoch, plus the best (25) and the last (30) always.
    assert [line.split("|")[1].strip() for line in lines[2:-1]] == ["0", "10", "20", "25", "30"]
    assert last_json(stdout) == {"checkpoint": path, "epochs": 30, "best_epoch": 25}


def test_csv_with_numeric_columns_end_to_end(tmp_path, capsys):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame({"city": rng.choice(["oslo", "rome", "lima", "pune"], n), "plan": rng.integers(0, 3, n),
                          "price": rng.normal(10, 2, n)})
    frame["label"] = (frame["city"] == "rome") * 1.0 + 0.3 * (frame["price"] - 10) * (frame["plan"] == 1)
    path = tmp_path / "shop.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "m.safetensors"
    code, stdout, stderr = run(capsys, "train", "--data", str(path), "--model", "afm", "--k", "4", "--t", "4",
                               "--epochs", "8", "--lr", "0.2", "--l2-attention", "0", "--dropout", "0,0",
                               "--out", str(out))
    assert code == 0, stderr
    summary = last_json(stdout)
    assert summary["valid_rmse"] < 0.9 * float(np.std(frame["label"]))  # it learned something
    assert summary["distinct_pairs"] is False  # a real-valued column: the plain path
    code, stdout, _ = run(capsys, "evaluate", "--checkpoint", str(out), "--data", str(path), "--split", "test")
    assert code == 0 and last_json(stdout)["rows"] == 60
    assert load_checkpoint(out).schema.csv_encoding["columns"][2]["kind"] == "numeric"


def shop_csv(path, n=600, seed=0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"city": rng.choice(["oslo", "rome", "lima", "pune"], n), "plan": rng.integers(0, 3, n),
                          "price": rng.normal(10, 2, n)})
    frame["label"] = (frame["city"] == "rome") * 1.0 + 0.3 * (frame["price"] - 10) * (frame["plan"] == 1)
    frame.to_csv(path, index=False)
    return frame


def test_a_csv_model_scores_reordered_rows_exactly_as_trained(tmp_path, capsys):
    """The same rows in reverse order get the same RMSE: the checkpoint's own vocabulary and
    scaling encode them (a refitted vocabulary once gave 1.465 instead of 0.111)."""
    frame = shop_csv(tmp_path / "shop.csv")
    out = tmp_path / "m.safetensors"
    assert run(capsys, "train", "--data", str(tmp_path / "shop.csv"), "--model", "afm", "--k", "4", "--t", "4",
               "--epochs", "3", "--lr", "0.2", "--l2-attention", "0", "--dropout", "0,0", "--out", str(out))[0] == 0
    frame.iloc[::-1].to_csv(tmp_path / "reversed.csv", index=False)
    scores = []
    for name in ("shop.csv", "reversed.csv"):
        code, stdout, stderr = run(capsys, "evaluate", "--checkpoint", str(out), "--data", str(tmp_path / name),
                                   "--split", "all")
        assert code == 0, stderr
        scores.append(last_json(stdout))
    assert scores[0]["rows"] == scores[1]["rows"] == 600
    assert scores[0]["rmse"] == pytest.approx(scores[1]["rmse"], rel=1e-6)


def test_evaluate_a_binary_model_on_real_valued_labels_is_a_clear_error(tmp_path, capsys):
    data = tmp_path / "clicks.libfm"
    data.write_text("".join(f"{1 if i % 3 else -1} {i % 4}:1 {4 + i % 3}:1\n" for i in range(60)))
    out = tmp_path / "m.safetensors"
    assert run(capsys, "train", "--data", str(data), "--model", "fm", "--k", "4", "--epochs", "1", "--task",
               "binary", "--out", str(out))[0] == 0
    ratings = tmp_path / "ratings.libfm"
    ratings.write_text("".join(f"{i % 5 + 0.5} {i % 4}:1 {4 + i % 3}:1\n" for i in range(60)))
    code, stdout, stderr = run(capsys, "evaluate", "--checkpoint", str(out), "--data", str(ratings))
    assert code == 2 and stdout == "" and "binary-task model" in stderr and len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["evaluate", "report"])
def test_a_one_row_file_has_no_test_rows_and_says_so(capsys, tmp_path, command):
    """A single libfm file is split 70/20/10: with one row, its test split is empty. Scoring it is
    an error that says so (it used to score 0 rows, or fail inside the report)."""
    from afm.samples.checkpoints import sample_checkpoint_path

    rows = tmp_path / "one.libfm"
    rows.write_text((PROJECT_ROOT / "sample_data" / "sample" / "sample.test.libfm").read_text().splitlines()[0] + "\n")
    extra = ["--out", str(tmp_path / "r.html")] if command == "report" else []
    code, stdout, stderr = run(capsys, command, "--checkpoint", str(sample_checkpoint_path("afm")), "--data",
                               str(rows), *extra)
    assert code == 2 and stdout == "", stderr
    assert stderr.strip().splitlines()[-1].endswith("the test rows are empty (rows by split: train 1, valid 0, "
                                                    "test 0); choose another split, e.g. --split all")
    assert not (tmp_path / "r.html").exists()


def test_train_says_when_no_epoch_beat_the_starting_model(tmp_path, capsys):
    """Saved (it is the best there is), but the summary and stderr never present it as trained."""
    from afm.data.libfm import LIBFM_SPLIT_SUFFIX, write_libfm
    from tests.conftest import cli, random_dataset

    data = random_dataset()
    data.valid.labels[:] = -data.valid.labels
    for split, suffix in LIBFM_SPLIT_SUFFIX.items():
        part = getattr(data, split)
        write_libfm(tmp_path / f"opposite.{suffix}.libfm", [(part.labels, part.feature_ids, None)])
    out = tmp_path / "m.safetensors"
    code, stdout, stderr = cli(capsys, "train", "--data", str(tmp_path), "--model", "fm", "--k", "4", "--epochs", "3",
                               "--lr", "0.3", "--batch-size", "16", "--out", str(out))
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert code == 0 and summary["untrained"] is True and summary["best_epoch"] == 0, (code, stderr)
    assert "afm train: warning: no epoch did better than the starting model" in stderr
    assert out.exists()


def test_train_and_tune_print_the_gradient_boosting_reference_on_the_same_split(capsys, tmp_path):
    """The summary line carries the score a model worth explaining should reach: the reference
    fitted on the same training rows and scored on the same test rows (afm.analysis.reference)."""
    from afm.analysis.reference import gradient_boosting_reference
    from afm.data import load_csv

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"f{n}": rng.integers(0, 5, 600).astype(str) for n in range(4)})
    frame["clicked"] = np.where((frame["f0"] == frame["f1"]) | (rng.random(600) < 0.2), "yes", "no")
    data = tmp_path / "clicks.csv"
    frame.to_csv(data, index=False)
    expected = gradient_boosting_reference(load_csv(data), "binary")
    code, out, err = run(capsys, "train", "--data", str(data), "--model", "fwfm", "--preset", "quick", "--task",
                         "binary", "--epochs", "2", "--out", str(tmp_path / "m.safetensors"), "--quiet")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["reference_test_auc"] == pytest.approx(expected["test_auc"], abs=1e-6)
    assert summary["reference_test_logloss"] == pytest.approx(expected["test_logloss"], abs=1e-6)
    code, out, err = run(capsys, "tune", "--data", str(data), "--model", "fm", "--task", "binary", "--trials", "1",
                         "--epochs", "1", "--out", str(tmp_path / "t.safetensors"), "--quiet")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["reference_test_auc"] == summary["reference_test_auc"]
    code, out, _ = run(capsys, "train", "--data", "sample", "--model", "fm", "--epochs", "1", "--no-reference",
                       "--out", str(tmp_path / "s.safetensors"), "--quiet")
    assert code == 0 and not any(key.startswith("reference_") for key in json.loads(out.strip().splitlines()[-1]))
