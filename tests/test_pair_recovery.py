"""Ground truth from data nobody designed by hand (issue #18, item 6): `afm.samples.random_planted`
draws the fields, cardinalities, planted pairs, gate and strengths from a seed. The fast tests
check the generator; the slow one trains FM and AFM on 5 seeds and asserts what
`bench/pair_recovery.py` found on every run, with margin (docs/explain.md, "Recovering planted pairs")."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from afm.analysis.gates import data_gates, gate_table, strongest_gate
from afm.analysis.pairs import explain_pairs
from afm.fitting import fit_recipe
from afm.recipe import preset
from afm.samples.random_planted import CARDINALITY, FIELDS, NOISE, planted_dataset


def test_the_generator_is_deterministic_and_splits_70_20_10():
    first, truth = planted_dataset(3, rows=2000)
    again, same = planted_dataset(3, rows=2000)
    for name, split in first.splits.items():
        np.testing.assert_array_equal(split.feature_ids, again.splits[name].feature_ids)
        np.testing.assert_array_equal(split.labels, again.splits[name].labels)
    assert truth.describe() == same.describe() and first.schema == again.schema
    assert [len(first.splits[name]) for name in ("train", "valid", "test")] == [1400, 400, 200]
    assert (first.train.feature_values == 1).all() and first.name == "planted-3"


def test_the_structure_is_random_across_seeds():
    truths = [planted_dataset(seed, rows=200)[1] for seed in range(10)]
    shapes = {(t.cardinalities, t.always_on, t.gated, t.gate) for t in truths}
    assert len(shapes) == 10  # every seed draws its own data
    assert len({len(t.fields) for t in truths}) >= 3 and len({t.gated for t in truths}) >= 5
    for t in truths:
        assert FIELDS[0] <= len(t.fields) <= FIELDS[1]
        assert all(CARDINALITY[0] <= c <= CARDINALITY[1] for c in t.cardinalities)
        assert t.always_on != t.gated and t.gate not in t.gated.split(" x ") + t.always_on.split(" x ")


@pytest.mark.parametrize("seed", range(5))
def test_the_truth_makes_the_labels(seed):
    data, truth = planted_dataset(seed)
    schema = data.schema
    assert set(truth.pairs) <= set(schema.pair_names())
    assert schema.feature_label(truth.gate_value_id) == f"{truth.gate}={truth.gate_value}"
    for split in data.splits.values():  # the labels are the signal plus noise of the stated size
        residual = split.labels - truth.signal(split.feature_ids)
        assert abs(residual.mean()) < 0.1 and residual.std() == pytest.approx(NOISE, rel=0.1)
    for pair, table in truth.tables.items():  # pure interactions of the stated RMS
        np.testing.assert_allclose(table.mean(0), 0.0, atol=1e-12)
        np.testing.assert_allclose(table.mean(1), 0.0, atol=1e-12)
        assert table.std() == pytest.approx(truth.strengths[pair])
    # The gated pair acts where the gate holds its value, with its stated strength, and nowhere else.
    ids = data.train.feature_ids
    without = dataclasses.replace(truth, tables={p: t for p, t in truth.tables.items() if p != truth.gated})
    gated = truth.signal(ids) - without.signal(ids)  # (N,)
    open_ = ids[:, schema.field_names.index(truth.gate)] == truth.gate_value_id  # (N,)
    assert (gated[~open_] == 0).all() and gated[open_].std() == pytest.approx(truth.strengths[truth.gated], rel=0.15)
    # Model-free, the gate table of the labels names the planted pair, gate and value, well ahead.
    table = gate_table(data_gates(data.train, schema, min_support=20))
    choice = strongest_gate(table, schema)
    assert (choice.pair, choice.gate) == (truth.gated, truth.gate)
    assert list(choice.values.values())[0] == truth.gate_value_id
    assert table.loc[0, "data_strength"] > 1.4 * table.loc[1, "data_strength"]


@pytest.mark.slow
def test_afm_shapley_interactions_recover_the_planted_pairs_and_the_gate(one_thread):
    """Over 5 seeds (8,000 rows each, the Quick preset for at most 20 epochs): AFM's mean |SII|
    puts the always-on pair in its top 2 in every seed and both planted pairs in at least 4;
    AFM's SII moves with the planted gate at least 5x more than FM's, which cannot gate a pair
    (bench: 0.12-0.36 against 0.003-0.011); the labels' gate table names the planted gate."""
    both = 0
    for seed in range(5):
        data, truth = planted_dataset(seed, rows=8000)
        spread = {}
        for name in ("fm", "afm"):
            model = fit_recipe(preset("quick", name, device="cpu", seed=seed, epochs=20), data).checkpoint.model.eval()
            explanation = explain_pairs(model, data.test, data.schema, data.train, rows=len(data.test))
            gates = explanation.gates
            line = gates[(gates["pair"] == truth.gated) & (gates["gate"] == truth.gate)]
            spread[name] = float(line["model_strength"].iloc[0])
            choice = explanation.strongest_gate
            assert (choice.pair, choice.gate, list(choice.values.values())[0]) == (
                truth.gated, truth.gate, truth.gate_value_id), seed
        top = list(explanation.table["pair"][:2])  # the AFM's, by mean |SII|
        assert truth.always_on in top, (seed, truth.describe(), top)
        both += set(truth.pairs) == set(top)
        assert spread["afm"] > 5 * spread["fm"], (seed, spread)
    assert both >= 4, both
