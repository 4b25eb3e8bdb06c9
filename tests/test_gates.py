from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest

from afm.analysis.gates import (
    GateChoice,
    _additive_fit,
    data_gates,
    gate_sentence,
    gate_table,
    model_gates,
    rows_by_values,
    strongest_gate,
)
from afm.data import FieldSchema, Split, load_dataset
from afm.errors import ConfigError, DataError
from afm.samples.random_planted import planted_dataset
from tests.conftest import requires_frappe


@dataclass
class Planted:
    split: Split
    schema: FieldSchema
    pair: int  # index of the planted pair (i, j) in pair_index order
    gate: int  # the field g that switches it on
    value: int  # feature id of the value u* of g where it acts
    offsets: np.ndarray  # (F,) first feature id of each field
    strength: float  # the planted interaction's RMS where it acts, label units


def planted_gate(seed: int, rows: int = 8000) -> Planted:
    """The training split of `afm.samples.random_planted` (5-8 fields of random cardinality 2-6,
    main effects on every field, an always-on pair, and a random pair (i, j) whose interaction acts
    only where a random third field g is u*), with the gated pair as indices."""
    data, truth = planted_dataset(seed, rows=rows)
    schema = data.schema
    gate = schema.field_names.index(truth.gate)
    offsets = np.array([schema.field_values(f)[0] for f in range(schema.num_fields)])
    return Planted(data.train, schema, schema.pair_names().index(truth.gated), gate, truth.gate_value_id, offsets,
                   truth.strengths[truth.gated])


@pytest.mark.parametrize("seed", range(5))
def test_data_gates_find_the_planted_gate_and_its_value(seed):
    planted = planted_gate(seed)
    result = data_gates(planted.split, planted.schema, min_support=10)
    table = gate_table(result)
    assert (table.loc[0, "p"], table.loc[0, "g"]) == (planted.pair, planted.gate), table.head(3)
    assert table.loc[0, "value_ids"][0] == planted.value  # the value where the pair acts, shown first
    levels = result.levels[(planted.pair, planted.gate)]
    strongest = levels.strength[list(levels.value_ids).index(planted.value)]
    assert strongest == pytest.approx(planted.strength, abs=0.2)  # m(u*): the planted interaction's RMS
    others = np.delete(levels.strength, list(levels.value_ids).index(planted.value))
    assert others.max() < 0.25  # elsewhere the pair does nothing, and the noise correction says so
    left, right = np.triu_indices(planted.schema.num_fields, k=1)
    assert np.isnan(result.strength[planted.pair, [left[planted.pair], right[planted.pair]]]).all()  # not a gate


def test_additive_fit_is_the_classic_interaction_on_a_balanced_table_and_exact_when_additive():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(4, 5))
    row, col = np.repeat(np.arange(4), 5), np.tile(np.arange(5), 4)
    classic = means - means.mean(1, keepdims=True) - means.mean(0) + means.mean()
    residual = _additive_fit(means.ravel(), np.full(20, 3.0), row, col, 4, 5)
    np.testing.assert_allclose(residual, classic.ravel(), atol=1e-9)
    # Unbalanced and incomplete, but additive: the least-squares fit leaves nothing (the classic
    # formula with marginal means would not).
    keep = rng.random(20) < 0.8
    keep[[0, 6, 12, 18, 19]] = True
    additive = (rng.normal(size=4)[:, None] + rng.normal(size=5)).ravel()
    residual = _additive_fit(additive[keep], rng.integers(1, 50, keep.sum()).astype(float), row[keep], col[keep], 4, 5)
    np.testing.assert_allclose(residual, 0.0, atol=1e-6)


def test_model_gates_rank_the_score_that_moves_with_a_field():
    planted = planted_gate(11)
    ids = planted.split.feature_ids
    rng = np.random.default_rng(0)
    rows, pairs = ids.shape[0], planted.schema.num_pairs
    scores = rng.normal(0, 0.1, (rows, pairs))  # (R, P)
    switched = ids[:, planted.gate] == planted.value  # (R,)
    scores[:, planted.pair] += 2.0 * switched * rng.choice([-1.0, 1.0], rows)  # signed: only |score| moves
    result = model_gates(scores, ids, planted.schema, min_support=20)
    best = np.unravel_index(np.nanargmax(result.strength), result.strength.shape)
    assert best == (planted.pair, planted.gate)
    assert result.extremes(planted.pair, planted.gate)[0] == planted.value
    signed = model_gates(scores, ids, planted.schema, absolute=False)
    assert signed.strength[planted.pair, planted.gate] < 0.3 * result.strength[planted.pair, planted.gate]
    attention = model_gates(np.full((rows, pairs), 1.0 / pairs), ids, planted.schema)
    np.testing.assert_allclose(attention.strength[np.isfinite(attention.strength)], 0.0, atol=1e-12)
    left, right = np.triu_indices(planted.schema.num_fields, k=1)
    assert np.isnan(result.strength[np.arange(pairs), left]).all() and np.isnan(result.strength[np.arange(pairs),
                                                                                               right]).all()


def test_gate_table_and_the_strongest_gate():
    planted = planted_gate(3)
    data = data_gates(planted.split, planted.schema, min_support=10)
    pairs = planted.schema.num_pairs
    scores = np.random.default_rng(1).normal(size=(len(planted.split), pairs))
    model = model_gates(scores, planted.split.feature_ids, planted.schema)
    attention = model_gates(np.abs(scores), planted.split.feature_ids, planted.schema)
    table = gate_table(data, model, attention, count=2)
    assert list(table.columns) == ["pair", "gate", "data_strength", "model_strength", "attention_spread", "values",
                                   "value_ids", "p", "g"]
    measured = table["data_strength"].dropna().to_numpy()
    assert (np.diff(measured) <= 0).all() and table["model_strength"].notna().all()
    choice = strongest_gate(table, planted.schema)
    assert isinstance(choice, GateChoice)
    assert choice.pair == planted.schema.pair_names()[planted.pair] and choice.gate == f"f{planted.gate}"
    assert list(choice.values.values())[0] == planted.value and len(choice.values) >= 2
    assert table.loc[0, "values"].startswith(f"strongest where {planted.schema.feature_label(planted.value)}")
    masks = rows_by_values(planted.split, planted.schema, choice.gate, list(choice.values.values()))
    first = masks[planted.schema.value_name(planted.value)]
    assert first.sum() == (planted.split.feature_ids[:, planted.gate] == planted.value).sum()
    sentence = gate_sentence(table.loc[0])
    assert sentence.startswith(f"The {choice.pair} interaction changes with {choice.gate} in the training labels")
    assert "on the explained rows, this model's attention" in sentence  # every number says which rows
    assert "attention to the pair moves" in sentence
    assert strongest_gate(table.iloc[0:0], planted.schema) is None


def test_gates_check_their_inputs():
    planted = planted_gate(0, rows=300)
    with pytest.raises(ConfigError, match="min_support"):
        data_gates(planted.split, planted.schema, min_support=1)
    narrow = FieldSchema(("a", "b"), [0, 1])
    with pytest.raises(DataError, match="fields"):
        data_gates(planted.split, narrow)
    ids = planted.split.feature_ids
    with pytest.raises(ConfigError, match="pair_scores"):
        model_gates(np.zeros((len(ids), 1)), ids, planted.schema)
    with pytest.raises(ConfigError, match="feature_ids"):
        model_gates(np.zeros((len(ids), planted.schema.num_pairs)), ids[:, :2], planted.schema)
    with pytest.raises(ConfigError, match="no field"):
        rows_by_values(planted.split, planted.schema, "nothing", [])
    data = data_gates(planted.split, planted.schema, min_support=5)
    with pytest.raises(ConfigError, match="pairs x fields"):
        gate_table(data, model_gates(np.zeros((len(ids), 1)), ids[:, :2], narrow))


@requires_frappe
@pytest.mark.frappe
@pytest.mark.slow
def test_data_gates_on_frappe_train_take_seconds():
    data = load_dataset("frappe")
    start = time.perf_counter()
    result = data_gates(data.train, data.schema, min_support=20)
    elapsed = time.perf_counter() - start
    assert elapsed < 15, f"{elapsed:.1f} s"
    table = gate_table(result)
    assert len(table) > 100 and np.isfinite(table.loc[0, "data_strength"])
    choice = strongest_gate(table, data.schema)
    assert choice is not None and len(choice.values) == 2
