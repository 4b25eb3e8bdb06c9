"""afm.analysis.pairs: the one entry point of every pair view (the page, `afm pairs`, the report)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from afm.analysis.pairs import PAIR_COLUMNS, explain_pairs, label_gates_of, sample_rows, shapley_row_terms
from afm.checkpoint import load_checkpoint
from afm.data import load_dataset
from afm.errors import ConfigError
from afm.samples.checkpoints import sample_checkpoint_path


@pytest.fixture(scope="module")
def sample():
    return load_dataset("sample")


@pytest.mark.parametrize("model", ["fm", "fwfm", "afm"])
def test_every_view_per_pair_and_a_rows_parts_sum_to_its_prediction(sample, model):
    checkpoint = load_checkpoint(sample_checkpoint_path(model))
    result = explain_pairs(checkpoint.model, sample.test, sample.schema, sample.train, rows=40)
    assert list(result.table.columns) == list(PAIR_COLUMNS) and len(result.table) == 45
    assert result.table["shapley_abs_mean"].is_monotonic_decreasing
    assert len(result.rows) == 40 and np.all(np.diff(result.rows) > 0)
    if model == "fm":  # under absent coalitions FM's pair terms are its Shapley-Taylor shares, exactly
        pd.testing.assert_series_equal(result.table["taylor_mean"], result.table["contribution_mean"],
                                       check_names=False, atol=1e-6)
    parts = shapley_row_terms(result.shapley, 3, sample.schema, sample.test.feature_ids[result.rows[3]])
    assert np.isclose(parts["value"].sum(), float(result.terms.prediction[3]), atol=1e-5)


def test_the_label_gates_a_caller_keeps_give_the_same_explanation(sample):
    checkpoint = load_checkpoint(sample_checkpoint_path("afm"))
    fresh = explain_pairs(checkpoint.model, sample.test, sample.schema, sample.train, rows=32)
    kept = explain_pairs(checkpoint.model, sample.test, sample.schema, sample.train, rows=32,
                         label_gates=label_gates_of(sample.train, sample.schema))
    pd.testing.assert_frame_equal(fresh.gates, kept.gates)
    pd.testing.assert_frame_equal(fresh.table, kept.table)
    assert fresh.strongest_gate.pair == "user x item" and fresh.strongest_gate.gate == "device"


def test_rows_are_seeded_and_bounded(sample):
    assert np.array_equal(sample_rows(sample.test, 50, seed=1), sample_rows(sample.test, 50, seed=1))
    assert len(sample_rows(sample.test, 10**6)) == len(sample.test)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError):
            sample_rows(sample.test, bad)
    with pytest.raises(ConfigError, match="coalitions"):
        explain_pairs(load_checkpoint(sample_checkpoint_path("fm")).model, sample.test, sample.schema, sample.train,
                      coalitions="permuted")


def test_a_reordered_copy_of_the_training_rows_gives_the_same_label_gates(sample):
    """The label gates are a property of the data, not of its row order."""
    from afm.data import Split

    order = np.random.default_rng(4).permutation(len(sample.train))
    shuffled = Split(sample.train.feature_ids[order], sample.train.feature_values[order], sample.train.labels[order])
    first, second = label_gates_of(sample.train, sample.schema), label_gates_of(shuffled, sample.schema)
    np.testing.assert_allclose(first.strength, second.strength, rtol=1e-9, atol=1e-12, equal_nan=True)
