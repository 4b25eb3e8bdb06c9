"""The Lesson: its walk of eq. (1)-(5) is the model's own computation (held against `decompose` and
the forward pass on models and rows nobody picked), attention is recorded during every training
and replayed from the checkpoint, the claims its steps make hold on the bundled models, and the
page walks Back and Next through every step with no exception, at its defaults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from afm import lesson
from afm.analysis.attention_replay import RECORD_KEY, PairWeightRecorder, replay_frames
from afm.analysis.model_walk import walk_row
from afm.checkpoint import load_checkpoint, save_checkpoint
from afm.data import FieldSchema, load_libfm_dir
from afm.fitting import fit_recipe
from afm.models import ModelConfig, build_model
from afm.paths import sample_dir
from afm.recipe import preset
from afm.samples.checkpoints import sample_checkpoint_path
from tests.conftest import random_dataset


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(["fm", "fwfm", "afm"]), sizes=st.lists(st.integers(1, 5), min_size=2, max_size=6),
       k=st.integers(1, 8), t=st.integers(1, 8), seed=st.integers(0, 2**31 - 1), real_valued=st.booleans())
def test_the_walk_of_one_row_is_the_models_own_prediction(model, sizes, k, t, seed, real_valued):
    rng = np.random.default_rng(seed)
    config = ModelConfig(model=model, num_features=sum(sizes), num_fields=len(sizes), embedding_dim=k,
                         attention_dim=t, dropout_pooled=0.0)
    built = build_model(config, seed=seed)
    with torch.no_grad():  # trained-looking weights: p, r, w and w0 away from their starting values
        for parameter in built.parameters():
            parameter.add_(torch.from_numpy(rng.normal(0, 0.5, tuple(parameter.shape))).float())
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    ids = offsets + np.array([rng.integers(0, s) for s in sizes])  # (F,) one feature per field
    values = rng.uniform(0.2, 2.0, len(sizes)).astype(np.float32) if real_valued else np.ones(len(sizes), np.float32)
    schema = FieldSchema(tuple(f"f{i}" for i in range(len(sizes))), tuple(np.repeat(np.arange(len(sizes)), sizes)))
    walk = walk_row(built, schema, ids, values)
    terms = built.decompose(torch.from_numpy(ids).reshape(1, -1), torch.from_numpy(values).reshape(1, -1))
    assert walk.prediction == pytest.approx(float(terms.prediction[0]), abs=1e-4)
    parts = walk.bias + walk.first_order.sum() + walk.pair_terms.sum()
    assert walk.prediction == pytest.approx(parts, rel=1e-5, abs=1e-5)
    np.testing.assert_allclose(walk.weights, terms.pair_weights[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(walk.pair_terms, terms.pair_terms[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(walk.first_order, terms.first_order[0].numpy(), atol=1e-6)
    forward = built.inference(torch.from_numpy(ids).reshape(1, -1), torch.from_numpy(values).reshape(1, -1))
    assert walk.prediction == pytest.approx(float(forward[0]), abs=1e-4)
    if model == "afm":  # eq. (3): the weights are the softmax of the scores of eq. (2)
        np.testing.assert_allclose(walk.weights, np.exp(walk.scores) / np.exp(walk.scores).sum(), atol=1e-6)
        assert walk.weights.sum() == pytest.approx(1.0)
    else:
        assert walk.scores is None


@pytest.mark.slow
def test_every_afm_and_fwfm_training_records_its_attention_and_the_checkpoint_keeps_it(tmp_path):
    data = random_dataset(num_rows=300, seed=3)
    for model in ("fm", "fwfm", "afm"):
        fitted = fit_recipe(preset("quick", model, epochs=3, device="cpu"), data)
        saved = load_checkpoint(save_checkpoint(tmp_path / f"{model}.safetensors", fitted.checkpoint))
        frames = replay_frames(saved.history)
        if model == "fm":  # a weight of 1 on every pair: nothing to replay
            assert frames == [] and all(RECORD_KEY not in r for r in saved.history)
            continue
        assert [epoch for epoch, _ in frames] == [r["epoch"] for r in saved.history]
        assert all(len(weights) == data.schema.num_pairs for _, weights in frames)
        if model == "fwfm":  # r starts at 1 and is what was recorded
            np.testing.assert_allclose(frames[0][1], 1.0)
        else:  # a softmax over each row's pairs: the mean over rows sums to 1
            assert all(weights.sum() == pytest.approx(1.0) for _, weights in frames)
        assert not np.allclose(frames[0][1], frames[-1][1])  # training moved it


def test_a_dataset_without_validation_rows_records_no_replay():
    data = random_dataset(num_rows=100)
    data.splits["valid"] = data.valid.take(np.arange(0))
    assert PairWeightRecorder.for_dataset(data) is None


def test_a_very_wide_dataset_records_no_replay_to_keep_its_checkpoint_small():
    assert PairWeightRecorder.for_dataset(random_dataset(num_rows=60, field_sizes=(2,) * 46)) is not None  # 1,035
    assert PairWeightRecorder.for_dataset(random_dataset(num_rows=60, field_sizes=(2,) * 47)) is None  # 1,081


@pytest.fixture(scope="module")
def bundled():
    data = load_libfm_dir(sample_dir() / "sample", name="sample")
    return data, {m: load_checkpoint(sample_checkpoint_path(m)) for m in ("fm", "fwfm", "afm")}


def test_the_bundled_afm_learned_its_attention_from_near_uniform_onto_the_planted_pairs(bundled):
    data, checkpoints = bundled
    frames = replay_frames(checkpoints["afm"].history)
    assert len(frames) == len(checkpoints["afm"].history)
    start, end = frames[0][1], frames[-1][1]
    pairs = data.schema.num_pairs
    assert start.max() < 3 / pairs  # nearly uniform before training (1/P each)
    top = [data.schema.pair_names()[q] for q in np.argsort(-end)[:2]]
    assert "user x item" in top


def test_the_gate_step_shows_afm_following_the_device_and_fwfm_not(bundled):
    data, checkpoints = bundled
    models = {m: c.model for m, c in checkpoints.items()}
    frame = lesson.pair_weight_by_value(models, data.test, data.schema, "user x item", "device")
    weight = frame.set_index(["model", "device"])["weight"]
    assert weight["FM", "phone"] == weight["FM", "laptop"] == 1.0
    assert weight["FwFM", "phone"] == pytest.approx(weight["FwFM", "laptop"])
    assert weight["AFM", "phone"] > 20 * weight["AFM", "laptop"]


@pytest.mark.parametrize("verdict, tau, uses", [
    ("On the 1,500 test rows, this AFM uses per-row attention: ...", 0.7, "needs"),
    ("On the 1,500 test rows, this AFM does not use per-row attention: ...", 0.1, "does not need"),
])
def test_the_reconciled_sentence_answers_both_questions(verdict, tau, uses):
    said = lesson.reconciled_sentence(verdict, tau, ["a x b", "c x d", "e x f"], ["a x b", "g x h", "c x d"])
    assert said.startswith(f"This AFM {uses} its per-row attention")
    assert "share a x b, c x d of their top 3" in said and f"{tau:.2f}" in said


def lesson_app() -> AppTest:
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=300).run()
    return at.switch_page("pages/lesson.py").run()  # after the app's first run: the session's models exist


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


@pytest.mark.slow
def test_the_lesson_walks_every_step_with_back_and_next_and_leaves_the_active_model_alone():
    at = lesson_app()
    active = at.session_state.active_run
    assert active == "sample AFM"
    assert button(at, "← Back").disabled
    titles = []
    for number, step in enumerate(lesson.STEPS):
        assert not at.exception, [e.value for e in at.exception]
        assert at.subheader[0].value == f"{number + 1}. {step.title}"
        assert any(step.see in m.value for m in at.markdown)
        assert len(at.get("plotly_chart")) >= 1
        titles.append(at.subheader[0].value)
        if number < len(lesson.STEPS) - 1:
            button(at, "Next →").click().run()
    assert button(at, "Next →").disabled
    button(at, "← Back").click().run()
    assert at.subheader[0].value == titles[-2]
    assert at.session_state.active_run == active


@pytest.mark.slow
def test_changing_the_device_of_the_row_redraws_the_walk_with_less_weight_on_user_x_item():
    at = lesson_app()
    for _ in range(3):
        button(at, "Next →").click().run()
    said = next(m.value for m in at.markdown if m.value.startswith("On this "))
    assert said.startswith("On this phone row")
    phone = float(said.split("**")[1])
    value = next(s for s in at.selectbox if s.label == "to")
    value.set_value(next(o for o in value.options if o == "laptop")).run()
    said = next(m.value for m in at.markdown if m.value.startswith("On this "))
    assert said.startswith("On this laptop row")
    assert float(said.split("**")[1]) < phone / 5


@pytest.mark.slow
def test_the_presenter_shows_one_figure_per_screen():
    at = lesson_app()
    for _ in range(2):
        button(at, "Next →").click().run()
    assert len(at.get("plotly_chart")) == 2  # FwFM's weights and the gate bars, side by side
    at.toggle(key="lesson_presenter").set_value(True).run()
    assert len(at.get("plotly_chart")) == 1
    assert not at.exception
