"""The front door (afm.fit, afm.load, TrainedModel, Explanation): a DataFrame is read exactly as the
same CSV file, predictions and explanations are the CLI's, mistakes are one-line AFMErrors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import afm
from afm.api import read_data
from afm.errors import AFMError
from tests.conftest import cli


def clicks(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """A click log: site x device matters, price is a number, the label two words."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"site": rng.choice(["news", "shop", "games"], rows),
                          "device": rng.choice(["phone", "laptop"], rows),
                          "hour": rng.integers(0, 24, rows), "price": rng.gamma(2.0, 5.0, rows).round(2)})
    hit = (frame.site == "shop") & (frame.device == "phone")
    frame["clicked"] = np.where(hit | (rng.random(rows) < 0.15), "yes", "no")
    return frame


@pytest.fixture(scope="module")
def fitted():
    return afm.fit(clicks(), label="clicked", model="afm", preset="quick", epochs=4, device="cpu")


frames = st.integers(12, 60).flatmap(lambda rows: st.fixed_dictionaries({
    "code": st.lists(st.sampled_from(["7", "007", "a", "b", ""]), min_size=rows, max_size=rows),
    "number": st.lists(st.one_of(st.floats(-1e3, 1e3, allow_nan=False).map(lambda v: round(v, 2)), st.none()),
                       min_size=rows, max_size=rows),
    "whole": st.lists(st.integers(0, 5), min_size=rows, max_size=rows),
    "label": st.lists(st.floats(-5, 5, allow_nan=False), min_size=rows, max_size=rows)}).map(pd.DataFrame))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=frames)
def test_a_frame_is_read_exactly_as_the_same_csv_file(frame, tmp_path_factory):
    path = tmp_path_factory.mktemp("csv") / "same.csv"
    frame.to_csv(path, index=False)
    try:
        from_file = read_data(path, "label")
    except AFMError as exc:  # the file is refused: the frame is refused for the same reason
        with pytest.raises(AFMError) as refused:
            read_data(frame, "label")
        assert refused.value.problem == exc.problem if hasattr(exc, "problem") else True
        return
    from_frame = read_data(frame, "label")
    assert from_frame.fingerprint == from_file.fingerprint
    assert from_frame.schema.csv_encoding == from_file.schema.csv_encoding


def test_the_task_is_proposed_from_the_labels(fitted):
    assert fitted.task == "binary" and fitted.checkpoint.schema.csv_encoding["label_classes"] == ["no", "yes"]
    numbers = clicks().assign(clicked=lambda f: np.arange(len(f)) % 7 * 0.5)
    assert afm.fit(numbers, label="clicked", model="fm", preset="quick", epochs=1).task == "regression"


def test_predict_is_the_clis_on_the_same_rows(fitted, tmp_path, capsys):
    frame = clicks(rows=200, seed=1)
    frame.to_csv(tmp_path / "new.csv", index=False)
    checkpoint = fitted.save(tmp_path / "m.safetensors")
    code, _, err = cli(capsys, "predict", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "new.csv"),
                       "--out", str(tmp_path / "scored.csv"))
    assert code == 0, err
    scored = pd.read_csv(tmp_path / "scored.csv")
    probability = fitted.predict(frame)
    np.testing.assert_allclose(probability, scored["probability"], rtol=1e-6)
    assert (fitted.predict(frame.drop(columns="clicked")) == probability).all()  # labels are not needed
    assert (fitted.predict(tmp_path / "new.csv") == probability).all()
    assert (afm.load(checkpoint).predict(frame) == probability).all()


def test_explain_is_afm_pairs_on_the_same_rows(tmp_path, capsys):
    model = afm.fit("sample", preset="quick", epochs=3, device="cpu")
    checkpoint = model.save(tmp_path / "m.safetensors")
    code, out, err = cli(capsys, "pairs", "--checkpoint", str(checkpoint), "--data", "sample", "--out",
                         str(tmp_path / "pairs.csv"))
    assert code == 0, err
    ex = model.explain()
    expected = pd.read_csv(tmp_path / "pairs.csv")
    pd.testing.assert_frame_equal(ex.pairs[["pair", "shapley_abs_mean", "attention_mean"]],
                                  expected[["pair", "shapley_abs_mean", "attention_mean"]], rtol=1e-6)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["verdict"] in ex.summary() and summary["strongest_gate"] in ex.summary()
    assert "gradient boosting" in ex.summary()
    assert ex.summary().startswith("On 256 test rows, the pairs that matter most")


def test_the_figures_are_the_models_own_numbers(fitted):
    ex = fitted.explain()
    waterfall = ex.row(3).data[0]
    assert waterfall.x[-1] == pytest.approx(float(ex.explanation.terms.prediction[3]), abs=1e-5)
    assert sum(waterfall.x[:-1]) == pytest.approx(waterfall.x[-1], abs=1e-4)  # the terms sum to ŷ
    heat = ex.heatmap().data[0].z
    assert np.nanmax(heat) == pytest.approx(ex.pairs["shapley_abs_mean"].max())
    assert len(ex.gates(top=2).data[0].y) == 2
    explained = len(ex.explanation.rows)  # the 60 test rows of 600
    with pytest.raises(AFMError, match=f"row must be 0..{explained - 1}"):
        ex.row(explained)


def test_a_loaded_model_explains_the_rows_it_is_given(fitted, tmp_path):
    loaded = afm.load(fitted.save(tmp_path / "m.safetensors"))
    with pytest.raises(AFMError, match="loaded without its data"):
        loaded.explain()
    frame = clicks(rows=300, seed=2)
    ex = loaded.explain(frame)
    assert len(ex.explanation.rows) == 256 and ex.where == "rows of DataFrame"
    with pytest.raises(AFMError, match="DataFrame, line 0: label in column 'clicked' is empty"):
        loaded.explain(frame.assign(clicked=""))
    assert loaded.evaluate(frame)["rows"] == 300


@pytest.mark.parametrize("call, message", [
    (lambda: afm.fit([1, 2, 3]), "data must be a pandas DataFrame, a dataset name or a path, not list"),
    (lambda: afm.fit(clicks(), label="nope"), "no label column 'nope'"),
    (lambda: afm.fit(clicks(), label="clicked", k=8), "unknown recipe settings ['k']"),
    (lambda: afm.fit(clicks(), label="clicked", model="fm", l2_attention=1.0),
     "l2_attention (--l2-attention) applies to AFM only"),
    (lambda: afm.fit(clicks(), label="clicked", preset="slow"), "preset must be one of quick, paper, fast"),
    (lambda: afm.fit(clicks(), label="clicked", recipe="quick"), "recipe must be an afm.Recipe"),
    (lambda: afm.fit(pd.DataFrame()), "the frame is empty"),
    (lambda: afm.load("/nonexistent/m.safetensors"), "m.safetensors"),
])
def test_mistakes_are_one_line_errors(call, message):
    with pytest.raises(AFMError) as raised:
        call()
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_predict_names_what_is_wrong_with_new_rows(fitted):
    with pytest.raises(AFMError, match="columns \\['site'\\] that the model was trained on are missing"):
        fitted.predict(clicks(rows=20).drop(columns="site"))
    with pytest.raises(AFMError, match="column 'price' holds 'cheap'"):
        fitted.predict(clicks(rows=20).astype({"price": object}).assign(price="cheap"))
    with pytest.raises(AFMError, match="data must be a pandas DataFrame or a file path"):
        fitted.predict(np.zeros((3, 4)))
