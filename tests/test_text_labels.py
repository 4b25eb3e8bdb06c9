"""A CSV label of two texts (`yes`/`no`) is read as 0 and 1 for the binary task, by a stated
rule for which is positive; the mapping is saved with the model and used at predict time."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from afm.data import load_csv
from afm.data.tabular import NA_SPELLINGS, NEGATIVE_WORDS, POSITIVE_WORDS, TabularEncoder, label_classes, parse_numbers
from afm.errors import DataError
from tests.conftest import cli

WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC_-", min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(first=WORDS, second=WORDS, swap=st.booleans())
def test_two_texts_are_classes_by_the_stated_rule(first, second, swap):
    cells = pd.Series([first, second] * 3 if not swap else [second, first] * 3, dtype=object)
    found = label_classes(cells)
    numbers = ~np.isnan(parse_numbers(pd.Series([first, second], dtype=object)))  # `inf` is one
    if first == second or first in NA_SPELLINGS or second in NA_SPELLINGS or numbers.any():
        assert found is None
        return
    assert set(found) == {first, second}
    low, high = sorted((first, second))
    if low.lower() in POSITIVE_WORDS and high.lower() in NEGATIVE_WORDS:
        assert found == (high, low)
    else:
        assert found == (low, high)


@pytest.mark.parametrize("cells, expected", [
    (["yes", "no"], ("no", "yes")), (["Yes", "No"], ("No", "Yes")), (["true", "false"], ("false", "true")),
    (["Y", "N"], ("N", "Y")), (["pos", "neg"], ("neg", "pos")), (["dog", "cat"], ("cat", "dog")),
    (["1", "oops"], None),  # a number and a word: a numeric label with a stray word, an error later
    (["0", "1"], None), (["-1", "1.0"], None),  # numbers stay numbers
    (["a", "b", "c"], None), (["yes", "yes"], None), (["yes", ""], None),  # an empty cell is no class
])
def test_the_classes_of_listed_columns(cells, expected):
    assert label_classes(pd.Series(cells * 2, dtype=object)) == expected


def write(tmp_path, name, labels, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"city": rng.choice(list("abc"), len(labels)), "device": rng.choice(list("xy"), len(labels)),
                          "bought": labels})
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_a_csv_with_yes_and_no_trains_the_binary_task_and_predicts_with_the_saved_mapping(tmp_path, capsys):
    rng = np.random.default_rng(1)
    labels = np.where(rng.random(300) < 0.4, "yes", "no")
    data = write(tmp_path, "shop.csv", labels)
    dataset = load_csv(data)
    assert dataset.label_classes == ("no", "yes") and dataset.is_binary
    every = np.concatenate([s.labels for s in dataset.splits.values()])
    assert sorted(every.tolist()) == sorted((labels == "yes").astype(float).tolist())  # yes is 1
    code, out, err = cli(capsys, "info", "--data", str(data))
    assert code == 0 and json.loads(out)["label_classes"] == {"no": 0, "yes": 1}
    model = tmp_path / "m.safetensors"
    code, out, err = cli(capsys, "train", "--data", str(data), "--task", "binary", "--model", "fm", "--k", "4",
                         "--epochs", "2", "--out", str(model))
    assert code == 0, err
    rows = write(tmp_path, "new.csv", ["yes", "no", "no", "yes"], seed=5)
    code, out, err = cli(capsys, "predict", "--checkpoint", str(model), "--data", str(rows), "--out",
                         str(tmp_path / "p.csv"), "--quiet")
    assert code == 0 and json.loads(out)["labelled"], err
    assert pd.read_csv(tmp_path / "p.csv")["label"].tolist() == [1.0, 0.0, 0.0, 1.0]
    write(tmp_path, "odd.csv", ["yes", "no", "maybe", "yes"], seed=5)
    code, out, err = cli(capsys, "predict", "--checkpoint", str(model), "--data", str(tmp_path / "odd.csv"), "--out",
                         str(tmp_path / "p2.csv"), "--quiet")
    assert code == 2 and "odd.csv, line 4: label in column 'bought' holds 'maybe', neither of its two classes 'no' " \
                          "(0) and 'yes' (1)" in err


def test_a_text_label_of_more_than_two_values_says_why_it_is_refused(tmp_path):
    path = write(tmp_path, "three.csv", ["good", "bad", "fair"] * 20)
    with pytest.raises(DataError, match="three.csv, line 2: label in column 'bought' 'good' is not a finite number "
                                        r"\(a label of text must take exactly two values.*holds 3 different ones\)"):
        load_csv(path)


@pytest.mark.parametrize("classes", [["yes"], ["yes", "yes"], ["yes", 1], "yes,no", ["", "no"], ["x" * 1001, "y"]])
def test_a_saved_mapping_that_is_not_two_texts_is_refused(tmp_path, classes):
    encoder = load_csv(write(tmp_path, "shop.csv", ["yes", "no"] * 30)).schema.csv_encoding
    TabularEncoder.from_json(encoder)
    with pytest.raises(DataError, match="label_classes must be two different texts"):
        TabularEncoder.from_json({**encoder, "label_classes": classes})


def test_the_classes_do_not_depend_on_the_rows_order(tmp_path):
    rng = np.random.default_rng(4)
    labels = np.where(rng.random(200) < 0.3, "dog", "cat")
    forward = load_csv(write(tmp_path, "a.csv", labels)).label_classes
    backward = load_csv(write(tmp_path, "b.csv", labels[::-1])).label_classes
    assert forward == backward == ("cat", "dog")
