"""Issue #28, items 2-4: erasure curves (afm.analysis.erasure), effects of three fields and the part
of the prediction no pair carries (afm.analysis.higher_order), against oracles: pair subsets
computed by hand per row, the absent coalition table, shapiq's exact computer, and planted data."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from afm.analysis.erasure import RANDOM, erasure_curves, pair_measures
from afm.analysis.higher_order import (
    EFFECT_COLUMNS,
    HigherOrderCollector,
    describe_effect,
    effect_of_pairs,
    higher_order_terms,
    non_pairwise_share,
    three_field_effects,
)
from afm.analysis.pairs import erasure_of, explain_pairs
from afm.analysis.shapley import SEMANTICS, coalition_values, pair_shapley, pair_subset_values
from afm.errors import ConfigError, DataError
from afm.figures import erasure_figure
from afm.fitting import fit_recipe
from afm.metrics import log_loss, rmse
from afm.models import AFM, FwFM, PairwiseModel
from afm.recipe import preset
from afm.samples.random_planted import planted_dataset
from tests.test_shapley import random_model, random_rows

MODELS = ("fm", "fwfm", "afm")


def by_hand(model: PairwiseModel, ids, values, kept: list[int]) -> float:
    """One row's output with only the pairs `kept`, from the weights: AFM's softmax over them alone."""
    embedded = model.embedding.weight[ids] * values[:, None]  # (F, k)
    left, right = model.pair_index.tolist()
    total = float(model.bias) + float((model.linear.weight[ids, 0] * values).sum())
    products = [embedded[left[p]] * embedded[right[p]] for p in kept]  # (k,) each
    if not kept:
        return total
    if isinstance(model, AFM):
        scores = torch.stack([model.attention_scores(product) for product in products])  # (|kept|,)
        weights = torch.softmax(scores, 0)
        return total + float(sum(w * (product @ model.projection) for w, product in zip(weights, products)))
    scale = [float(model.field_pair_weights[p]) if isinstance(model, FwFM) else 1.0 for p in kept]
    return total + sum(s * float(product.sum()) for s, product in zip(scale, products))


# --- pairs out of the sum and out of the softmax ----------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_pair_subsets_match_the_model_computed_by_hand(name):
    fields = 4
    model = random_model(name, fields, seed=3)
    ids, values = random_rows(3, fields, seed=4, one_hot=False)
    pairs = model.config.num_pairs
    generator = torch.Generator().manual_seed(5)
    keep = torch.rand(3, 5, pairs, generator=generator) < 0.5  # (R, M, P)
    keep[:, 0], keep[:, 1] = True, False
    out = pair_subset_values(model, ids, values, keep)  # (R, M)
    with torch.no_grad():
        for r, m in itertools.product(range(3), range(5)):
            expected = by_hand(model, ids[r], values[r], torch.nonzero(keep[r, m]).flatten().tolist())
            assert out[r, m].item() == pytest.approx(expected, abs=1e-12)
    terms = model.decompose(ids, values)
    torch.testing.assert_close(out[:, 0], terms.prediction, rtol=0, atol=1e-12)  # all kept: ŷ
    torch.testing.assert_close(out[:, 1], terms.bias + terms.first_order.sum(1), rtol=0, atol=1e-12)  # none


@pytest.mark.parametrize("name", MODELS)
def test_the_pairs_inside_a_coalition_give_its_absent_value(name):
    """Keeping the pairs inside S (and dropping the first-order terms outside S) is v(S) under
    absent coalitions: the erasure and the Shapley tables remove a pair the same way."""
    fields = 5
    model = random_model(name, fields, seed=7)
    ids, values = random_rows(4, fields, seed=8)
    inside = (torch.arange(1 << fields)[:, None] >> torch.arange(fields)) & 1 == 1  # (C, F)
    left, right = model.pair_index
    keep = (inside[:, left] & inside[:, right]).expand(4, -1, -1)  # (R, C, P)
    first = model.first_order(ids, values).detach()  # (R, F)
    outside = first @ (~inside).double().T  # (R, C)
    torch.testing.assert_close(pair_subset_values(model, ids, values, keep) - outside,
                               coalition_values(model, ids, values), rtol=0, atol=1e-12)


def test_scores_far_apart_still_give_the_softmax_of_the_kept_pairs():
    """Scores hundreds apart: exp(score - the row's largest) underflows for a subset without the
    largest pair, and that subset is recomputed exactly."""
    model = random_model("afm", 4, seed=13)
    with torch.no_grad():
        model.attention_h.mul_(3000.0)
    ids, values = random_rows(2, 4, seed=14)
    keep = torch.ones(2, 6, 6, dtype=torch.bool)
    for m in range(6):
        keep[:, m, :m + 1] = False  # the first m + 1 pairs erased
    out = pair_subset_values(model, ids, values, keep)  # (R, M)
    with torch.no_grad():
        for r, m in itertools.product(range(2), range(5)):
            expected = by_hand(model, ids[r], values[r], list(range(m + 1, 6)))
            assert out[r, m].item() == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_bad_pair_masks_are_refused():
    model = random_model("afm", 4)
    ids, values = random_rows(2, 4)
    with pytest.raises(ConfigError, match=r"keep must be a boolean \(rows, subsets, pairs\) = \(2, M, 6\)"):
        pair_subset_values(model, ids, values, torch.ones(2, 3, 5, dtype=torch.bool))
    with pytest.raises(ConfigError, match="keep must be a boolean"):
        pair_subset_values(model, ids, values, torch.ones(2, 3, 6))


# --- erasure curves ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_one_row_curves_are_its_erased_outputs_by_hand(name):
    """With one row, the change curve is |ŷ_k - ŷ_0| of that row, each pair erased in the measure's
    order (largest first) as the model computed by hand would give it."""
    fields = 4
    model = random_model(name, fields, seed=11)
    ids, values = random_rows(3, fields, seed=12)
    terms = model.decompose(ids, values)
    measures = pair_measures(model, terms)
    assert list(measures) == (["attention"] if name == "afm" else []) + ["|contribution|"]
    with torch.no_grad():
        for r in range(3):
            curves = erasure_curves(model, ids[r:r + 1], values[r:r + 1],
                                    {k: v[r:r + 1] for k, v in measures.items()}, random_orders=2)
            for measure, scores in measures.items():
                order = np.argsort(-scores[r], kind="stable")
                outputs = [by_hand(model, ids[r], values[r], sorted(order[k:].tolist())) for k in range(7)]
                np.testing.assert_allclose(curves.change[measure], np.abs(np.array(outputs) - outputs[0]),
                                           rtol=0, atol=1e-12)


@pytest.mark.parametrize("task", ["regression", "binary"])
def test_every_curve_starts_at_the_prediction_and_ends_without_pairs(task):
    fields = 5
    model = random_model("afm", fields, seed=2)
    ids, values = random_rows(40, fields, seed=3)
    terms = model.decompose(ids, values)
    labels = (np.arange(40) % 2).astype(np.float64) if task == "binary" else np.linspace(-1, 1, 40)
    curves = erasure_curves(model, ids, values, pair_measures(model, terms), labels, task=task, seed=4)
    prediction = terms.prediction.numpy()
    without = (terms.bias + terms.first_order.sum(1)).numpy()  # no pair terms: w0 + first order
    metric = (lambda y: log_loss(y, labels)) if task == "binary" else (lambda y: rmse(y, labels))
    assert set(curves.change) == {"attention", "|contribution|", RANDOM} == set(curves.metric)
    assert curves.metric_name == {"binary": "logloss", "regression": "rmse"}[task]
    for name in curves.change:
        assert len(curves.change[name]) == 11 and curves.change[name][0] == 0
        assert curves.change[name][-1] == pytest.approx(np.abs(without - prediction).mean(), abs=1e-12)
        assert curves.metric[name][0] == pytest.approx(metric(prediction), abs=1e-12)
        assert curves.metric[name][-1] == pytest.approx(metric(without), abs=1e-12)
    frame = curves.frame()
    assert list(frame.columns) == ["measure", "k", "change", "metric"] and len(frame) == 3 * 11
    assert set(curves.area) == {"attention", "|contribution|"} and curves.best() in curves.area


def test_the_least_important_first_is_below_random_and_the_most_important_first_above():
    model = random_model("fm", 6, seed=5)
    ids, values = random_rows(64, 6, seed=6)
    terms = model.decompose(ids, values)
    size = terms.pair_terms.abs().numpy()
    curves = erasure_curves(model, ids, values, {"largest first": size, "smallest first": -size}, seed=1)
    assert curves.area["largest first"] > 0.3 > -0.3 > curves.area["smallest first"]
    assert curves.metric is None and curves.metric_area is None  # no labels, no metric
    again = erasure_curves(model, ids, values, {"largest first": size, "smallest first": -size}, seed=1)
    assert again.area == curves.area  # seeded random orders


def test_bad_erasure_requests_are_refused():
    model = random_model("fm", 4)
    ids, values = random_rows(3, 4)
    good = np.ones((3, 6))
    with pytest.raises(ConfigError, match="task must be one of"):
        erasure_curves(model, ids, values, {"a": good}, task="ranking")
    with pytest.raises(DataError, match=r"measure 'a'.*\(3, 6\)"):
        erasure_curves(model, ids, values, {"a": np.ones((3, 5))})
    with pytest.raises(ConfigError, match="'random' is the baseline"):
        erasure_curves(model, ids, values, {RANDOM: good})
    with pytest.raises(DataError, match="expected 3 labels"):
        erasure_curves(model, ids, values, {"a": good}, labels=np.ones(4))
    with pytest.raises(ConfigError, match="random_orders must be a positive integer"):
        erasure_curves(model, ids, values, {"a": good}, random_orders=0)


def test_fm_contribution_order_beats_random_on_planted_data(one_thread):
    data, _ = planted_dataset(1, rows=4000)
    model = fit_recipe(preset("quick", "fm", device="cpu", seed=1, epochs=8), data).checkpoint.model.eval()
    explanation = explain_pairs(model, data.test, data.schema, data.train, rows=200)
    curves = erasure_of(model, explanation, data.test, "regression")
    # docs/explain.md, 5 seeds x 8,000 rows: |contribution| 0.40-0.55 on the prediction, 0.48-0.88 on RMSE
    assert curves.area["|contribution|"] > 0.2 and curves.metric_area["|contribution|"] > 0.2
    # An FM's SII is its pair term (absent coalitions): the same order, the same curve.
    np.testing.assert_allclose(curves.change["|Shapley interaction|"], curves.change["|contribution|"], atol=1e-9)
    figure = erasure_figure(curves)
    assert isinstance(figure, go.Figure) and len(figure.data) == 2 * 4  # 3 measures and random, 2 panels


# --- what no pair carries -----------------------------------------------------------------------------

@pytest.mark.parametrize("coalitions", SEMANTICS)
@pytest.mark.parametrize("name", MODELS)
def test_only_afm_has_a_part_no_pair_carries(name, coalitions):
    fields = 5
    model = random_model(name, fields, seed=9)
    ids, values = random_rows(12, fields, seed=10, one_hot=False)
    background = random_rows(3, fields, seed=11, one_hot=False) if coalitions == "background" else None
    higher = higher_order_terms(model, ids, values, coalitions, background)
    share = non_pairwise_share(model, ids, values, coalitions, background)
    assert share == higher.non_pairwise_share()
    if name == "afm":
        assert share > 1e-3 and float(higher.triple_mobius.abs().max()) > 1e-3
    else:
        assert share < 1e-12 and float(higher.by_order[:, 3:].abs().max()) < 1e-12
        assert float(higher.triple_interaction.abs().max()) < 1e-12
    # The orders add up to the prediction (the Möbius identity at N).
    torch.testing.assert_close(higher.by_order.sum(1), higher.prediction, rtol=0, atol=1e-10)
    torch.testing.assert_close(higher.by_order[:, 0], higher.empty, rtol=0, atol=0)
    shares = higher.order_shares()
    assert sorted(shares) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("coalitions", SEMANTICS)
def test_one_pass_with_the_shapley_values_gives_the_same_terms(coalitions):
    """explain_pairs reads the higher orders off pair_shapley's own tables (on_mobius): the same
    numbers as a pass of their own, batch by batch, and the Shapley values unchanged."""
    fields = 5
    model = random_model("afm", fields, seed=15)
    ids, values = random_rows(7, fields, seed=16, one_hot=False)
    background = random_rows(3, fields, seed=17, one_hot=False) if coalitions == "background" else None
    collector = HigherOrderCollector(fields)
    shared = pair_shapley(model, ids, values, coalitions, background, batch_rows=6, on_mobius=collector)
    alone = higher_order_terms(model, ids, values, coalitions, background, batch_rows=6)
    together = collector.result(coalitions)
    for name in ("prediction", "empty", "by_order", "triple_mobius", "triple_interaction"):
        torch.testing.assert_close(getattr(together, name), getattr(alone, name), rtol=0, atol=1e-12)
    plain = pair_shapley(model, ids, values, coalitions, background, batch_rows=6)
    for name in ("pair_interaction", "pair_terms", "field_shapley"):
        torch.testing.assert_close(getattr(shared, name), getattr(plain, name), rtol=0, atol=0)


def test_order_three_terms_agree_with_shapiq_exact_computer():
    from shapiq import ExactComputer

    fields = 5
    model = random_model("afm", fields, k=6, t=5, seed=4)
    ids, values = random_rows(2, fields, seed=5, one_hot=False)
    table = coalition_values(model, ids, values).numpy()  # (R, C)
    higher = higher_order_terms(model, ids, values)
    triples = list(itertools.combinations(range(fields), 3))
    assert [tuple(t) for t in higher.triples.tolist()] == triples
    for r in range(2):
        def game(coalition_matrix, r=r):
            return table[r][(coalition_matrix.astype(np.int64) << np.arange(fields)).sum(1)]

        computer = ExactComputer(game, n_players=fields)
        sii, moebius = computer("SII", order=3), computer("Moebius", order=fields)
        for t, triple in enumerate(triples):
            assert higher.triple_interaction[r, t].item() == pytest.approx(sii[triple], abs=1e-9)
            assert higher.triple_mobius[r, t].item() == pytest.approx(moebius[triple], abs=1e-9)
        high = sum(moebius[s] for s in itertools.chain(*(itertools.combinations(range(fields), n)
                                                          for n in range(3, fields + 1))))
        assert higher.non_pairwise[r].item() == pytest.approx(high, abs=1e-9)


# --- effects of three fields --------------------------------------------------------------------------

def test_an_effect_is_described_as_the_pairs_it_is_seen_as():
    effects = pd.DataFrame([("site x position x device", ["site", "position", "device"],
                             ["site x position", "site x device", "position x device"], 0.7, [0.9, 0.3, 0.2],
                             "site x position", "device", 0.5)], columns=list(EFFECT_COLUMNS))
    assert describe_effect(effects.iloc[0]) == ("site x position x device: one effect, seen as site x position "
                                                "(gated by device), site x device, position x device")


@pytest.mark.parametrize("seed", [3, pytest.param(0, marks=pytest.mark.slow), pytest.param(1, marks=pytest.mark.slow),
                                  pytest.param(2, marks=pytest.mark.slow), pytest.param(4, marks=pytest.mark.slow)])
def test_a_briefly_trained_afm_shows_the_planted_three_field_effect(seed, one_thread):
    """random_planted's gated pair (i x j only where g = u*) is an effect of three fields: the AFM's
    order-3 interaction and the labels' gate table find that triple, and only it (docs/explain.md:
    5 seeds of 5, 8,000 rows, 20 epochs). Seed 3 is fast; the others are marked slow."""
    data, truth = planted_dataset(seed, rows=8000)
    model = fit_recipe(preset("quick", "afm", device="cpu", seed=seed, epochs=20), data).checkpoint.model.eval()
    explanation = explain_pairs(model, data.test, data.schema, data.train, rows=256)
    effects = explanation.effects
    planted = sorted(truth.gated.split(" x ") + [truth.gate], key=truth.fields.index)
    assert list(effects["fields"]) == [planted], (truth.describe(), effects)
    line = effects.iloc[0]
    assert (line["gated_pair"], line["gate"]) == (truth.gated, truth.gate)
    assert line["strength"] > 0 and len(line["pairs"]) == 3
    marked = explanation.table.set_index("pair")["part_of_effect"]
    assert set(marked[marked != ""].index) == set(line["pairs"]) and set(marked[marked != ""]) == {line["effect"]}
    assert explanation.non_pairwise_share > 0
    # The rule needs the labels too: without a gate line, no triple is an effect.
    no_gates = explanation.gates.assign(data_strength=np.nan)
    strength = explanation.shapley.pair_interaction.abs().mean(0).numpy()
    assert len(three_field_effects(explanation.higher_order, strength, data.schema, no_gates)) == 0


def test_an_fm_has_no_three_field_effect_and_no_part_beyond_pairs():
    data, _ = planted_dataset(3, rows=2000)
    model = random_model("fm", len(data.schema.field_names), features=data.schema.num_features, seed=1).float()
    explanation = explain_pairs(model, data.test, data.schema, data.train, rows=64)
    assert len(explanation.effects) == 0 and list(explanation.effects.columns) == list(EFFECT_COLUMNS)
    assert (explanation.table["part_of_effect"] == "").all()
    assert explanation.non_pairwise_share < 1e-12
    assert effect_of_pairs(explanation.effects, data.schema) == [""] * data.schema.num_pairs
