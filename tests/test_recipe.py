"""afm.Recipe: one set of settings that every front end derives from (the CLI's flags, the app's
form, the tuner's space, presets, checkpoints), one set of defaults, one validation."""

from __future__ import annotations

import shlex
from dataclasses import fields

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from afm.app.training import FORM_FIELDS
from afm.checkpoint import load_checkpoint
from afm.cli import build_parser
from afm.cli.arguments import recipe_from
from afm.errors import AFMError, ConfigError
from afm.models import MODEL_NAMES
from afm.recipe import AFM_ONLY, PRESETS, Recipe, preset
from afm.tune import SEARCHED, searched
from tests.conftest import cli

FIELDS = {spec.name for spec in fields(Recipe)}
NOT_RECIPE_FLAGS = {"data", "data_dir", "label", "split_seed", "out", "quiet", "command", "preset", "dropout",
                    "reference"}


def train_args(*argv):
    return build_parser().parse_args(["train", "--data", "sample", "--out", "x.safetensors", *argv])


def test_the_cli_has_a_flag_for_every_setting_and_no_other():
    parser = build_parser()
    train = next(action for action in parser._subparsers._group_actions[0].choices.values()
                 if action.prog.endswith(" train"))
    dests = {action.dest for action in train._actions if action.dest != "help"}
    assert dests - NOT_RECIPE_FLAGS == FIELDS - {"preset"}


def test_the_app_form_and_the_page_cover_every_setting_and_no_other():
    drawn = {spec.name for spec in FORM_FIELDS}
    elsewhere = {spec.name for spec in fields(Recipe) if isinstance(spec.metadata["app"], str)}
    assert drawn | elsewhere == FIELDS and not drawn & elsewhere
    assert all(len(spec.metadata["app"]) > 10 for spec in fields(Recipe) if spec.name in elsewhere)  # a reason


def test_the_tuners_space_is_recipe_fields_within_their_ranges():
    assert set(SEARCHED) <= FIELDS
    by_name = {spec.name: spec for spec in fields(Recipe)}
    for name, how in SEARCHED.items():
        values = how[1:3] if how[0] == "float" else how[1]
        for value in values:
            Recipe.of(model="afm", **{name: value})  # every end of every range is a valid setting
        assert by_name[name].metadata["search"] == how
    assert not set(searched("fm")) & (set(AFM_ONLY) | {"attention_dim"})  # the AFM-only rule, in the space too


def test_one_set_of_defaults_the_papers_per_model():
    for model in MODEL_NAMES:
        assert Recipe(model=model).replace(preset="paper") == PRESETS["paper"][model]
        assert recipe_from(train_args("--model", model)) == PRESETS["paper"][model]  # the CLI's defaults
    assert Recipe(model="afm").l2_attention == 16.0 and Recipe(model="fm").l2_attention == 0.0
    assert Recipe(model="afm").epochs == Recipe(model="fm").epochs == 100


@pytest.mark.parametrize("setting, value", [("l2_attention", 1.0), ("dropout_attention", 0.1), ("pretrain", True),
                                            ("precision", "bfloat16")])
def test_the_afm_only_rule_is_one_error_everywhere(setting, value, capsys):
    with pytest.raises(ConfigError) as made:
        Recipe(model="fm", **{setting: value})
    assert f"{setting} (--{setting.replace('_', '-')}) applies to AFM only" in str(made.value)
    with pytest.raises(ConfigError) as changed:
        preset("quick", "fwfm", **{setting: value})
    assert str(changed.value) == str(made.value).replace("not fm", "not fwfm")
    flag = "--" + setting.replace("_", "-")
    code, _, err = cli(capsys, "train", "--data", "sample", "--model", "fm", flag,
                       *([] if value is True else [str(value)]), "--out", "x.safetensors")
    assert code == 2 and str(made.value) in err


def test_a_model_change_takes_that_models_defaults_and_unknown_settings_are_one_line():
    afm = preset("paper", "afm")
    fm = afm.replace(model="fm")
    assert fm.lr == 0.05 and fm.l2_attention == 0.0 and fm.dropout_pooled == 0.5
    assert preset("paper", "afm", precision="bfloat16").replace(model="fm").precision == "float32"  # AFM's own
    with pytest.raises(ConfigError, match="unknown recipe settings \\['k'\\]"):
        Recipe.of(k=8)
    with pytest.raises(ConfigError, match="embedding_dim \\(--k\\) must be a whole number"):
        Recipe.of(embedding_dim=8.5)


recipes = st.builds(
    lambda model, k, t, lr, batch, epochs, seed, optimizer, task, drop, l2, name, precision: preset(
        name, model, embedding_dim=k, attention_dim=t, lr=lr, batch_size=batch, epochs=epochs, seed=seed,
        optimizer=optimizer, task=task, dropout_pooled=drop,
        **({"l2_attention": l2, "dropout_attention": drop / 2, "precision": precision} if model == "afm" else {})),
    st.sampled_from(MODEL_NAMES), st.integers(1, 512), st.integers(1, 512),
    st.floats(1e-4, 10, allow_nan=False), st.integers(1, 10_000), st.integers(0, 500), st.integers(0, 2**32 - 1),
    st.sampled_from(("adagrad", "adam")), st.sampled_from(("regression", "binary")), st.floats(0, 0.9),
    st.floats(0, 100), st.sampled_from((None, *PRESETS)), st.sampled_from(("float32", "bfloat16")))


@settings(max_examples=60, deadline=None)
@given(recipes)
def test_the_command_a_recipe_gives_trains_that_recipe(recipe):
    argv = shlex.split(recipe.command("sample", "x.safetensors"))[3:]
    assert recipe_from(build_parser().parse_args(argv)) == recipe


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(FIELDS)), st.one_of(
    st.none(), st.booleans(), st.integers(-5, 2**33), st.floats(allow_nan=True), st.text(max_size=8)), max_size=4))
def test_any_settings_make_a_recipe_or_one_line_error(values):
    try:
        recipe = Recipe.of(**values)
    except AFMError as exc:
        assert "\n" not in str(exc) and str(exc)
    else:
        assert recipe == Recipe.of(**recipe.to_dict())  # what validation let through is a fixed point


def test_a_checkpoint_keeps_its_recipe(tmp_path):
    import afm

    recipe = preset("quick", "afm", epochs=2, seed=7, device="cpu", lr=0.123)
    model = afm.fit("sample", recipe=recipe)
    assert model.recipe == recipe
    assert afm.load(model.save(tmp_path / "m.safetensors")).recipe == recipe


@pytest.mark.slow
def test_the_bundled_checkpoints_are_their_recipe_and_retrain_bit_identical():
    """The sample's FM, FwFM and AFM were made by `afm sample --checkpoints` before the Recipe
    existed: read with the old format, each gives the quick preset, and training that recipe now
    gives the very same weights."""
    from afm.data import load_libfm_dir
    from afm.fitting import fit_recipe
    from afm.paths import sample_dir
    from afm.samples.checkpoints import sample_checkpoint_path

    data = load_libfm_dir(sample_dir() / "sample", name="sample")
    for model in MODEL_NAMES:
        bundled = load_checkpoint(sample_checkpoint_path(model))
        assert bundled.recipe == preset("quick", model, device="cpu")
        again = fit_recipe(bundled.recipe, data).checkpoint
        weights, retrained = bundled.model.state_dict(), again.model.state_dict()
        assert weights.keys() == retrained.keys()
        assert all(torch.equal(weights[key], retrained[key]) for key in weights), model
