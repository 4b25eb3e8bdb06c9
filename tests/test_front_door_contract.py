"""The Python front door's contract on inputs nobody listed (issue #30, item 5), as
tests/test_cli_contract.py holds the command line's: hypothesis draws DataFrames (columns of
numbers, codes, words, NaN, empty strings, odd names; 0..200 rows; any label), files, and keyword
arguments (every recipe setting, in range, out of range and of the wrong type), and calls
`afm.fit`, `afm.data.load_dataset`, `afm.load`, `TrainedModel.predict` / `.explain` and the
scikit-learn estimators. Each call either

- returns a correct result: predictions one per row, finite, probabilities in [0, 1]; a dataset
  whose ids lie in its feature table, values and labels finite; an explanation of every pair; or
- raises an `afm.AFMError` whose message is one line (the estimators: one that is also a
  ValueError, or scikit-learn's own input checks before afm reads anything),

never another exception, and nothing is written outside the test's temporary folders (the
working directory, an empty folder, stays empty). Small data, at most two epochs, k <= 4.
"""

from __future__ import annotations

import contextlib
import math
import os
import traceback
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

import afm
from afm.data import load_dataset
from afm.data.tabular import read_table
from afm.errors import MAX_MESSAGE_CHARS, AFMError
from afm.sklearn import AFMClassifier, AFMRegressor, FMClassifier, FMRegressor, FwFMClassifier, FwFMRegressor
from tests.test_cli_contract import mutate

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_AFM = ROOT / "sample_data" / "sample" / "sample_afm.safetensors"
# Seeded in CI, so a red run names its example and reruns alike; random elsewhere, to find new ones.
CONTRACT = dict(deadline=None, derandomize=bool(os.environ.get("CI")),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])


# ----------------------------------------------------------------------------- the contract
def one_line(error: AFMError) -> None:
    text = str(error)
    assert text and "\n" not in text and len(text) <= MAX_MESSAGE_CHARS + 40, repr(text)
    where = getattr(error, "source", "")
    if currently_in_test_context():
        event(f"{type(error).__name__}: {text.replace(where, Path(where).suffix or 'X') if where else text}"[:60])


@contextlib.contextmanager
def kept(refused: list | None = None):
    """Run a call of the front door: an AFMError is one line (noted in `refused`), warnings are
    allowed; any other exception propagates and fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        except AFMError as error:
            one_line(error)
            if refused is not None:
                refused.append(error)


def nothing_written_here() -> None:
    left = sorted(p.name for p in Path.cwd().iterdir())
    assert left == [], f"written into the working directory: {left}"


@pytest.fixture
def empty_cwd(tmp_path, monkeypatch):
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


# ----------------------------------------------------------------------------- generated frames
ODD_NAMES = ["a", "b", "site", "label", "y", "row", "_afm_row_", " ", "", "a,b", 'q"r', "é", "x\ny", "1", "nan",
             "None", "  lead"]
name_of_column = st.one_of(st.sampled_from(ODD_NAMES), st.text(max_size=5), st.integers(-2, 3), st.floats(0, 2))
odd_cell = st.one_of(st.none(), st.just(np.nan), st.floats(allow_nan=True, allow_infinity=True, width=32),
                     st.integers(-5, 5), st.booleans(), st.text(max_size=4),
                     st.sampled_from(["", "NA", " 1.5", "x,y", 'q"r', "é", "1e40", "007", "7", "\n", "inf"]))
kinds = {
    "numbers": st.floats(-100, 100, allow_nan=False).map(lambda x: round(x, 2)),
    "numbers or NaN": st.one_of(st.floats(-100, 100, allow_nan=False).map(lambda x: round(x, 2)), st.just(np.nan)),
    "codes": st.integers(0, 3),
    "code text": st.sampled_from(["0", "1", "2", "007"]),
    "words": st.sampled_from(["red", "green", "blue"]),
    "words or empty": st.sampled_from(["red", "green", "", None]),
    "anything": odd_cell,
}
label_kinds = {
    "numbers": st.floats(-10, 10, allow_nan=False),
    "two words": st.sampled_from(["yes", "no"]),
    "zero one": st.sampled_from([0, 1]),
    "three words": st.sampled_from(["a", "b", "c"]),
    "anything": odd_cell,
}


@st.composite
def frames(draw, rows: int | None = None) -> pd.DataFrame:
    """A frame of 0..200 rows (mostly 10..60), columns of one kind each (sometimes anything), named
    plainly (sometimes oddly)."""
    if rows is None:
        rows = draw(st.sampled_from(["some", "some", "some", "any"]).flatmap(
            lambda size: st.integers(10, 60) if size == "some" else st.integers(0, 200)))
    if draw(st.sampled_from([True, True, True, False])):
        names = draw(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=2, max_size=5, unique=True))
    else:
        names = draw(st.lists(name_of_column, min_size=1, max_size=5, unique_by=str))
    columns = {}
    for name in names:
        kind = draw(st.sampled_from(["numbers", "codes", "code text", "words"] * 3
                                    + ["numbers or NaN", "words or empty", "anything"]))
        columns[name] = draw(st.lists(kinds[kind], min_size=rows, max_size=rows))
    return pd.DataFrame(columns, index=range(rows)) if rows else pd.DataFrame(columns=names)


@st.composite
def labelled_frames(draw) -> tuple[pd.DataFrame, object]:
    """(frame, label argument): a label column of numbers, two classes or anything, or a label
    argument that names no column, or none."""
    frame = draw(frames())
    how = draw(st.sampled_from(["numbers", "two words", "zero one"] * 4 + ["three words", "anything",
                                                                         "a feature column", "not there", "none"]))
    if how == "a feature column":
        return frame, draw(st.sampled_from(list(frame.columns)))
    if how in ("not there", "none"):
        return frame, "no such column" if how == "not there" else None
    name = draw(st.sampled_from(["label", "y", "clicked", "target"]))
    if name in frame.columns:
        frame = frame.drop(columns=name)
    frame[name] = draw(st.lists(label_kinds[how], min_size=len(frame), max_size=len(frame)))
    return frame, draw(st.sampled_from([name, name, None]))


# ----------------------------------------------------------------------------- generated settings
def values(valid: list, invalid: list):
    """Mostly a valid value, sometimes one out of range or of the wrong type."""
    return st.sampled_from([True, True, True, False]).flatmap(
        lambda good: st.sampled_from(valid if good else invalid))


NON_NUMBERS = ["2", None, [1], float("nan"), float("inf"), True]
SETTINGS = {  # name: (valid values, invalid ones)
    "epochs": ([0, 1, 2], [-1, 10_001, 1.5, *NON_NUMBERS]),
    "embedding_dim": ([1, 2, 4], [0, -3, 4097, 2.0, *NON_NUMBERS]),
    "attention_dim": ([1, 2, 4], [0, 4097, 2.5, *NON_NUMBERS]),
    "lr": ([0.05, 0.2, 1e-4], [0, -1, 100, 1e300, *NON_NUMBERS]),
    "batch_size": ([1, 16, 4096], [0, -1, 1_000_001, 2.5, *NON_NUMBERS]),
    "patience": ([1, 3], [0, -1, 10_001, 1.5, *NON_NUMBERS]),
    "dropout_attention": ([0.0, 0.3], [-0.1, 1.0, 2, *NON_NUMBERS]),
    "dropout_pooled": ([0.0, 0.5, 0.99], [-0.1, 1.0, 1.5, *NON_NUMBERS]),
    "l2_attention": ([0.0, 1.0, 16.0], [-1, 1e7, *NON_NUMBERS]),
    "optimizer": (["adagrad", "adam"], ["sgd", "", 1, None]),
    "seed": ([0, 7, 2**32 - 1], [-1, 2**32, 2**70, 1.5, "0", None]),
    "device": (["cpu"], ["tpu", "cuda:99", "", 0, None, "cpu:0:1"]),
    "pretrain": ([False, True], ["yes", 2, None]),
    "match_fm": ([False], [True, "no", 1]),
    "init_from": ([None], ["nowhere.safetensors", 3, ""]),
    "deterministic": ([False, True], ["on", 2, None]),
    "compile": (["auto", "off"], ["maybe", "", True, None]),  # "on" compiles: minutes on a CPU
    "distinct_pairs": (["auto", "on", "off"], ["sometimes", 1, None]),
    "stream": (["auto", "off", "on"], ["yes", 0, None]),
    "sparse_embeddings": (["auto", "on", "off"], ["both", False, None]),
    "preset": (["quick", "paper", None], ["slow", 3, ""]),
    "task": ([None, "regression", "binary"], ["multiclass", "", 1]),
    "k": ([], [8]),  # not a setting: the flag's name, an error
}


def setting(name: str, hostile: bool = True):
    """A value of a setting: a valid one, or when `hostile` sometimes an invalid one."""
    valid, invalid = SETTINGS[name]
    return values(valid, invalid) if hostile and valid else st.sampled_from(valid or invalid)


@st.composite
def fit_settings(draw) -> dict:
    """Keyword arguments for afm.fit: a tiny number of epochs always, small k and t, and a few
    other settings drawn; in half the examples every value is in range, in the other half any
    may be out of range or of the wrong type."""
    hostile = draw(st.booleans())
    names = sorted(set(SETTINGS) - {"epochs", "embedding_dim", "attention_dim"} - (set() if hostile else {"k"}))
    chosen = draw(st.lists(st.sampled_from(names), max_size=4, unique=True))
    drawn = {name: draw(setting(name, hostile)) for name in ["epochs", "embedding_dim", "attention_dim", *chosen]}
    if drawn.get("pretrain") is True and drawn.get("preset") in (None, "paper"):
        drawn["preset"] = "quick"  # the FM trained first takes the preset's epochs: the quick one's are few
    return drawn


def check_predictions(predicted, rows: int, binary: bool) -> None:
    assert isinstance(predicted, np.ndarray) and predicted.shape == (rows,), (type(predicted), predicted.shape)
    assert np.isfinite(predicted).all(), predicted
    if binary:
        assert ((predicted >= 0) & (predicted <= 1)).all(), predicted


# ----------------------------------------------------------------------------- afm.fit
@settings(max_examples=300, **CONTRACT)
@given(labelled=labelled_frames(), model=values(["fm", "fwfm", "afm"], ["xfm", "", None, 3]),
       split_seed=values([0, 3], [-1, 2**70, "0", 1.5]), settings_=fit_settings(),
       other=st.sampled_from(["frame"] * 8 + ["recipe", "not data"]), data=st.data())
def test_fit_returns_a_model_that_scores_every_row_or_one_line_error(labelled, model, split_seed, settings_, other,
                                                                    data, empty_cwd):
    frame, label = labelled
    settings_ = dict(settings_)
    preset, task = settings_.pop("preset", None), settings_.pop("task", None)
    given_data, recipe_ = frame, None
    if other == "not data":  # not a frame, a name or a path
        given_data = data.draw(st.sampled_from([None, 3, np.zeros((20, 3)), {"a": [1, 2]}, [[1, 2]], b"x.csv"]))
    elif other == "recipe":  # a whole recipe (or something else), the settings on top
        recipe_ = data.draw(st.sampled_from([afm.Recipe(model="fm", embedding_dim=2, epochs=1), "quick", 3]))
    refused = []
    with kept(refused):
        fitted = afm.fit(given_data, label=label, model=model, preset=preset, task=task, split_seed=split_seed,
                         recipe=recipe_, **settings_)
    nothing_written_here()
    if refused:
        return
    event("fitted")
    recipe = fitted.recipe
    assert recipe.model == (model if recipe_ is None else recipe_.model) and recipe.epochs == settings_["epochs"]
    assert recipe.embedding_dim == settings_["embedding_dim"]
    label_name = fitted.checkpoint.schema.csv_encoding["label"]
    unlabelled = frame.drop(columns=[c for c in frame.columns if str(c) == label_name])
    for rows in (frame, unlabelled):  # the rows it was fitted on, with and without labels: every row scored
        with kept(refused):
            predicted = fitted.predict(rows)
        assert not refused, refused
        check_predictions(predicted, len(frame), fitted.task == "binary")
    nothing_written_here()


def test_a_frame_row_of_missing_cells_is_scored_not_dropped(empty_cwd):
    """Found by these tests: a frame's row whose cells were all missing read as a file's blank
    line, so predict returned fewer predictions than rows."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.choice(["x", "y"], 40), "b": rng.normal(size=40).round(2),
                          "label": rng.normal(size=40)})
    model = afm.fit(frame, label="label", model="fm", epochs=1, embedding_dim=2, device="cpu")
    rows = pd.DataFrame({"a": ["x", None, np.nan], "b": [0.5, np.nan, None]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # most of 'a' unseen; one epoch does not beat the start
        assert model.predict(rows).shape == (3,)
        estimator = FMRegressor(epochs=1, embedding_dim=2).fit(frame[["a", "b"]], frame["label"])
    assert estimator.predict(rows).shape == (3,)
    nothing_written_here()


def test_a_cell_holding_a_line_break_stays_in_its_row(empty_cwd):
    """Found by these tests: a frame's cell holding a carriage return was written unquoted and read
    back as the end of its row, so predict returned more predictions than rows."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.choice(["x", "y"], 40), "b": rng.choice(["u", "v"], 40),
                          "label": rng.normal(size=40)})
    model = afm.fit(frame, label="label", model="fm", epochs=1, embedding_dim=2, device="cpu")
    rows = pd.DataFrame({"a": ["x", "\r", "y\r\nz"], "b": ["u", "\n", "v"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert model.predict(rows).shape == (3,)


@pytest.mark.parametrize("call, message", [
    (lambda model, frame: afm.fit(frame, label="label", split_seed=-1), "the split's seed must be a whole number"),
    (lambda model, frame: load_dataset(SAMPLE_AFM.parent / "sample.test.libfm", seed="1"), "split's seed"),
    (lambda model, frame: model.explain(frame, rows=8, seed=-1), "seed must be a whole number in 0..4294967295"),
    (lambda model, frame: model.explain(split="validation"), "split must be one of train, valid, test or all"),
    (lambda model, frame: model.evaluate(split=""), "split must be one of train, valid, test or all"),
    (lambda model, frame: afm.load(SAMPLE_AFM, device="tpu"), "device must be auto, cpu, cuda or cuda:N"),
])
def test_arguments_numpy_or_torch_refused_are_one_line_errors(call, message, empty_cwd):
    """Found by these tests: each of these escaped as numpy's or torch's own exception."""
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"a": rng.choice(["x", "y"], 40), "b": rng.choice(["u", "v"], 40),
                          "label": rng.normal(size=40)})
    model = afm.fit(frame, label="label", model="fm", epochs=1, embedding_dim=2, device="cpu")
    with pytest.raises(AFMError, match=message) as raised:
        call(model, frame)
    one_line(raised.value)


def test_the_command_line_refuses_a_device_that_is_none_in_one_line(tmp_path, capsys):
    from tests.conftest import cli

    rows = SAMPLE_AFM.parent / "sample.test.libfm"
    code, _, err = cli(capsys, "predict", "--checkpoint", str(SAMPLE_AFM), "--data", str(rows), "--out",
                       str(tmp_path / "o.csv"), "--device", "tpu")
    assert code == 2 and err == "afm predict: error: device must be auto, cpu, cuda or cuda:N, got 'tpu'\n"


# ----------------------------------------------------------------------------- load_dataset
def csv_text(draw) -> str:
    frame, _ = draw(labelled_frames())
    return frame.to_csv(index=False)


def libfm_text(draw) -> str:
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    rows, fields = draw(st.integers(0, 80)), draw(st.integers(1, 4))
    clean = draw(st.sampled_from([True, True, True, False]))
    label = draw(st.sampled_from(["{:.3f}", "{:.0f}"] if clean else ["x{:.0f}", "", "{:.3f}"]))
    value = st.sampled_from(["1", "1", "0.5", "-2"] if clean else ["1", "nan", "x", "1e39", ""])
    lines = [" ".join([label.format(rng.normal())] + [f"{f * 5 + int(rng.integers(0, 5))}:{draw(value)}"
                                                       for f in range(fields)]) for _ in range(rows)]
    return "\n".join(lines) + "\n"


@st.composite
def dataset_specs(draw, folder: Path) -> tuple[object, dict]:
    """(spec, keyword arguments) for load_dataset: a generated CSV or libfm file (perhaps damaged),
    a folder of them, a name that is no dataset, or something that is not a path at all."""
    kind = draw(st.sampled_from(["csv"] * 4 + ["libfm"] * 3 + ["folder", "name", "not a path"]))
    kwargs = {}
    if draw(st.booleans()):
        kwargs["seed"] = draw(values([0, 5], [-1, 2**70, "1", 1.5, None]))
    if draw(st.sampled_from([False, False, True])):
        kwargs["label"] = draw(values(["label", "y", "clicked", "target"], ["nope", "", "a", 3, None]))
    if kind == "name":
        return draw(st.sampled_from(["frappe2", "", ".", "..", "no/such/file.csv"])), kwargs
    if kind == "not a path":
        return draw(st.sampled_from([None, 3, b"x.csv", ["a.csv"]])), kwargs
    if kind == "folder":
        spec = folder / "data"
        spec.mkdir()
        for split in draw(st.lists(st.sampled_from(["train", "validation", "test"]), unique=True, max_size=3)):
            (spec / f"d.{split}.libfm").write_bytes(mutate(draw, libfm_text(draw).encode()))
        return spec, kwargs
    spec = folder / draw(st.sampled_from([f"rows.{kind}"] * 3 + [f"rows.{kind.upper()}", "rows.txt"]))
    spec.write_bytes(mutate(draw, (csv_text(draw) if kind == "csv" else libfm_text(draw)).encode()))
    return (spec if draw(st.booleans()) else str(spec)), kwargs


def check_dataset(dataset) -> None:
    schema = dataset.schema
    assert set(dataset.splits) == {"train", "valid", "test"} and len(dataset.train) > 0
    for split in dataset.splits.values():
        ids, x, y = np.asarray(split.feature_ids), np.asarray(split.feature_values), np.asarray(split.labels)
        assert ids.shape == x.shape == (len(split), schema.num_fields) and y.shape == (len(split),)
        assert ((ids >= 0) & (ids < schema.num_features)).all()
        assert np.isfinite(x).all() and np.isfinite(y).all()


@settings(max_examples=300, **CONTRACT)
@given(data=st.data())
def test_load_dataset_reads_a_dataset_or_one_line_error(data, tmp_path_factory, empty_cwd):
    folder = tmp_path_factory.mktemp("files")
    spec, kwargs = data.draw(dataset_specs(folder))
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    refused = []
    with kept(refused):
        dataset = load_dataset(spec, **kwargs)
    if not refused:
        event("read")
        check_dataset(dataset)
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before  # read, never written
    nothing_written_here()


# ----------------------------------------------------------------------------- a model's predict and explain
def clicks(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"site": rng.choice(["news", "shop", "games"], rows),
                          "device": rng.choice(["phone", "laptop"], rows),
                          "hour": rng.integers(0, 24, rows), "price": rng.gamma(2.0, 5.0, rows).round(2)})
    frame["clicked"] = np.where((frame.site == "shop") & (frame.device == "phone") | (rng.random(rows) < 0.2),
                                "yes", "no")
    return frame


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A binary AFM and a regression FwFM on the same click log (two epochs, k = 4)."""
    frame = clicks(300, 0)
    binary = afm.fit(frame, label="clicked", model="afm", preset="quick", epochs=2, embedding_dim=4,
                     attention_dim=4, device="cpu")
    regression = afm.fit(frame.assign(clicked=frame.price * 0.1), label="clicked", model="fwfm", preset="quick",
                         epochs=2, embedding_dim=4, device="cpu")
    return {"binary": binary, "regression": regression}


@st.composite
def new_rows(draw) -> pd.DataFrame:
    """Rows for the click model: its columns (some perhaps missing, renamed or of another kind),
    perhaps extra ones, perhaps its label (of any kind)."""
    rows = draw(st.one_of(st.integers(1, 40), st.integers(0, 200)))
    frame = clicks(rows, draw(st.integers(0, 1000))) if rows else clicks(1, 0).iloc[:0]
    for name in draw(st.lists(st.sampled_from(list(frame.columns)), unique=True, max_size=3)):
        what = draw(st.sampled_from(["drop", "odd cells", "odd cells", "other kind", "NaN"]))
        if what == "drop":
            frame = frame.drop(columns=name)
        elif what == "NaN":
            frame[name] = np.nan
        else:
            kind = "anything" if what == "odd cells" else draw(st.sampled_from(sorted(kinds)))
            frame[name] = draw(st.lists(kinds[kind], min_size=rows, max_size=rows))
    if draw(st.booleans()):
        extra = draw(frames(rows=rows))
        frame = pd.concat([frame, extra.drop(columns=[c for c in extra.columns if c in frame.columns])], axis=1)
    return frame


@settings(max_examples=200, **CONTRACT)
@given(rows=new_rows(), which=st.sampled_from(["binary", "regression"]), allow_unseen=st.booleans(),
       as_file=st.sampled_from([False, False, False, True]))
def test_predict_scores_every_row_or_one_line_error(models, rows, which, allow_unseen, as_file, tmp_path_factory,
                                                    empty_cwd):
    model = models[which]
    data = rows
    if as_file:
        data = tmp_path_factory.mktemp("rows") / "rows.csv"
        rows.to_csv(data, index=False)
    refused = []
    with kept(refused):
        predicted = model.predict(data, allow_unseen=allow_unseen)
    if not refused:
        event("scored")
        scored_rows = len(read_table(data)[0]) if as_file else len(rows)  # a file's blank lines are no rows
        check_predictions(predicted, scored_rows, which == "binary")
    nothing_written_here()


@settings(max_examples=60, **CONTRACT)
@given(rows=new_rows(), which=st.sampled_from(["binary", "regression"]), data=st.data())
def test_explain_explains_every_pair_or_one_line_error(models, rows, which, data, empty_cwd):
    model = models[which]
    kwargs = {}
    if data.draw(st.booleans()):
        kwargs["rows"] = data.draw(values([1, 8, 32], [0, -1, 2**40, 2.5, "8", None]))
    if data.draw(st.booleans()):
        kwargs["coalitions"] = data.draw(values(["absent", "background"], ["none", "", 1]))
    if data.draw(st.booleans()):
        kwargs["seed"] = data.draw(values([0, 9], [-1, 2**70, "0", None]))
    given_rows = data.draw(st.sampled_from([True, True, True, False]))
    if not given_rows:
        kwargs["split"] = data.draw(values(["test", "valid", "train"], ["all", "", None, 0]))
    refused = []
    with kept(refused):
        explanation = model.explain(rows if given_rows else None, **{"rows": 8, **kwargs})
        summary = explanation.summary()
    if not refused:
        event("explained")
        pairs = explanation.pairs
        assert len(pairs) == model.checkpoint.model_config.num_pairs
        numbers = pairs.select_dtypes("number").to_numpy(float)
        assert not np.isinf(numbers).any()
        assert isinstance(summary, str) and summary
    refused = []
    with kept(refused):  # the same rows scored: metrics, or the reason there are none
        metrics = model.evaluate(rows if given_rows else None, **({"split": kwargs["split"]} if not given_rows else {}))
    if not refused:
        event("evaluated")
        assert metrics and not any(isinstance(v, float) and math.isinf(v) for v in metrics.values()), metrics
    nothing_written_here()


@settings(max_examples=40, **CONTRACT)
@given(data=st.data())
def test_load_reads_a_model_or_one_line_error(data, tmp_path_factory, empty_cwd):
    path = tmp_path_factory.mktemp("ckpt") / "m.safetensors"
    path.write_bytes(mutate(data.draw, SAMPLE_AFM.read_bytes()))
    refused = []
    with kept(refused):
        model = afm.load(path, device=data.draw(values(["cpu"], ["tpu", 0])))
    if not refused:
        event("loaded")
        from afm.data import load_dataset as read

        rows = read(ROOT / "sample_data" / "sample" / "sample.test.libfm", schema=model.checkpoint.schema)
        with kept(refused):
            predicted = model.predict(ROOT / "sample_data" / "sample" / "sample.test.libfm")
        if not refused:
            check_predictions(predicted, sum(len(s) for s in rows.splits.values()), model.task == "binary")
    nothing_written_here()


# ----------------------------------------------------------------------------- the estimators
REGRESSORS = (FMRegressor, FwFMRegressor, AFMRegressor)
CLASSIFIERS = (FMClassifier, FwFMClassifier, AFMClassifier)


def from_scikit_learn(error: BaseException) -> bool:
    """scikit-learn's own input checks, raised inside scikit-learn before afm reads anything."""
    frames_ = traceback.extract_tb(error.__traceback__)
    return isinstance(error, (ValueError, TypeError)) and bool(frames_) and (
        f"{os.sep}sklearn{os.sep}" in frames_[-1].filename)


@settings(max_examples=120, **CONTRACT)
@given(frame=frames(), target=st.sampled_from(["numbers", "words", "words", "mixed", "one class"]),
       data=st.data())
def test_estimators_fit_and_predict_or_one_line_error(frame, target, data, empty_cwd):
    rows = len(frame)
    if target == "numbers":
        y = np.array(data.draw(st.lists(st.floats(-1e3, 1e3), min_size=rows, max_size=rows)))
        cls = data.draw(st.sampled_from(REGRESSORS))
    else:
        pool = {"words": ["yes", "no"], "mixed": ["yes", "no", 1], "one class": ["yes"]}[target]
        y = np.array(data.draw(st.lists(st.sampled_from(pool), min_size=rows, max_size=rows)), dtype=object)
        cls = data.draw(st.sampled_from(CLASSIFIERS))
    params = {name: data.draw(setting(name)) for name in ["epochs", "embedding_dim"]}
    others = sorted(set(SETTINGS) - {"epochs", "embedding_dim", "k", "init_from", "match_fm", "task"})
    for name in data.draw(st.lists(st.sampled_from(others), max_size=3, unique=True)):
        params[name] = data.draw(setting(name))
    if data.draw(st.booleans()):
        params["validation_fraction"] = data.draw(values([0.2, 0.5], [0, 1, -0.1, "0.2", None, float("nan")]))
    est = cls(**params)
    try:
        with kept() as _, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(frame, y)
            predicted = est.predict(frame)
            proba = est.predict_proba(frame) if cls in CLASSIFIERS else None
            event("fitted")
            assert predicted.shape == (rows,)
            if proba is not None:
                assert proba.shape == (rows, 2) and np.isfinite(proba).all() and ((proba >= 0) & (proba <= 1)).all()
                assert set(predicted) <= set(est.classes_)
            else:
                assert np.isfinite(predicted).all()
    except (ValueError, TypeError) as error:
        assert from_scikit_learn(error), "".join(traceback.format_exception(error))
        event(f"scikit-learn: {str(error)[:40]}")
    nothing_written_here()


class TwoLines(AFMError):
    def __str__(self) -> str:
        return "first\nsecond"


def test_the_contract_sees_a_broken_promise():
    """The checks themselves: another exception escapes, a two-line AFMError fails."""
    with pytest.raises(KeyError), kept():
        raise KeyError("x")
    with pytest.raises(AssertionError), kept():
        raise TwoLines()
