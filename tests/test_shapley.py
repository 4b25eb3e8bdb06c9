"""Exact Shapley values and pair interactions (afm.analysis.shapley) against oracles: the closed
form of FM, models built without the absent fields, hybrid rows through the model itself, the
axioms on constructed models, and shapiq's exact computer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from afm.analysis.attention import rows_by_value
from afm.analysis.shapley import (
    MAX_FIELDS,
    SEMANTICS,
    background_rows,
    coalition_values,
    field_summary,
    pair_shapley,
    pair_summary,
    pair_summary_by_value,
)
from afm.data import FieldSchema, Split
from afm.errors import ConfigError, DataError
from afm.models import FwFM, ModelConfig, PairwiseModel, build_model

MODELS = ("fm", "fwfm", "afm")


def random_model(name: str, fields: int, features: int = 24, k: int = 4, t: int = 3, seed: int = 0,
                 scale: float = 0.7) -> PairwiseModel:
    """A float64 model whose every weight (biases, r, W, b, h, p too) is random: no structure to hide behind."""
    config = ModelConfig(model=name, num_features=features, num_fields=fields, embedding_dim=k, attention_dim=t)
    model = build_model(config, seed=seed).double().eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(scale * torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    return model


def random_rows(rows: int, fields: int, features: int = 24, seed: int = 0, one_hot: bool = True):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, features, (rows, fields), generator=generator)
    values = torch.ones(rows, fields, dtype=torch.float64)
    if not one_hot:
        values = 0.5 + torch.rand(rows, fields, generator=generator, dtype=torch.float64)
    return ids, values


def members(coalition: int, fields: int) -> list[int]:
    return [f for f in range(fields) if coalition >> f & 1]


def sub_model(model: PairwiseModel, kept: list[int]) -> PairwiseModel:
    """The same weights in a model over the fields `kept` only (FwFM: the r of their pairs)."""
    config = dataclasses.replace(model.config, num_fields=len(kept))
    sub = build_model(config).double().eval()
    state = model.state_dict()
    if isinstance(model, FwFM):
        left, right = model.pair_index.tolist()
        position = {(i, j): p for p, (i, j) in enumerate(zip(left, right))}
        sub_left, sub_right = sub.pair_index.tolist()
        state["field_pair_weights"] = state["field_pair_weights"][
            [position[kept[i], kept[j]] for i, j in zip(sub_left, sub_right)]]
    sub.load_state_dict(state)
    return sub


def absent_oracle(model: PairwiseModel, ids, values) -> torch.Tensor:
    """(R, C) v(S) = the output of a model built over S's fields, given the rows' S columns."""
    fields = model.config.num_fields
    first = model.first_order(ids, values).detach()  # (R, F)
    columns = []
    for coalition in range(1 << fields):
        kept = members(coalition, fields)
        if len(kept) < 2:  # no pairs: no model to build, bias and first-order terms only
            columns.append(model.bias.detach() + first[:, kept].sum(1))
        else:
            columns.append(sub_model(model, kept).inference(ids[:, kept], values[:, kept]))
    return torch.stack(columns, 1)


def background_oracle(model: PairwiseModel, ids, values, background) -> torch.Tensor:
    """(R, C) v(S) = the mean model output over hybrid rows: S from the row, the rest from each background row."""
    fields = model.config.num_fields
    count = 1 << fields
    inside = ((torch.arange(count)[:, None] >> torch.arange(fields)) & 1).bool()  # (C, F)
    mask = inside[:, None, None, :]  # (C, 1, 1, F)
    hybrid_ids = torch.where(mask, ids[None, :, None], background[0][None, None])  # (C, R, B, F)
    hybrid_values = torch.where(mask, values[None, :, None], background[1][None, None])  # (C, R, B, F)
    out = model.inference(hybrid_ids.reshape(-1, fields), hybrid_values.reshape(-1, fields))
    return out.view(count, ids.shape[0], -1).mean(2).T  # (R, C)


def pairs_of(fields: int) -> list[tuple[int, int]]:
    return [(int(i), int(j)) for i, j in zip(*np.triu_indices(fields, k=1))]


# --- the closed form of FM and FwFM ---------------------------------------------------------------

def check_linear_oracle(model: PairwiseModel, ids, values, result) -> None:
    """FM/FwFM under `absent`: v is bias + first order + pair terms, so the Möbius transform is those
    terms: SII = Shapley-Taylor pair = the pair's term, phi = first order + half of its pairs' terms."""
    terms = model.decompose(ids, values)
    torch.testing.assert_close(result.pair_interaction, terms.pair_terms, rtol=0, atol=1e-12)
    torch.testing.assert_close(result.pair_terms, terms.pair_terms, rtol=0, atol=1e-12)
    torch.testing.assert_close(result.main_terms, terms.first_order, rtol=0, atol=1e-12)
    half = torch.zeros_like(terms.first_order)
    for p, (i, j) in enumerate(pairs_of(model.config.num_fields)):
        half[:, i] += terms.pair_terms[:, p] / 2
        half[:, j] += terms.pair_terms[:, p] / 2
    torch.testing.assert_close(result.field_shapley, terms.first_order + half, rtol=0, atol=1e-12)
    torch.testing.assert_close(result.prediction, terms.prediction, rtol=0, atol=1e-12)
    torch.testing.assert_close(result.empty, terms.bias.expand(ids.shape[0]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["fm", "fwfm"])
@pytest.mark.parametrize("one_hot", [True, False])
def test_fm_and_fwfm_absent_values_are_the_pair_terms(name, one_hot):
    model = random_model(name, fields=6)
    ids, values = random_rows(7, 6, one_hot=one_hot)
    check_linear_oracle(model, ids, values, pair_shapley(model, ids, values))


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(MODELS), fields=st.integers(2, 6), seed=st.integers(0, 10_000),
       one_hot=st.booleans(), coalitions=st.sampled_from(SEMANTICS))
def test_every_row_adds_up_to_its_prediction(name, fields, seed, one_hot, coalitions):
    model = random_model(name, fields, seed=seed)
    ids, values = random_rows(3, fields, seed=seed, one_hot=one_hot)
    background = random_rows(4, fields, seed=seed + 1, one_hot=one_hot) if coalitions == "background" else None
    result = pair_shapley(model, ids, values, coalitions, background)
    assert result.coalitions == coalitions and result.background_rows == (0 if background is None else 4)
    assert float(result.efficiency_residual().max()) < 1e-10
    torch.testing.assert_close(result.prediction, model.inference(ids, values), rtol=0, atol=1e-12)
    if coalitions == "absent" and name != "afm":
        check_linear_oracle(model, ids, values, result)


# --- what v(S) is --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("one_hot", [True, False])
def test_absent_is_a_model_built_without_those_fields(name, one_hot):
    model = random_model(name, fields=5)
    ids, values = random_rows(4, 5, one_hot=one_hot)
    torch.testing.assert_close(coalition_values(model, ids, values), absent_oracle(model, ids, values),
                               rtol=0, atol=1e-12)


def test_absent_attention_survives_scores_far_apart():
    """Scores a thousand apart: a coalition without the row's top pair underflows exp(score - the
    row's max) and is recomputed with its own max; it must still be the sub-model's softmax."""
    model = random_model("afm", fields=5)
    with torch.no_grad():
        model.attention_h.mul_(3000.0)
    ids, values = random_rows(4, 5)
    table = coalition_values(model, ids, values)
    assert bool(torch.isfinite(table).all())
    torch.testing.assert_close(table, absent_oracle(model, ids, values), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("one_hot", [True, False])
def test_background_is_the_mean_over_hybrid_rows(name, one_hot):
    model = random_model(name, fields=4)
    ids, values = random_rows(3, 4, one_hot=one_hot)
    background = random_rows(5, 4, seed=1, one_hot=one_hot)
    expected = background_oracle(model, ids, values, background)
    torch.testing.assert_close(coalition_values(model, ids, values, "background", background), expected,
                               rtol=0, atol=1e-12)
    # One row-background pair a block: rows one at a time, the background in groups, the same table.
    torch.testing.assert_close(coalition_values(model, ids, values, "background", background, batch_rows=2),
                               expected, rtol=0, atol=1e-12)


def test_a_float32_model_is_explained_in_its_own_precision():
    model = random_model("afm", fields=5).float()
    ids, values = random_rows(6, 5)
    result = pair_shapley(model, ids, values.float())
    assert result.field_shapley.dtype == torch.float64
    torch.testing.assert_close(result.prediction, model.inference(ids, values.float()).double(), rtol=1e-5,
                               atol=1e-5)
    assert float(result.efficiency_residual().max()) < 1e-10  # exact for the table it is given


# --- the axioms on constructed models ------------------------------------------------------------

def twin_model(name: str) -> PairwiseModel:
    """Features 0 and 1 identical (embedding, linear weight), and 2 and 3; FwFM's r of field 0 and
    field 1 with every other field equal, so fields 0 and 1 play symmetric roles."""
    model = random_model(name, fields=5)
    with torch.no_grad():
        for a, b in ((0, 1), (2, 3)):
            model.embedding.weight[b] = model.embedding.weight[a]
            model.linear.weight[b] = model.linear.weight[a]
        if isinstance(model, FwFM):
            position = {pair: p for p, pair in enumerate(pairs_of(5))}
            model.field_pair_weights[position[0, 1]] = 0.3
            for g in range(2, 5):
                model.field_pair_weights[position[1, g]] = model.field_pair_weights[position[0, g]]
    return model


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("coalitions", SEMANTICS)
def test_fields_in_symmetric_roles_get_equal_values(name, coalitions):
    model = twin_model(name)
    ids, values = random_rows(3, 5, features=24)
    ids[:, 0], ids[:, 1] = 0, 1  # the twins, one in each field
    background = None
    if coalitions == "background":
        background = random_rows(4, 5, seed=2)
        background[0][:, 0], background[0][:, 1] = 2, 3  # twins there too
    result = pair_shapley(model, ids, values, coalitions, background)
    torch.testing.assert_close(result.field_shapley[:, 0], result.field_shapley[:, 1], rtol=0, atol=1e-12)
    torch.testing.assert_close(result.main_terms[:, 0], result.main_terms[:, 1], rtol=0, atol=1e-12)
    position = {pair: p for p, pair in enumerate(pairs_of(5))}
    for g in range(2, 5):
        for values_of in (result.pair_interaction, result.pair_terms):
            torch.testing.assert_close(values_of[:, position[0, g]], values_of[:, position[1, g]], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["fm", "fwfm"])
@pytest.mark.parametrize("coalitions", SEMANTICS)
def test_a_field_that_adds_nothing_gets_nothing(name, coalitions):
    """A feature with zero embedding and zero linear weight in field 2 (row and background) is a
    dummy player of FM and FwFM: zero value, zero interaction with every field. (Not of AFM: its
    pairs still take a share of the softmax.)"""
    model = random_model(name, fields=5)
    with torch.no_grad():
        model.embedding.weight[7] = 0.0
        model.linear.weight[7] = 0.0
    ids, values = random_rows(3, 5, one_hot=False)
    ids[:, 2] = 7
    background = None
    if coalitions == "background":
        background = random_rows(4, 5, seed=3, one_hot=False)
        background[0][:, 2] = 7
    result = pair_shapley(model, ids, values, coalitions, background)
    assert float(result.field_shapley[:, 2].abs().max()) < 1e-12
    assert float(result.main_terms[:, 2].abs().max()) < 1e-12
    touching = [p for p, pair in enumerate(pairs_of(5)) if 2 in pair]
    assert float(result.pair_interaction[:, touching].abs().max()) < 1e-12
    assert float(result.pair_terms[:, touching].abs().max()) < 1e-12
    assert float(result.efficiency_residual().max()) < 1e-12


# --- against shapiq ------------------------------------------------------------------------------

@pytest.mark.parametrize("coalitions", SEMANTICS)
def test_agrees_with_shapiq_exact_computer(coalitions):
    from shapiq import ExactComputer

    fields = 5
    model = random_model("afm", fields=fields, k=6, t=5, seed=4)
    ids, values = random_rows(2, fields, seed=5, one_hot=False)
    background = random_rows(3, fields, seed=6, one_hot=False) if coalitions == "background" else None
    oracle = (absent_oracle(model, ids, values) if background is None
              else background_oracle(model, ids, values, background)).numpy()  # (R, C), without our tables
    result = pair_shapley(model, ids, values, coalitions, background)
    for r in range(ids.shape[0]):
        def game(coalition_matrix, r=r):
            return oracle[r][(coalition_matrix.astype(np.int64) << np.arange(fields)).sum(1)]

        computer = ExactComputer(game, n_players=fields)
        shapley, sii, taylor = computer("SV"), computer("SII", order=2), computer("STII", order=2)
        for i in range(fields):
            assert result.field_shapley[r, i].item() == pytest.approx(shapley[(i,)], abs=1e-9)
            assert result.main_terms[r, i].item() == pytest.approx(taylor[(i,)], abs=1e-9)
        for p, pair in enumerate(pairs_of(fields)):
            assert result.pair_interaction[r, p].item() == pytest.approx(sii[pair], abs=1e-9)
            assert result.pair_terms[r, p].item() == pytest.approx(taylor[pair], abs=1e-9)
        assert result.empty[r].item() == pytest.approx(taylor[()], abs=1e-9)
        assert result.empty[r].item() == pytest.approx(shapley.baseline_value, abs=1e-9)


# --- limits, inputs, summaries -------------------------------------------------------------------

def test_more_than_sixteen_fields_is_refused_with_the_reason():
    model = build_model(ModelConfig(model="fm", num_features=40, num_fields=MAX_FIELDS + 1, embedding_dim=2))
    ids, values = random_rows(1, MAX_FIELDS + 1, features=40)
    with pytest.raises(ConfigError, match="131,072.*16-field limit"):
        pair_shapley(model, ids, values)


def test_sixteen_fields_are_exact():
    model = random_model("afm", fields=MAX_FIELDS, features=40, k=2, t=2, scale=0.3)
    ids, values = random_rows(2, MAX_FIELDS, features=40)
    result = pair_shapley(model, ids, values)
    assert result.pair_terms.shape == (2, 120)
    assert float(result.efficiency_residual().max()) < 1e-9


def test_bad_requests_raise_readable_errors():
    model = random_model("afm", fields=4)
    ids, values = random_rows(2, 4)
    background = random_rows(3, 4)
    with pytest.raises(ConfigError, match="coalitions must be one of"):
        pair_shapley(model, ids, values, "missing")
    with pytest.raises(ConfigError, match="needs background rows"):
        pair_shapley(model, ids, values, "background")
    with pytest.raises(ConfigError, match="takes none"):
        pair_shapley(model, ids, values, "absent", background)
    with pytest.raises(ConfigError, match="a pair"):
        pair_shapley(model, ids, values, "background", background[0])
    with pytest.raises(DataError, match="rows to explain.*expected"):
        pair_shapley(model, ids[:, :3], values[:, :3])
    with pytest.raises(DataError, match="background rows.*0..23"):
        pair_shapley(model, ids, values, "background", (background[0] + 30, background[1]))
    with pytest.raises(DataError, match="finite"):
        pair_shapley(model, ids, values * float("nan"))
    with pytest.raises(ConfigError, match="batch_rows"):
        pair_shapley(model, ids, values, batch_rows=0)


def test_summaries_name_pairs_and_say_which_coalitions():
    schema = FieldSchema(("brand", "hour", "city", "device"), [0] * 6 + [1] * 6 + [2] * 6 + [3] * 6)
    model = random_model("afm", fields=4)
    ids, values = random_rows(40, 4)
    ids = ids % 6 + torch.arange(4) * 6  # each field its own id range
    split = Split(ids.numpy(), values.float().numpy(), np.zeros(40, np.float32))
    background = background_rows(split, 8, seed=1)
    assert torch.equal(background[0], background_rows(split, 8, seed=1)[0]) and background[0].shape == (8, 4)
    assert background_rows(split, 100)[0].shape == (40, 4)
    result = pair_shapley(model, ids, values, "background", background)
    frame = pair_summary(result, schema)
    assert list(frame["pair"]) == ["brand x hour", "brand x city", "brand x device", "hour x city",
                                   "hour x device", "city x device"]
    assert set(frame["coalitions"]) == {"background"} and set(frame["rows"]) == {40}
    np.testing.assert_allclose(frame["taylor_abs_mean"], result.pair_terms.abs().mean(0).numpy())
    np.testing.assert_allclose(frame["sii_mean"], result.pair_interaction.mean(0).numpy())
    fields = field_summary(result, schema, rows=np.arange(10))
    np.testing.assert_allclose(fields["shapley_mean"], result.field_shapley[:10].mean(0).numpy())
    masks = rows_by_value(split, schema, "brand", limit=3)
    grouped = pair_summary_by_value(result, schema, masks)
    assert len(grouped) == 3 * 6 and list(grouped["value"].unique()) == list(masks)
    first = next(iter(masks.values()))
    np.testing.assert_allclose(grouped["sii_abs_mean"][:6], result.pair_interaction[first].abs().mean(0).numpy())
    with pytest.raises(DataError, match="entries"):
        pair_summary(result, schema, np.ones(5, dtype=bool))
