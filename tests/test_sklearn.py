"""afm.sklearn: the six estimators pass scikit-learn's estimator checks and work in
cross_val_score, GridSearchCV and pipelines; their parameters are the Recipe's fields (so the two
cannot drift); pair_importances_ finds a planted pair and is `afm pairs`' mean |SII|; classes are
any two labels; and on frames nobody listed (hypothesis) fit either works or raises a one-line
error that is both an AFMError and a ValueError, never another exception."""

from __future__ import annotations

import inspect
import pickle
import warnings
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import afm.sklearn as afm_sklearn
from afm.analysis.pairs import explain_pairs
from afm.analysis.shapley import MAX_FIELDS
from afm.data import Split
from afm.data.tabular import FRAME_SOURCE, TabularEncoder, frame_text
from afm.errors import AFMError
from afm.recipe import Recipe, preset
from afm.sklearn import (
    AFMClassifier,
    AFMRegressor,
    FMClassifier,
    FMRegressor,
    FwFMClassifier,
    FwFMRegressor,
)

REGRESSORS = (FMRegressor, FwFMRegressor, AFMRegressor)
CLASSIFIERS = (FMClassifier, FwFMClassifier, AFMClassifier)
ESTIMATORS = REGRESSORS + CLASSIFIERS
MODEL = {FMRegressor: "fm", FMClassifier: "fm", FwFMRegressor: "fwfm", FwFMClassifier: "fwfm",
         AFMRegressor: "afm", AFMClassifier: "afm"}
QUIET = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # a few epochs on noise
SMALL = {"epochs": 3, "embedding_dim": 4, "attention_dim": 4, "device": "cpu"}
# Every check passes, tiny data included: scikit-learn's checks that fit 1 sample or 1 feature
# accept the one-line errors ("n_samples = 1", "n_features = 1"), and NaN is a missing cell
# (tag allow_nan), as in a CSV file.
EXPECTED_FAILED: dict[str, str] = {}


def one_line_error(error: BaseException) -> None:
    assert isinstance(error, AFMError) and isinstance(error, ValueError), type(error)
    assert "\n" not in str(error) and str(error)


def planted_frame(rows: int = 1500, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Four categorical fields and a numeric one; the label is a pure `a x b` interaction (no main
    effects) plus a little of `num` and noise."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.choice([f"{name}{i}" for i in range(4)], rows) for name in "abcd"})
    frame["num"] = rng.normal(size=rows).round(3)
    table = rng.normal(size=(4, 4))
    table -= table.mean(0, keepdims=True)
    table -= table.mean(1, keepdims=True)
    a = frame["a"].str[1].astype(int).to_numpy()
    b = frame["b"].str[1].astype(int).to_numpy()
    y = 2 * table[a, b] / table.std() + 0.2 * frame["num"].to_numpy() + 0.1 * rng.normal(size=rows)
    return frame, y


# ----------------------------------------------------------------------------- parameters
def test_parameters_are_the_recipe_fields():
    """The base __init__ names every Recipe field but the stated exclusions, in the Recipe's
    order, then preset and validation_fraction; the six estimators share it."""
    excluded = {"model", "task", "preset", "init_from", "match_fm"}
    names = [name for name in inspect.signature(afm_sklearn._AFMEstimator.__init__).parameters if name != "self"]
    assert names == [f.name for f in fields(Recipe) if f.name not in excluded] + ["preset", "validation_fraction"]
    for cls in ESTIMATORS:
        assert list(cls().get_params()) == sorted(names)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_defaults_are_the_quick_preset(cls):
    task = "binary" if cls in CLASSIFIERS else "regression"
    assert cls().recipe() == preset("quick", MODEL[cls], task=task)
    assert cls(preset=None).recipe() == Recipe(model=MODEL[cls], task=task)
    assert cls(lr=0.01, epochs=7, seed=3).recipe() == preset("quick", MODEL[cls], task=task, lr=0.01, epochs=7,
                                                             seed=3)


@pytest.mark.parametrize("settings", [{"lr": -1}, {"optimizer": "sgd"}, {"preset": "nope"}, {"preset": 3},
                                      {"validation_fraction": 1.5}, {"validation_fraction": 0},
                                      {"epochs": "many"}])
def test_bad_parameters_are_one_line_value_errors(settings):
    frame, y = planted_frame(40)
    with pytest.raises(ValueError) as caught:
        FwFMRegressor(**{**SMALL, **settings}).fit(frame, y)
    one_line_error(caught.value)


def test_afm_only_settings_are_refused_for_fm():
    frame, y = planted_frame(40)
    with pytest.raises(ValueError, match="AFM only") as caught:
        FMRegressor(pretrain=True, **SMALL).fit(frame, y)
    one_line_error(caught.value)


# ----------------------------------------------------------------------------- scikit-learn's checks
@pytest.mark.slow
@parametrize_with_checks([cls(**SMALL) for cls in ESTIMATORS], expected_failed_checks=lambda _: EXPECTED_FAILED)
def test_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 3 epochs on the checks' random data
        warnings.simplefilter("ignore", RuntimeWarning)  # scikit-learn's cast of a NaN target in its own check
        check(estimator)


# ----------------------------------------------------------------------------- model selection and pipelines
def test_cross_val_score():
    frame, y = planted_frame(600)
    scores = cross_val_score(FwFMRegressor(epochs=20, device="cpu"), frame, y, cv=3)
    assert scores.shape == (3,) and (scores > 0.8).all(), scores
    accuracy = cross_val_score(AFMClassifier(epochs=20, device="cpu"), frame, np.where(y > 0, "yes", "no"), cv=3)
    assert (accuracy > 0.8).all(), accuracy


@QUIET
def test_grid_search():
    frame, y = planted_frame(400)
    search = GridSearchCV(FMRegressor(epochs=10, device="cpu"), {"embedding_dim": [2, 8], "lr": [0.05, 0.2]}, cv=2)
    search.fit(frame, y)
    assert set(search.best_params_) == {"embedding_dim", "lr"}
    assert search.best_estimator_.checkpoint_.recipe.embedding_dim == search.best_params_["embedding_dim"]
    assert search.score(frame, y) > 0.8


def test_pipelines():
    frame, y = planted_frame(600)
    labels = np.where(y > 0, 1, 0)
    scaled = ColumnTransformer([("num", StandardScaler(), ["num"])], remainder="passthrough",
                               verbose_feature_names_out=False)
    as_frame = Pipeline([("scale", clone(scaled).set_output(transform="pandas")),
                         ("clf", FwFMClassifier(epochs=20, device="cpu"))]).fit(frame, labels)
    assert list(as_frame[-1].feature_names_in_) == ["num", "a", "b", "c", "d"]
    assert as_frame.score(frame, labels) > 0.8
    as_array = make_pipeline(scaled, FwFMClassifier(epochs=20, device="cpu")).fit(frame, labels)  # object array
    assert as_array[-1].n_features_in_ == 5 and not hasattr(as_array[-1], "feature_names_in_")
    assert as_array.score(frame, labels) > 0.8
    squared = make_pipeline(FunctionTransformer(lambda f: f.assign(num2=f["num"] ** 2)), AFMRegressor(**SMALL))
    assert squared.fit(frame, y).predict(frame).shape == (600,)


# ----------------------------------------------------------------------------- what fit leaves
@pytest.mark.parametrize("cls", REGRESSORS)
def test_pair_importances_find_the_planted_pair(cls):
    frame, y = planted_frame()
    est = cls(device="cpu").fit(frame, y)
    importances = est.pair_importances_
    assert isinstance(importances, pd.Series) and len(importances) == 10
    assert importances.index[0] == "a x b", importances
    assert importances.iloc[0] > 3 * importances.iloc[1]
    assert importances.is_monotonic_decreasing and importances.notna().all()


def test_pair_importances_are_explain_pairs_mean_abs_sii():
    frame, y = planted_frame(300)
    est = AFMRegressor(**SMALL).fit(frame, y)
    checkpoint = est.checkpoint_
    cells, lines = frame_text(frame.iloc[:100])
    ids, values = TabularEncoder.of(checkpoint.schema).transform(cells, FRAME_SOURCE, lines)
    rows = Split(ids, values, np.zeros(100, np.float32))
    table = explain_pairs(checkpoint.model, rows, checkpoint.schema, rows).table.set_index("pair")
    ours = afm_sklearn._pair_importances(checkpoint, rows)
    np.testing.assert_allclose(ours.to_numpy(), table.loc[ours.index, "shapley_abs_mean"].to_numpy(), rtol=1e-5)


@QUIET
def test_pair_importances_are_nan_above_the_exact_limit():
    rng = np.random.default_rng(0)
    fields_ = MAX_FIELDS + 1
    frame = pd.DataFrame({f"f{i}": rng.choice(["p", "q"], 30) for i in range(fields_)})
    est = FMRegressor(**SMALL).fit(frame, rng.normal(size=30))
    assert len(est.pair_importances_) == fields_ * (fields_ - 1) // 2
    assert est.pair_importances_.isna().all()


@pytest.mark.parametrize("classes", [("no", "yes"), ("a", "b"), (3, 7), (-1, 1), (False, True)])
def test_any_two_labels_are_the_classes(classes):
    frame, y = planted_frame(500)
    labels = np.where(y > 0, classes[1], classes[0])
    est = FwFMClassifier(epochs=20, device="cpu").fit(frame, labels)
    assert list(est.classes_) == sorted(classes)
    predicted = est.predict(frame)
    assert set(predicted) <= set(classes) and (predicted == labels).mean() > 0.8
    proba = est.predict_proba(frame)
    assert proba.shape == (500, 2)
    np.testing.assert_allclose(proba.sum(1), 1)
    np.testing.assert_array_equal(predicted, est.classes_[proba.argmax(1)])
    assert (proba[labels == est.classes_[1], 1].mean() > 0.7)
    np.testing.assert_array_equal(est.decision_function(frame) > 0, proba[:, 1] > 0.5)


@QUIET
def test_arrays_and_frames():
    """Arrays name their columns x0..; a model fitted on a frame predicts an array positionally
    (scikit-learn warns); pickles round-trip; predicting before fit is NotFittedError."""
    frame, y = planted_frame(300)
    with pytest.raises(NotFittedError):
        FMRegressor().predict(frame)
    est = FMRegressor(**SMALL).fit(frame, y)
    assert list(est.feature_names_in_) == list(frame.columns) and est.n_features_in_ == 5
    with pytest.warns(UserWarning, match="feature names"):
        from_array = est.predict(frame.to_numpy())
    np.testing.assert_allclose(from_array, est.predict(frame), rtol=1e-6)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(frame), est.predict(frame))
    numeric = FMRegressor(**SMALL).fit(frame[["num"]].assign(other=frame["num"] ** 2).to_numpy(), y)
    assert numeric.checkpoint_.schema.field_names == ("x0", "x1")
    assert [c["kind"] for c in numeric.checkpoint_.schema.csv_encoding["columns"]] == ["numeric", "numeric"]


@pytest.mark.parametrize(("X", "y", "match"), [
    (np.zeros((30, 1)), np.arange(30.0), "n_features = 1"),
    (np.random.default_rng(0).normal(size=(5, 3)), np.arange(5.0), "n_samples = 5"),
])
def test_too_little_data(X, y, match):
    for cls in (FMRegressor, AFMRegressor):
        with pytest.raises(ValueError, match=match) as caught:
            cls(**SMALL).fit(X, y)
        one_line_error(caught.value)


def test_classifier_targets():
    frame, y = planted_frame(60)
    for labels, match in [(np.arange(60) % 3, "Only binary classification is supported"),
                          (np.zeros(60), "one class"), (y, "Unknown label type")]:
        with pytest.raises(ValueError, match=match):
            FwFMClassifier(**SMALL).fit(frame, labels)
    with pytest.raises(ValueError, match="Only binary") as caught:
        FwFMClassifier(**SMALL).fit(frame, np.array(["a", "b", "c"])[np.arange(60) % 3])
    one_line_error(caught.value)


# ----------------------------------------------------------------------------- frames nobody listed
odd_cell = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-5, 5),
                    st.sampled_from(["a", "b", "c", "", "NA", " 1.5", "x,y", 'q"r', "é", "1e40"]), st.booleans())
column_cells = {  # a column of one kind, as most are; or of anything
    "numbers": st.floats(-100, 100, allow_nan=False).map(lambda x: round(x, 2)),
    "codes": st.integers(0, 3),
    "words": st.sampled_from(["red", "green", "blue"]),
    "anything": odd_cell,
}


@st.composite
def frames(draw):
    rows = draw(st.one_of(st.integers(10, 40), st.integers(0, 40)))
    width = draw(st.one_of(st.integers(2, 4), st.integers(1, 4)))
    names = draw(st.lists(st.one_of(st.sampled_from(["a", "b", "c", "d", "label"]),
                                    st.text(st.characters(codec="utf-8"), max_size=4)),
                          min_size=width, max_size=width, unique=True))
    columns = {}
    for name in names:
        kind = draw(st.sampled_from(["numbers", "codes", "words"] * 3 + ["anything"]))
        columns[name] = draw(st.lists(column_cells[kind], min_size=rows, max_size=rows))
    return pd.DataFrame(columns, index=range(rows)) if rows else pd.DataFrame(columns=names)


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(frame=frames(), target=st.sampled_from(["numbers", "numbers", "words", "words", "mixed"]), data=st.data())
def test_fit_works_or_one_line_error(frame, target, data):
    rows = len(frame)
    if target == "numbers":
        y = np.array(data.draw(st.lists(st.floats(-1e3, 1e3), min_size=rows, max_size=rows)))
        cls = data.draw(st.sampled_from(REGRESSORS))
    else:
        pool = ["yes", "no"] if target == "words" else ["yes", "no", 1]
        y = np.array(data.draw(st.lists(st.sampled_from(pool), min_size=rows, max_size=rows)), dtype=object)
        cls = data.draw(st.sampled_from(CLASSIFIERS))
    est = cls(epochs=1, embedding_dim=2, attention_dim=2, device="cpu")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(frame, y)
    except ValueError as error:
        event(f"error: {str(error)[:40]}")
        if isinstance(error, AFMError):
            one_line_error(error)
        else:  # scikit-learn's own input checks (its messages may span lines), before afm reads anything
            assert type(error).__module__.startswith(("sklearn", "builtins")), type(error)
        return
    event("fitted")
    predicted = est.predict(frame)
    assert predicted.shape == (rows,)
    if cls in REGRESSORS:
        assert np.isfinite(predicted).all()
    else:
        assert set(predicted) <= set(est.classes_)
