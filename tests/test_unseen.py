"""Cells a CSV model did not see in training (issue #30, item 3): a column read differently at
predict time (numbers where the model learned codes) is counted per field in `afm predict`'s JSON
(`unseen_cells`), a mostly unseen field is a one-line warning, a wholly unseen one an error unless
`--allow-unseen`; the Python front door says the same."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import afm
from afm.api import read_data
from afm.data.splits import split_indices
from afm.data.stream import iter_rows
from afm.data.tabular import TabularEncoder, frame_text
from afm.errors import DataError, UnseenValuesWarning
from afm.predict import UnseenCells, unseen_cells, unseen_warnings
from tests.conftest import cli

ROWS = 200


def codes(rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    """A table whose field 'level' holds codes 0, 1, 2 (a one-hot field), with a numeric label."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"level": rng.choice(["0", "1", "2"], rows), "site": rng.choice(["news", "shop"], rows),
                         "device": rng.choice(["phone", "laptop", "tv"], rows), "label": rng.normal(size=rows)})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(folder, checkpoint) of an FM trained on `codes()`: one epoch, k = 2."""
    folder = tmp_path_factory.mktemp("unseen")
    codes().to_csv(folder / "train.csv", index=False)
    model = folder / "m.safetensors"
    from afm.cli import main

    assert main(["train", "--data", str(folder / "train.csv"), "--model", "fm", "--k", "2", "--epochs", "1",
                 "--preset", "quick", "--out", str(model), "--device", "cpu"]) == 0
    return folder, model


def test_a_code_column_scored_as_numbers_is_an_error_unless_allowed(trained, capsys):
    folder, model = trained
    rows = codes(seed=1).drop(columns="label")
    rows["level"] = np.where(np.arange(ROWS) % 2, "0.5", "1.5")  # the file: numbers, not codes
    rows.to_csv(folder / "numbers.csv", index=False)
    out = folder / "scored.csv"
    code, stdout, err = cli(capsys, "predict", "--checkpoint", str(model), "--data", str(folder / "numbers.csv"),
                            "--out", str(out), "--quiet")
    assert code == 2 and stdout == "" and not out.exists()
    assert err.count("\n") == 1 and "numbers.csv: field 'level': none of the 200 cells holds a value seen in " \
                                   "training" in err and "--allow-unseen" in err, err
    code, stdout, err = cli(capsys, "predict", "--checkpoint", str(model), "--data", str(folder / "numbers.csv"),
                            "--out", str(out), "--quiet", "--allow-unseen")
    assert code == 0, err
    assert err == ("afm predict: warning: field 'level': 200 of 200 cells (100 %) were not seen in training and "
                   "count as unknown\n")
    summary = json.loads(stdout)
    assert summary["unseen_cells"] == {"level": 200} and summary["rows"] == 200
    assert len(pd.read_csv(out)) == 200


def test_a_half_unseen_field_is_a_warning_and_a_count_not_an_error(trained, capsys):
    folder, model = trained
    rows = codes(seed=2).drop(columns="label")
    rows.loc[:119, "device"] = "watch"  # 120 of 200: more than half
    rows.loc[:9, "site"] = "blog"  # 10 of 200: counted, not worth a warning
    rows.to_csv(folder / "half.csv", index=False)
    code, stdout, err = cli(capsys, "predict", "--checkpoint", str(model), "--data", str(folder / "half.csv"),
                            "--out", str(folder / "half-scored.csv"), "--chunk-rows", "7")
    assert code == 0, err
    warned = [line for line in err.splitlines() if "warning" in line]
    assert warned == ["afm predict: warning: field 'device': 120 of 200 cells (60 %) were not seen in training "
                      "and count as unknown"]
    assert json.loads(stdout)["unseen_cells"] == {"site": 10, "device": 120}
    code, stdout, err = cli(capsys, "predict", "--checkpoint", str(model), "--data", str(folder / "train.csv"),
                            "--out", str(folder / "again.csv"), "--quiet")
    assert code == 0 and err == "" and json.loads(stdout)["unseen_cells"] == {}


def test_a_field_of_one_training_value_wholly_unseen_is_only_a_warning():
    schema = read_data(codes().assign(site="news"), "label").schema  # 'site' kept one value
    tally = UnseenCells(schema)
    tally.add(np.tile(tally.unknown.clip(0), (5, 1)))  # every categorical cell unknown
    with pytest.raises(DataError, match="rows.csv: fields 'level', 'device': none of the 5 cells"):
        tally.check("rows.csv")  # 'site' is not named: one value is no vocabulary to miss
    assert tally.per_field() == {"level": 5, "site": 5, "device": 5}
    assert len(unseen_warnings(tally.per_field(), tally.rows)) == 3


def test_the_front_door_warns_and_refuses_as_the_command_does(trained):
    model = afm.load(trained[1])
    rows = codes(seed=3).drop(columns="label")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rows like the training rows: no warning
        assert model.predict(rows).shape == (ROWS,)
    rows.loc[:149, "device"] = "watch"
    with pytest.warns(UnseenValuesWarning, match="field 'device': 150 of 200 cells \\(75 %\\) were not seen"):
        model.predict(rows)
    assert model.unseen_cells(rows) == {"device": 150}
    rows["level"] = "1.5"
    with pytest.raises(DataError, match="DataFrame: field 'level': none of the 200 cells .*allow_unseen=True"):
        model.predict(rows)
    with pytest.warns(UnseenValuesWarning) as said:
        scored = model.predict(rows, allow_unseen=True)
    assert np.isfinite(scored).all() and [str(w.message)[:13] for w in said] == ["field 'level'", "field 'device"]


CELLS = ["a", "b", "c", "7", "007", "", "NA", "x y"]  # codes and words, as written (007 is not 7)


@st.composite
def tables(draw):
    """(training rows, new rows): columns of codes and words drawn from CELLS, text as written."""
    fields = draw(st.integers(2, 4))

    def table(rows: int) -> pd.DataFrame:
        return pd.DataFrame({f"f{i}": draw(st.lists(st.sampled_from(CELLS), min_size=rows, max_size=rows))
                             for i in range(fields)})

    train = table(draw(st.integers(10, 40))).assign(label=lambda f: np.arange(len(f)) % 3 * 0.5)
    return train, table(draw(st.integers(1, 60)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=tables(), chunk_rows=st.integers(1, 70))
def test_the_counts_are_the_cells_not_kept_from_training_by_brute_force(pair, chunk_rows, tmp_path_factory):
    train, new = pair
    schema = read_data(train, "label").schema
    kept_rows = split_indices(len(train), 0)["train"]  # read_data splits a frame 70/20/10 with seed 0

    def brute_force(rows: pd.DataFrame) -> dict[str, int]:
        expected = {}
        for name in rows.columns:  # kept: a value met at least twice (min_count) in the training rows
            seen = train[name].iloc[kept_rows].replace("", "<missing>").value_counts()
            kept = set(seen[seen >= 2].index)
            count = sum((cell or "<missing>") not in kept for cell in rows[name])  # an empty cell: <missing>
            if count:
                expected[name] = count
        return expected

    path = tmp_path_factory.mktemp("rows") / "new.csv"
    path.write_text("\n".join([",".join(new.columns)] + [",".join(row) for row in new.itertuples(index=False)])
                    + "\n")
    tally = UnseenCells(schema)
    for chunk in iter_rows(path, schema, chunk_rows=chunk_rows):  # the streamed path, chunk by chunk
        tally.add(chunk.feature_ids)
    in_file = new[(new != "").any(axis=1)]  # a file skips a line of empty cells as blank
    assert tally.rows == len(in_file) and tally.per_field() == brute_force(in_file)
    cells, lines = frame_text(new)  # the pure function on a frame's rows, encoded at once: every row
    ids, _ = TabularEncoder.of(schema).transform(cells, "new", lines)
    assert len(ids) == len(new) and unseen_cells(schema, ids) == brute_force(new)
