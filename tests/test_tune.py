"""`afm tune` and afm.tune: the study's budget, record, seeding and pruning, the tuned checkpoint,
and the gradient-boosting reference score (afm.analysis.reference)."""

from __future__ import annotations

import json
import shlex

import numpy as np
import optuna
import pytest
import torch

from afm.analysis.reference import gradient_boosting_reference, numeric_fields
from afm.app.training import trials_table
from afm.checkpoint import load_checkpoint
from afm.cli import main
from afm.data import load_dataset
from afm.recipe import Recipe
from afm.tune import (
    BATCH_SIZES,
    SIZES,
    _Trial,
    base_recipe,
    study_from_summary,
    study_path,
    suggest,
    trial_recipe,
    tune,
)
from tests.conftest import random_dataset


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's usage errors exit directly
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


SMALL = ("--data", "sample", "--model", "afm", "--k", "8", "--epochs", "3")  # seconds a trial on 2 cores


# ----------------------------------------------------------------------------- fast: the pieces
@pytest.mark.parametrize("model", ["fm", "fwfm", "afm"])
def test_the_search_space_per_model(model):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    params = suggest(study.ask(), model)
    expected = {"lr", "embedding_dim", "dropout_pooled", "batch_size", "l2_embedding", "optimizer"} | (
        {"attention_dim", "dropout_attention", "l2_attention", "pretrain"} if model == "afm" else set())
    assert set(params) == expected
    assert 0.0005 <= params["lr"] <= 0.5 and params["embedding_dim"] in SIZES and params["batch_size"] in BATCH_SIZES
    assert 0.001 <= params["l2_embedding"] <= 100
    fixed = suggest(study.ask(), model, frozenset({"embedding_dim", "attention_dim"}))
    assert "embedding_dim" not in fixed and "attention_dim" not in fixed  # a fixed k (and t) is not searched
    Recipe.of(model=model, **params)  # every searched value is a valid setting


def test_the_study_searches_adam_beside_adagrad():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = [suggest(study.ask(), "fm") for _ in range(40)]
    assert {params["optimizer"] for params in drawn} == {"adagrad", "adam"}
    lrs = [params["lr"] for params in drawn]
    assert min(lrs) < 0.005 < max(lrs)  # Adam's rates (1e-3 and so) lie in the range, below Adagrad's
    assert trial_recipe(drawn[0], base_recipe("fm")[0]).train_config().optimizer == drawn[0]["optimizer"]


def test_the_recorded_command_rebuilds_a_pretrained_recipe():
    params = {"lr": 0.03, "embedding_dim": 64, "attention_dim": 32, "dropout_pooled": 0.2, "dropout_attention": 0.1,
              "l2_attention": 4.0, "batch_size": 512, "pretrain": True}
    base, _ = base_recipe("afm", seed=3, epochs=40)
    recipe = trial_recipe(params, base)
    command = recipe.command("frappe")
    assert command.startswith("python -m afm train --data frappe ") and command.endswith("--out afm.safetensors")
    for part in ("--k 64", "--t 32", "--dropout-attention 0.1", "--l2-attention 4.0", "--preset none",
                 "--lr 0.03", "--seed 3", "--epochs 40", "--pretrain", "--batch-size 512"):
        assert part in command, part
    assert "--pretrain" not in trial_recipe({**params, "pretrain": False}, base).command()


def test_a_trial_that_should_be_pruned_stops_its_training():
    class Trial:
        reported = []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return len(self.reported) >= 2

    watcher = _Trial(Trial(), "rmse", lambda: False)
    watcher.on_epoch_end({"epoch": 1, "valid_rmse": 0.5})  # the FM pretraining's epochs are not reported
    watcher.reporting = True
    watcher.on_epoch_end({"epoch": 0, "valid_rmse": 0.9})  # the start is not an epoch of training
    watcher.on_epoch_end({"epoch": 1, "valid_rmse": 0.8})
    assert not watcher.should_stop()
    watcher.on_epoch_end({"epoch": 2, "valid_rmse": 0.7})
    assert watcher.should_stop() and watcher.pruned_at == 2
    assert Trial.reported == [(1, 0.8), (2, 0.7)]


@pytest.mark.parametrize("preset, model", [("quick", "afm"), ("paper", "afm"), ("paper", "fm")])
def test_the_first_trial_is_the_presets_recipe(preset, model):
    tuned = tune(random_dataset(num_rows=300), model, trials=1, minutes=1, k=4, epochs=2, start=preset)
    params = tuned.history[0]["params"]
    assert tuned.summary["start"] == preset and params["embedding_dim"] == 4
    assert params["lr"] == {"quick": 0.2, "paper": 0.015 if model == "afm" else 0.05}[preset]
    assert params["batch_size"] == 128
    if model == "afm":
        assert params["pretrain"] == (preset == "paper")  # the authors' recipe starts from an FM
        assert params["l2_attention"] == (16.0 if preset == "paper" else 0.0)  # trained exactly as the preset
        assert tuned.study.trials[0].params["l2_attention"] == (16.0 if preset == "paper" else 0.0001)  # clipped


def test_the_first_trial_is_the_sized_recipe_and_successive_halving_prunes_short_trials():
    from afm.sizing import sized_recipe

    dataset = random_dataset(num_rows=1_500)  # not a sample nor the paper's data: sized (k = 8, batch 256)
    tuned = tune(dataset, "fm", trials=14, minutes=3, seed=0, epochs=9, patience=9)
    sized = sized_recipe(len(dataset.train), dataset.schema.num_fields, dataset.schema.num_features, "regression",
                         "fm")[0]
    first = tuned.history[0]
    assert tuned.summary["start"] == "auto" and first["state"] == "COMPLETE"
    assert first["params"] == {name: getattr(sized, name) for name in first["params"]}
    assert (first["params"]["optimizer"], first["params"]["embedding_dim"]) == ("adam", 8)
    states = [record["state"] for record in tuned.history]
    pruned = [record for record in tuned.history if record["state"] == "PRUNED"]
    assert len(tuned.history) == 14 and pruned, states
    assert min(record["epochs_run"] for record in pruned) < 3  # cut at the first rungs: 1 or 3 epochs
    assert tuned.summary["pruner"] == "SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)"


def test_a_sized_afm_start_trains_its_fm_first_and_starts_as_it():
    dataset = random_dataset(num_rows=600)
    tuned = tune(dataset, "afm", trials=1, minutes=1, k=4, epochs=2)
    params = tuned.history[0]["params"]
    assert params["pretrain"] and params["match_fm"] and params["optimizer"] == "adam"
    assert tuned.checkpoint.recipe.match_fm  # trained as the sized recipe: p = P from its FM


def test_tune_keeps_the_best_trial_and_its_study_rebuilds(tmp_path):
    dataset = random_dataset(num_rows=600)
    seen = []
    tuned = tune(dataset, "afm", trials=4, minutes=2, seed=1, k=4, epochs=3, progress=seen.append,
                 study_file=tmp_path / "s.json")
    values = [r["value"] for r in tuned.history if r["state"] == "COMPLETE"]
    assert tuned.summary["best"]["value"] == min(values) == tuned.checkpoint.best["valid_rmse"]
    assert tuned.checkpoint.train_config["preset"] == "tuned"
    assert tuned.checkpoint.train_config["tuned"]["params"] == tuned.best_params
    assert tuned.best_params["embedding_dim"] == tuned.best_params["attention_dim"] == 4
    assert tuned.checkpoint.recipe == trial_recipe(tuned.best_params, base_recipe("afm", seed=1, k=4, epochs=3)[0])
    assert [p.event for p in seen].count("trial_end") == 4 and seen[-1].trial == 4 and seen[-1].trials == 4
    saved = json.loads((tmp_path / "s.json").read_text())  # written after every trial
    assert len(saved["trials"]) == 4
    study = study_from_summary(saved)
    assert len(study.trials) == 4 and study.best_value == pytest.approx(min(values))
    assert len(trials_table(saved["trials"])) == 4


def test_the_time_budget_stops_the_study():
    tuned = tune(random_dataset(num_rows=600), "fm", trials=50, minutes=0.1, seed=0, k=4, epochs=10_000,
                 patience=10_000)
    # 6 s: the trial running then is cut there (its best epoch counts) and no other starts.
    assert len(tuned.history) < 50 and tuned.history[-1]["note"] == "stopped when the time budget ran out"
    assert tuned.history[-1]["state"] == "COMPLETE" and tuned.stop_reason == "completed"
    assert 6 <= tuned.summary["seconds"] < 12


def test_a_stop_request_keeps_the_best_trial_so_far():
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 30  # a few batches into the first trial

    tuned = tune(random_dataset(num_rows=600), "fm", trials=5, minutes=5, k=4, epochs=50, should_stop=stop)
    assert tuned.stop_reason == "stopped" and len(tuned.history) == 1
    assert tuned.history[0]["note"] == "stopped when asked"


def test_reference_fields_are_numeric_only_for_numbers():
    dataset = random_dataset(num_rows=300)
    assert numeric_fields(dataset) == [False] * 4


# ----------------------------------------------------------------------------- slow: the command line
@pytest.mark.slow
def test_tune_runs_three_trials_in_under_a_minute_and_saves_its_study(tmp_path, capsys):
    out = tmp_path / "tuned.safetensors"
    code, stdout, stderr = run(capsys, "tune", *SMALL, "--trials", "3", "--minutes", "2", "--out", str(out))
    assert code == 0, stderr
    summary = last_json(stdout)
    assert summary["trials_run"] == 3 and summary["seconds"] < 60
    lines = [line for line in stderr.splitlines() if line.startswith("trial ")]
    assert [line.split(":")[0].rsplit(" ", 1)[0] for line in lines] == ["trial 1/3", "trial 2/3", "trial 3/3"]
    assert all("| best " in line and " left" in line for line in lines)
    # The study beside the checkpoint: every trial, complete.
    study = json.loads(study_path(out).read_text())
    assert study["format"] == "afm-study" and study["checkpoint"] == str(out) and len(study["trials"]) == 3
    for trial in study["trials"]:
        assert {"number", "params", "value", "state", "intermediate_values", "seconds"} <= set(trial)
        assert trial["state"] in ("COMPLETE", "PRUNED", "FAIL")
    assert set(study["distributions"]) == {"lr", "dropout_pooled", "dropout_attention", "l2_attention",
                                           "l2_embedding", "batch_size", "pretrain", "optimizer"}
    # The checkpoint is the best trial's model: its valid RMSE is the study's best value.
    checkpoint = load_checkpoint(out)
    dataset = load_dataset("sample")
    assert checkpoint.evaluate(dataset, "valid")["rmse"] == pytest.approx(study["best"]["value"], abs=1e-5)
    assert summary["valid_rmse"] == pytest.approx(study["best"]["value"])
    assert checkpoint.train_config["preset"] == "tuned"
    assert checkpoint.train_config["tuned"]["params"] == study["best"]["params"] == summary["best_params"]


@pytest.mark.slow
def test_the_same_seed_proposes_the_same_first_trial(tmp_path, capsys):
    first = []
    for n, seed in enumerate(["0", "0", "1"]):
        out = tmp_path / f"{n}.safetensors"
        code, _, stderr = run(capsys, "tune", *SMALL, "--epochs", "1", "--trials", "1", "--seed", seed,
                              "--start", "none", "--out", str(out), "--quiet")
        assert code == 0, stderr
        first.append(json.loads(study_path(out).read_text())["trials"][0]["params"])
    assert first[0] == first[1] and first[0] != first[2]


@pytest.mark.slow
def test_the_recorded_command_trains_the_tuned_model_again(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run(capsys, "tune", "--data", "sample", "--model", "fm", "--k", "8", "--epochs", "3",
                          "--trials", "2", "--out", "tuned.safetensors", "--quiet")
    assert code == 0, stderr
    tuned = load_checkpoint("tuned.safetensors")
    commands = tuned.train_config["tuned"]["commands"]
    assert len(commands) == 1 and commands[0].startswith("python -m afm train ")
    code, stdout, stderr = run(capsys, *shlex.split(commands[0])[3:])
    assert code == 0, stderr
    assert last_json(stdout)["valid_rmse"] == pytest.approx(tuned.best["valid_rmse"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("extra, message", [
    (["--trials", "0"], "expected a positive integer"),
    (["--minutes", "-1"], "expected a positive number"),
    (["--minutes", "nan"], "expected a positive number"),
    (["--k", "0"], "expected a positive integer"),
    (["--model", "nfm"], "invalid choice"),
    (["--task", "binary"], "binary"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, extra, message):
    code, stdout, stderr = run(capsys, "tune", "--data", "sample", "--trials", "1", "--epochs", "1", "--k", "4",
                               "--out", str(tmp_path / "x.safetensors"), *extra)
    assert code == 2 and stdout == ""
    lines = stderr.strip().splitlines()
    assert message in lines[-1] and "Traceback" not in stderr, stderr
    assert not (tmp_path / "x.safetensors").exists()


def test_tune_refuses_to_write_over_its_input(tmp_path, capsys):
    data = tmp_path / "rows.libfm"
    data.write_text("".join(f"{i % 3} {i % 5}:1 {5 + i % 4}:1\n" for i in range(60)))
    before = data.read_bytes()
    code, stdout, stderr = run(capsys, "tune", "--data", str(data), "--trials", "1", "--out", str(data))
    assert code == 2 and stdout == "" and "would replace --data" in stderr
    assert data.read_bytes() == before


# ----------------------------------------------------------------------------- the reference score
@pytest.mark.slow
def test_gradient_boosting_beats_a_constant_on_the_sample():
    dataset = load_dataset("sample")
    reference = gradient_boosting_reference(dataset)
    constant = float(np.sqrt(np.mean((dataset.valid.labels - dataset.train.labels.mean()) ** 2)))
    assert reference["estimator"] == "HistGradientBoostingRegressor" and reference["categorical_fields"] == 10
    assert reference["valid_rmse"] < 0.5 * constant and reference["test_rmse"] < 0.5 * constant
    assert reference["seconds"] > 0


def test_gradient_boosting_scores_the_binary_task_by_auc():
    dataset = random_dataset(num_rows=600)
    for split in dataset.splits.values():
        split.labels = (split.labels > np.median(dataset.train.labels)).astype(np.float32)
    reference = gradient_boosting_reference(dataset, "binary")
    assert reference["estimator"] == "HistGradientBoostingClassifier"
    assert 0.6 < reference["valid_auc"] <= 1.0 and reference["valid_logloss"] > 0


def test_a_tuning_job_takes_one_slot_and_keeps_to_the_servers_caps():
    from afm.app.jobs import TuningJob
    from afm.scheduler import ServerPolicy, TrainingScheduler

    scheduler = TrainingScheduler(ServerPolicy(slots=1, cores=1, max_epochs=2, max_minutes=0.5))
    job = TuningJob("tuned", random_dataset(num_rows=400), "afm", trials=3, minutes=5, k=4, epochs=40,
                    scheduler=scheduler).start()
    assert job.epochs == 2 and job.minutes == 0.5 and len(job.notes) == 2
    assert job.join(timeout=120) and job.status == "done", job.error
    snapshot = job.snapshot()
    assert snapshot["tuning"]["trial"] == 3 and snapshot["tuning"]["trials"] == 3
    assert snapshot["tuning"]["best_value"] == pytest.approx(job.run.best["valid_rmse"])
    assert len(snapshot["trial_records"]) == 3 and all(r["epochs_run"] <= 2 for r in snapshot["trial_records"])
    assert job.run.origin == "tuned" and job.run.train_config["preset"] == "tuned"
    assert scheduler.counts() == (0, 0)


def test_an_afm_started_as_its_fm_counts_when_no_epoch_beats_the_fm(monkeypatch):
    """The sized AFM starts as its FM (p = P): if no epoch beats it, the trial's model is that FM's
    equal, a trained model, not a failed trial (a study of it alone used to end 'no trial trained')."""
    dataset = random_dataset(num_rows=600)
    monkeypatch.setattr("afm.train.make_optimizer", lambda model, config: torch.optim.SGD(model.parameters(), lr=0.0))
    tuned = tune(dataset, "afm", trials=1, minutes=1, k=4, epochs=2, patience=2)
    record = tuned.history[0]
    assert record["params"]["match_fm"] and record["best_epoch"] == 0 and record["state"] == "COMPLETE"
    assert tuned.checkpoint.best["valid_rmse"] == record["value"]
