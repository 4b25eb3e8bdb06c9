"""`--preset auto` (afm.sizing): the recipe sized to the data's rows and fields, the paper's recipe
on Frappe and ml-tag, the choice said with its reason by the CLI, afm.fit and the app."""

from __future__ import annotations

import json
import shlex

import numpy as np
import pandas as pd
import pytest

from afm.checkpoint import load_checkpoint
from afm.cli import build_parser, main
from afm.cli.arguments import auto_from
from afm.errors import AFMError, ConfigError
from afm.recipe import PRESETS
from afm.sizing import auto_recipe, sized_recipe
from tests.conftest import random_dataset


def test_fewer_rows_get_a_smaller_model_and_a_smaller_batch():
    sizes = [sized_recipe(rows, 13, 3_000, "binary", "fwfm")[0] for rows in (1_000, 21_000, 300_000, 3_000_000)]
    assert [r.embedding_dim for r in sizes] == [8, 16, 32, 64]
    assert [r.batch_size for r in sizes] == [256, 1024, 1024, 4096]
    for recipe in sizes:
        assert recipe.optimizer == "adam" and recipe.l2_embedding == recipe.batch_size / 512
        assert recipe.preset == "auto" and recipe.task == "binary" and recipe.patience == 3
    paper = PRESETS["paper"]["fwfm"]
    assert all(r.embedding_dim < paper.embedding_dim and r.l2_embedding > paper.l2_embedding for r in sizes)


def test_the_reason_names_the_data_and_the_choice():
    recipe, reason = sized_recipe(21_000, 13, 2_198, "binary", "afm")
    assert recipe.attention_dim == recipe.embedding_dim == 16 and recipe.pretrain and recipe.match_fm
    for part in ("21,000 training rows", "13 fields", "2,198 features", "k = 16, t = 16", "Adam", "batch 1,024",
                 "validation AUC"):
        assert part in reason, part
    assert "validation RMSE" in sized_recipe(21_000, 13, 2_198, "regression", "fm")[1]


@pytest.mark.parametrize("args, problem", [((0, 3, 10), "rows"), ((10, 2.5, 10), "fields"),
                                           ((10, 3, True), "features"), ((10, 3, 10, "regression", "nfm"), "model")])
def test_bad_sizes_are_one_line_errors(args, problem):
    with pytest.raises(ConfigError) as raised:
        sized_recipe(*args)
    assert problem in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("name, expected", [("frappe", "paper"), ("ml-tag", "paper"), ("sample", "quick"),
                                            ("my-upload", "auto")])
def test_the_papers_data_keeps_the_papers_recipe(name, expected):
    dataset = random_dataset(num_rows=400)
    dataset.name = name
    recipe, reason = auto_recipe(dataset, "afm", "regression", seed=3)
    assert recipe.preset == expected and recipe.seed == 3 and reason
    if expected == "paper":
        assert recipe == PRESETS["paper"]["afm"].replace(seed=3)
        assert recipe.embedding_dim == 256 and recipe.batch_size == 128 and recipe.optimizer == "adagrad"
    if expected == "auto":
        assert recipe.embedding_dim == 8 and "given: seed" in reason
        assert recipe.pretrain and recipe.match_fm  # sized AFM: an FM first, started as it
        assert not auto_recipe(dataset, "afm", init_from="fm.safetensors")[0].pretrain  # an FM given: none first
        alone = auto_recipe(dataset, "afm", pretrain=False)[0]  # no FM asked for: none to start as
        assert not alone.pretrain and not alone.match_fm


def test_the_command_a_sized_recipe_gives_rebuilds_it():
    recipe = sized_recipe(21_000, 13, 2_198, "binary", "afm")[0]
    argv = shlex.split(recipe.command("x.csv", "x.safetensors"))[3:]
    args = build_parser().parse_args(argv)
    assert auto_from(args, random_dataset())[0] == recipe.replace(preset=None)  # --preset none, every value


def _csv(path, rows=300):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"c{f}": rng.choice([f"v{v}" for v in range(6)], rows) for f in range(4)})
    frame["label"] = (rng.uniform(size=rows) < 0.3).astype(int)
    frame.to_csv(path, index=False)
    return path


def test_afm_train_sizes_a_csv_by_default_and_says_why(tmp_path, capsys):
    data, out = _csv(tmp_path / "clicks.csv"), tmp_path / "m.safetensors"
    code = main(["train", "--data", str(data), "--model", "fwfm", "--task", "binary", "--epochs", "2",
                 "--no-reference", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0
    assert "afm train: preset auto: sized to 210 training rows of 4 fields" in captured.err
    assert json.loads(captured.out.strip().splitlines()[-1])["preset"] == "auto"
    recipe = load_checkpoint(out).recipe
    assert (recipe.embedding_dim, recipe.optimizer, recipe.batch_size, recipe.epochs) == (8, "adam", 256, 2)
    assert recipe.l2_embedding == 0.5


def test_afm_train_with_the_paper_preset_is_the_paper(tmp_path, capsys):
    data, out = _csv(tmp_path / "clicks.csv"), tmp_path / "m.safetensors"
    assert main(["train", "--data", str(data), "--model", "fm", "--preset", "paper", "--epochs", "1", "--k", "4",
                 "--no-reference", "--out", str(out)]) == 0
    assert "preset auto" not in capsys.readouterr().err
    recipe = load_checkpoint(out).recipe
    assert recipe.preset == "paper" and recipe.optimizer == "adagrad" and recipe.batch_size == 128


def test_afm_fit_sizes_a_frame_by_default(tmp_path):
    from afm.api import fit

    frame = pd.read_csv(_csv(tmp_path / "clicks.csv"))
    model = fit(frame, "label", model="fm", epochs=1)
    assert model.recipe.preset == "auto" and model.recipe.embedding_dim == 8 and model.task == "binary"
    with pytest.raises(AFMError, match="preset must be one of"):
        fit(frame, "label", model="fm", preset="sized")


@pytest.mark.slow
def test_an_upload_opens_on_the_sized_recipe_and_trains_it_in_two_steps():
    from tests.conftest import planted_csv
    from tests.test_app import TIMEOUT, app, no_errors, upload

    at = upload(app().run(), "mine.csv", planted_csv(0))
    no_errors(at)
    menu = next(box for box in at.selectbox if box.label == "Preset")
    assert menu.value == "auto" and "Paper (k = 256)" in menu.options  # the paper's recipe offered beside it
    assert any(c.value.startswith("Sized to your data: sized to 280 training rows") for c in at.caption)
    assert at.number_input(key="recipe_embedding_dim_auto_afm_mine_280").value == 8
    assert at.selectbox(key="recipe_optimizer_auto_afm_mine_280").value == "adam"
    assert at.checkbox(key="fm_first_auto").value  # the sized AFM: its FM first
    at.number_input(key="recipe_epochs_auto_afm_mine_280").set_value(2)
    at.get("form_submit_button")[0].click().run()
    no_errors(at)
    fm_job = at.session_state["job"]
    assert fm_job.join(timeout=TIMEOUT) and fm_job.status == "done", fm_job.error
    at.run()  # collects the FM, starts the AFM from it
    afm_job = at.session_state["job"]
    assert afm_job is not fm_job and afm_job.join(timeout=TIMEOUT) and afm_job.status == "done", afm_job.error
    at.run()
    at.run()
    no_errors(at)
    recipe = at.session_state["runs"][afm_job.name].recipe
    assert recipe.match_fm and recipe.init_from == fm_job.name and recipe.optimizer == "adam"
