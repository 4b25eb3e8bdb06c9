"""`afm pairs`: which field pairs matter, as a CSV, on the bundled sample."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from afm.analysis import pairs as analysis_pairs
from afm.analysis.pairs import PAIR_COLUMNS
from afm.analysis.shapley import SEMANTICS
from afm.checkpoint import Checkpoint, TrainedOn, save_checkpoint
from afm.cli import main
from afm.cli import pairs as cli_pairs
from afm.data import load_csv
from afm.models import ModelConfig, build_model
from afm.samples.checkpoints import sample_checkpoint_path

PAIRS = 45  # the sample's 10 fields


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse errors exit directly
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def pairs_args(model: str, out, *extra) -> list[str]:
    return ["pairs", "--checkpoint", str(sample_checkpoint_path(model)), "--data", "sample", "--out", str(out),
            "--device", "cpu", *extra]


def test_the_cli_defaults_are_the_analysis_ones():
    assert cli_pairs.COALITIONS == SEMANTICS
    assert cli_pairs.DEFAULT_ROWS == analysis_pairs.DEFAULT_ROWS
    assert cli_pairs.DEFAULT_BACKGROUND == analysis_pairs.DEFAULT_BACKGROUND


@pytest.mark.parametrize("coalitions", ["absent", "background"])
@pytest.mark.parametrize("model", ["fm", "fwfm", "afm"])
def test_pairs_writes_one_line_per_pair_and_a_json_summary(capsys, tmp_path, model, coalitions):
    out = tmp_path / "pairs.csv"
    code, stdout, stderr = run(capsys, *pairs_args(model, out, "--rows", "48", "--coalitions", coalitions,
                                                   "--background", "4"))
    assert code == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    table = pd.read_csv(out)
    assert tuple(table.columns) == PAIR_COLUMNS and len(table) == PAIRS == summary["pairs"]
    assert table["pair"].is_unique and (np.diff(table["shapley_abs_mean"]) <= 1e-12).all()  # most important first
    assert summary["rows"] == 48 and summary["coalitions"] == coalitions and summary["model"] == model
    assert summary["background"] == (4 if coalitions == "background" else 0)
    assert summary["seconds"] > 0 and summary["strongest_pair"] == table["pair"][0]
    assert summary["strongest_gate"].startswith("The ") and " changes with " in summary["strongest_gate"]
    assert "Kendall tau" in summary["agreement"]
    if model == "afm":
        assert summary["verdict"].startswith("On the ") and " test rows, this AFM " in summary["verdict"]
    else:
        assert summary["verdict"] is None
    if coalitions == "absent":
        assert "ignored" in stderr  # --background means nothing here, and it says so
    assert not list(tmp_path.glob(".*.part"))
    check_beyond_pairs(summary, table, model)


def check_beyond_pairs(summary: dict, table: pd.DataFrame, model: str) -> None:
    """Issue #28, items 2-4: erasure areas per measure, effects of three fields (marked in the CSV)
    and the share of the prediction no pair carries: exactly 0 for FM and FwFM."""
    measures = ["|contribution|", "|Shapley interaction|", "|Shapley-Taylor|"]
    assert list(summary["erasure"]) == (["attention"] if model == "afm" else []) + measures
    assert list(summary["erasure_metric"]) == list(summary["erasure"])
    assert all(np.isfinite(value) for value in [*summary["erasure"].values(), *summary["erasure_metric"].values()])
    assert summary["erasure"]["|contribution|"] > 0  # better than erasing pairs at random (sample: 0.47-0.82)
    marked = table["part_of_effect"].astype("string").fillna("")
    if model == "afm":
        assert summary["non_pairwise_share"] > 0
        effect = summary["effects"][0]  # the sample's planted gate: user x item only on phones
        assert effect["effect"] == "user x item x device" and effect["fields"] == ["user", "item", "device"]
        assert (effect["gated_pair"], effect["gate"]) == ("user x item", "device") and effect["strength"] > 0
        assert effect["pairs"] == ["user x item", "user x device", "item x device"]
        assert effect["description"].startswith("user x item x device: one effect, seen as user x item (gated by")
        assert set(table["pair"][marked == "user x item x device"]) == set(effect["pairs"])
    else:
        assert summary["non_pairwise_share"] == 0 and summary["effects"] == [] and (marked == "").all()


def test_fm_shapley_taylor_terms_are_its_pair_terms_under_absent_coalitions(capsys, tmp_path):
    """An FM's v(S) adds one fixed term per pair inside S: its Möbius transform is that term, so
    the Shapley-Taylor pair term (and the SII) of a pair is its contribution, row by row."""
    out = tmp_path / "fm.csv"
    code, _, stderr = run(capsys, *pairs_args("fm", out))
    assert code == 0, stderr
    table = pd.read_csv(out)
    np.testing.assert_allclose(table["taylor_mean"], table["contribution_mean"], atol=1e-6)
    np.testing.assert_allclose(table["taylor_abs_mean"], table["contribution_abs_mean"], atol=1e-6)
    np.testing.assert_allclose(table["shapley_mean"], table["contribution_mean"], atol=1e-6)
    assert (table["attention_mean"] == 1).all() and (table["attention_std"] == 0).all()


def test_the_whole_data_can_be_explained(capsys, tmp_path):
    code, stdout, stderr = run(capsys, *pairs_args("afm", tmp_path / "all.csv", "--split", "all", "--rows", "16",
                                                   "--seed", "3"))
    assert code == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["split"] == "all" and summary["rows"] == 16 and summary["seed"] == 3


@pytest.mark.parametrize("extra, message", [
    (["--rows", "0"], "argument --rows: expected a positive integer up to 2,147,483,647, got '0'"),
    (["--rows", "many"], "expected a positive integer"),
    (["--coalitions", "permuted"], "argument --coalitions: invalid choice: 'permuted'"),
    (["--background", "0", "--coalitions", "background"], "argument --background: expected a positive integer"),
    (["--seed", "-1"], "a seed in 0..4294967295"),
    (["--split", "holdout"], "argument --split: invalid choice"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, tmp_path, extra, message):
    out = tmp_path / "pairs.csv"
    code, stdout, stderr = run(capsys, *pairs_args("afm", out, *extra))
    lines = stderr.strip().splitlines()
    assert code == 2 and stdout == "" and len(lines) == 1 and message in lines[0], stderr
    assert not out.exists()


def test_data_the_model_cannot_read_is_exit_2(capsys, tmp_path):
    three = tmp_path / "three.libfm"
    three.write_text("".join(f"{i % 2} {i % 4}:1 {4 + i % 3}:1 {7 + i % 2}:1\n" for i in range(60)))
    out = tmp_path / "pairs.csv"
    code, stdout, stderr = run(capsys, "pairs", "--checkpoint", str(sample_checkpoint_path("fm")), "--data",
                               str(three), "--out", str(out))
    lines = stderr.strip().splitlines()
    assert code == 2 and stdout == "" and len(lines) == 1 and "fields" in lines[0], stderr
    assert not out.exists()


def test_the_output_never_replaces_an_input(capsys, tmp_path, monkeypatch):
    checkpoint = tmp_path / "model.safetensors"
    shutil.copyfile(sample_checkpoint_path("afm"), checkpoint)
    before = checkpoint.read_bytes()
    code, stdout, stderr = run(capsys, "pairs", "--checkpoint", str(checkpoint), "--data", "sample",
                               "--out", str(checkpoint))
    assert code == 2 and stdout == ""
    assert stderr.strip() == (f"afm pairs: error: {checkpoint}: the output would replace the checkpoint; "
                              "write it elsewhere")
    assert checkpoint.read_bytes() == before
    # A data file inside a data folder (here a copy of the sample's), named as the folder itself
    # or found from a registry name: refused before anything is written.
    data = tmp_path / "sample"
    shutil.copytree(sample_checkpoint_path("afm").parent, data)
    test_rows = data / "sample.test.libfm"
    before = test_rows.read_bytes()
    for given in (str(data), str(test_rows)):
        code, _, stderr = run(capsys, "pairs", "--checkpoint", str(checkpoint), "--data", given,
                              "--out", str(test_rows))
        assert code == 2 and "the output would replace the data" in stderr and len(stderr.strip().splitlines()) == 1
    monkeypatch.setenv("AFM_SAMPLE_DIR", str(tmp_path))  # the registry name "sample" now reads the copy
    features = data / "sample.features.tsv"
    before_features = features.read_bytes()
    code, _, stderr = run(capsys, "pairs", "--checkpoint", str(checkpoint), "--data", "sample",
                          "--out", str(features))
    assert code == 2 and "the output would replace the data" in stderr
    assert test_rows.read_bytes() == before and features.read_bytes() == before_features
    # Beside the data, under another name, is fine.
    code, _, stderr = run(capsys, "pairs", "--checkpoint", str(checkpoint), "--data", str(data), "--rows", "8",
                          "--out", str(data / "pairs.csv"))
    assert code == 0, stderr


def test_a_two_field_model_has_one_pair_and_no_order_to_compare(capsys, tmp_path):
    frame = pd.DataFrame({"city": np.tile(["a", "b", "c"], 40), "plan": np.repeat(["x", "y"], 60),
                          "label": np.arange(120) % 5})
    frame.to_csv(tmp_path / "rows.csv", index=False)
    dataset = load_csv(tmp_path / "rows.csv", min_count=1)
    config = ModelConfig(model="afm", num_features=dataset.schema.num_features, num_fields=2, embedding_dim=4,
                         attention_dim=4)
    save_checkpoint(tmp_path / "two.safetensors", Checkpoint(build_model(config, seed=0), config,
                                                             {"task": "regression"}, [], dataset.schema,
                                                             TrainedOn.of(dataset)))
    code, stdout, stderr = run(capsys, "pairs", "--checkpoint", str(tmp_path / "two.safetensors"), "--data",
                               str(tmp_path / "rows.csv"), "--split", "all", "--out", str(tmp_path / "pairs.csv"))
    assert code == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["pairs"] == 1 and summary["rows"] == 120 and summary["agreement"] is None
    assert summary["erasure"] == {} == summary["erasure_metric"] and summary["effects"] == []
    assert summary["non_pairwise_share"] == 0  # two fields: no coalition of three
    assert list(pd.read_csv(tmp_path / "pairs.csv")["pair"]) == ["city x plan"]


def test_seeds_retrain_the_recipe_and_compare_the_rankings(capsys, tmp_path):
    """`--seeds 2` on a short FwFM recipe (2 epochs, saved here): the JSON's `stability` per measure
    and the CSV's rank ranges, which hold each seed's rank (the checkpoint's own among them)."""
    from afm.data import load_dataset
    from afm.fitting import fit_recipe
    from afm.recipe import preset

    short = tmp_path / "short.safetensors"
    save_checkpoint(short, fit_recipe(preset("quick", "fwfm", epochs=2), load_dataset("sample")).checkpoint)
    out = tmp_path / "pairs.csv"
    code, stdout, stderr = run(capsys, "pairs", "--checkpoint", str(short), "--data", "sample", "--out", str(out),
                               "--rows", "64", "--seeds", "2")
    assert code == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert set(summary["stability"]) == {"attention", "contribution", "shapley", "taylor"}
    for measure in summary["stability"].values():
        assert -1 <= measure["kendall_tau"] <= 1 and 0 <= measure["top3_overlap"] <= 1
    assert summary["stability_seeds"] == [0, 1] and len(summary["stability_verdicts"]) == 4
    table = pd.read_csv(out)
    assert tuple(table.columns[:len(PAIR_COLUMNS)]) == PAIR_COLUMNS
    own = table["shapley_abs_mean"].rank(ascending=False, method="first")  # the checkpoint's own ranking
    assert ((table["shapley_rank_min"] <= own) & (own <= table["shapley_rank_max"])).all()
    code, _, stderr = run(capsys, *pairs_args("fm", out, "--seeds", "1"))
    assert code == 2 and "2..20" in stderr and len(stderr.strip().splitlines()) == 1
