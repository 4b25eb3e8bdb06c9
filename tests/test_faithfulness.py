from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from scipy.stats import kendalltau

from afm.analysis.attention import decompose_split
from afm.analysis.faithfulness import (
    AttentionBaselines,
    adversarial_attention,
    adversarial_attention_of,
    attention_baselines,
    attention_views,
    kendall_tau_b,
    rank_agreement,
    top_overlap,
)
from afm.data import Dataset, Split
from afm.errors import ConfigError, DataError
from afm.inference import outputs
from afm.metrics import evaluate_predictions
from afm.models import ModelConfig, build_model
from tests.conftest import random_dataset


def random_model(dataset, name="afm", scale=0.3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    model = build_model(ModelConfig(model=name, num_features=dataset.schema.num_features,
                                    num_fields=dataset.schema.num_fields, embedding_dim=6, attention_dim=5), seed=seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * scale)
    return model.eval()


# --------------------------------------------------------------------------- rank agreement


@pytest.mark.parametrize("kind", ["continuous", "tied"])
def test_kendall_tau_b_matches_scipy_per_row(kind):
    rng = np.random.default_rng(1)
    shape = (60, 10)
    if kind == "continuous":
        x, y = rng.normal(size=shape), rng.normal(size=shape)
        y[:20] = x[:20] + 0.3 * rng.normal(size=(20, 10))  # some rows agree
    else:
        x, y = rng.integers(0, 3, shape).astype(float), rng.integers(0, 4, shape).astype(float)
        x[0] = 2.0  # a constant row: no order, tau is undefined
    ours = kendall_tau_b(x, y)
    expected = np.array([kendalltau(a, b).statistic for a, b in zip(x, y)])
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12, equal_nan=True)
    if kind == "tied":
        assert np.isnan(ours[0])


def test_kendall_tau_b_in_chunks_equals_one_pass(monkeypatch):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(50, 8)), rng.integers(0, 3, (50, 8)).astype(float)
    whole = kendall_tau_b(x, y)
    monkeypatch.setattr("afm.analysis.faithfulness.CHUNK_SLOTS", 60)  # two rows a chunk
    np.testing.assert_array_equal(kendall_tau_b(x, y), whole)


def test_top_overlap_counts_the_shared_top_pairs():
    x = np.array([[5.0, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5]])
    y = np.array([[5.0, 0, 3, 4, 1, 2], [0, 1, 2, 3, 4, 5]])
    np.testing.assert_allclose(top_overlap(x, y, top=3), [2 / 3, 1.0])
    np.testing.assert_allclose(top_overlap(x, -x, top=3), [0.0, 0.0])
    np.testing.assert_allclose(top_overlap(x, y, top=10), [1.0, 1.0])  # k = min(top, P)
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(4000, 10)), rng.normal(size=(4000, 10))
    assert abs(top_overlap(a, b, 3).mean() - 0.3) < 0.02  # unrelated orders: k / P


def test_rank_agreement_compares_every_pair_of_views():
    rng = np.random.default_rng(4)
    attention = rng.dirichlet(np.ones(6), 30)
    views = {"attention": attention, "|contribution|": attention * 2 + 1, "|Shapley interaction|": rng.random((30, 6))}
    result = rank_agreement(views, top=2)
    assert set(result.tau) == {("attention", "|contribution|"), ("attention", "|Shapley interaction|"),
                               ("|contribution|", "|Shapley interaction|")}
    np.testing.assert_allclose(result.tau[("attention", "|contribution|")], 1.0)
    np.testing.assert_allclose(result.overlap[("attention", "|contribution|")], 1.0)
    assert len(result.frame()) == 3 * 30 and set(result.frame()["comparison"]) == set(result.summary()["comparison"])
    assert result.chance_overlap == pytest.approx(2 / 6)
    assert "does mark" in result.meaning("attention", "|contribution|")
    assert "median Kendall tau" in result.meaning()
    with pytest.raises(ConfigError):
        result.meaning("attention", "nothing")
    with pytest.raises(ConfigError):
        rank_agreement({"attention": attention})
    with pytest.raises(ConfigError):
        rank_agreement({"a": attention, "b": attention[:, :5]})
    with pytest.raises(ConfigError):
        rank_agreement({"a": attention, "b": np.full_like(attention, np.nan)})


def test_attention_views_come_from_the_decomposition():
    data = random_dataset()
    terms = decompose_split(random_model(data), data.valid)
    shapley = np.random.default_rng(0).normal(size=tuple(terms.pair_terms.shape))
    views = attention_views(terms, shapley)
    assert list(views) == ["attention", "|contribution|", "|Shapley interaction|"]
    np.testing.assert_allclose(views["|contribution|"], terms.pair_terms.abs().double().numpy())
    assert (views["|Shapley interaction|"] >= 0).all()
    result = rank_agreement(views)
    assert all(np.isfinite(t).all() for t in result.tau.values())


# --------------------------------------------------------------------------- uniform and frozen attention


def as_fwfm(afm, weights):
    """The FwFM that computes `afm` with fixed pair weights (needs the AFM's p = 1)."""
    fwfm = build_model(ModelConfig(model="fwfm", num_features=afm.config.num_features,
                                   num_fields=afm.config.num_fields, embedding_dim=afm.config.embedding_dim))
    fwfm.init_from(afm)
    with torch.no_grad():
        fwfm.field_pair_weights.copy_(torch.as_tensor(weights, dtype=torch.float32))
    return fwfm.eval()


@pytest.mark.parametrize("task", ["regression", "binary"])
def test_baselines_equal_the_fwfm_they_describe(task):
    data = random_dataset(num_rows=600)
    if task == "binary":
        splits = {n: Split(s.feature_ids, s.feature_values, np.where(s.labels > np.median(s.labels), 1.0, -1.0)
                           .astype(np.float32)) for n, s in data.splits.items()}
        data = Dataset("binary", data.schema, splits, "memory")
    model = random_model(data)
    with torch.no_grad():
        model.projection.fill_(1.0)  # then value_ij = <e_i, e_j>, as in an FwFM
    result = attention_baselines(model, data.valid, data.train, data.schema, task=task)
    mean = decompose_split(model, data.train).pair_weights.double().mean(0).numpy()
    np.testing.assert_allclose(result.frozen_weights, mean, rtol=1e-10)
    pairs = data.schema.num_pairs
    for scores, scorer in ((result.per_row, model), (result.frozen, as_fwfm(model, mean)),
                           (result.uniform, as_fwfm(model, np.full(pairs, 1 / pairs)))):
        predicted = outputs(scorer, *(torch.from_numpy(a) for a in (data.valid.feature_ids, data.valid.feature_values)))
        expected = evaluate_predictions(predicted, data.valid.labels, task, data.label_range)
        assert scores.keys() == expected.keys()
        for key in expected:
            assert scores[key] == pytest.approx(expected[key], rel=1e-4)
    assert result.metric == {"regression": "rmse", "binary": "logloss"}[task]
    assert list(result.frame()["attention"]) == ["per-row attention", "uniform attention 1/P",
                                                 "frozen mean attention (FwFM)"]
    assert result.pair_names == data.schema.pair_names() and result.rows == len(data.valid)


def test_constant_attention_is_recognised_as_unused():
    data = random_dataset()
    model = random_model(data)
    with torch.no_grad():
        model.attention_h.zero_()  # every score 0: a = 1/P in every row
    result = attention_baselines(model, data.valid, data.train)
    assert result.uniform["rmse"] == pytest.approx(result.per_row["rmse"], rel=1e-6)
    assert result.frozen["rmse"] == pytest.approx(result.per_row["rmse"], rel=1e-6)
    assert "this AFM does not use its attention" in result.verdict()


def test_verdicts_follow_the_numbers():
    def baselines(learned, uniform, frozen):
        return AttentionBaselines("regression", "rmse", {"rmse": learned}, {"rmse": uniform}, {"rmse": frozen},
                                  np.ones(3) / 3, ["a", "b", "c"], 10, 0.01)

    assert "does not use per-row attention" in baselines(0.30, 0.40, 0.302).verdict()
    assert "does not use per-row attention" in baselines(0.30, 0.40, 0.25).verdict()  # frozen even better
    assert "uses per-row attention" in baselines(0.30, 0.40, 0.33).verdict()
    assert "+10.0%" in baselines(0.30, 0.40, 0.33).verdict()


def test_baselines_refuse_what_they_cannot_measure():
    data = random_dataset()
    with pytest.raises(ConfigError, match="need an AFM"):
        attention_baselines(random_model(data, "fwfm"), data.valid, data.train)
    model = random_model(data)
    with pytest.raises(ConfigError, match="task"):
        attention_baselines(model, data.valid, data.train, task="ranking")
    with pytest.raises(DataError, match="no rows"):
        attention_baselines(model, data.valid.take(np.arange(0)), data.train)
    with pytest.raises(DataError, match="binary"):
        attention_baselines(model, data.valid, data.train, task="binary")  # real-valued labels


# --------------------------------------------------------------------------- adversarial attention


def lp_oracle(a, s, epsilon):
    """max TV over simplex ∩ slab by brute force: |x| = max over signs, so the maximum over all
    sign patterns σ of the LP max ½ σ·(x - a) is the maximum TV."""
    target, best = a @ s, 0.0
    for sigma in itertools.product((-1.0, 1.0), repeat=len(a)):
        sigma = np.array(sigma)
        done = linprog(-0.5 * sigma, A_ub=np.stack([s, -s]), b_ub=[target + epsilon, epsilon - target],
                       A_eq=np.ones((1, len(a))), b_eq=[1.0], bounds=[(0, None)] * len(a), method="highs")
        assert done.status == 0
        best = max(best, -done.fun - 0.5 * sigma @ a)
    return best


def check_feasible(result, a, s):
    best = result.attention
    assert (best >= 0).all() and np.allclose(best.sum(1), 1.0)
    change = ((best - a) * s).sum(1)
    np.testing.assert_allclose(result.prediction_change, change)
    assert (np.abs(change) <= result.epsilon + 1e-9).all()
    np.testing.assert_allclose(result.max_tv, 0.5 * np.abs(best - a).sum(1), atol=1e-9)


@pytest.mark.parametrize("pairs", [2, 3, 5])
def test_adversarial_attention_matches_a_linear_programming_oracle(pairs):
    rng = np.random.default_rng(pairs)
    a = rng.dirichlet(np.full(pairs, 0.7), 8)
    s = rng.normal(size=(8, pairs)) * rng.choice([0.1, 1.0, 5.0], (8, 1))
    for epsilon in (0.0, 0.05, 0.5):
        result = adversarial_attention(a, s, epsilon)
        check_feasible(result, a, s)
        expected = [lp_oracle(a[r], s[r], epsilon) for r in range(len(a))]
        np.testing.assert_allclose(result.max_tv, expected, atol=1e-7)


def test_no_feasible_sample_beats_the_adversarial_attention():
    rng = np.random.default_rng(7)
    rows, pairs = 5, 6
    a, s = rng.dirichlet(np.ones(pairs), rows), rng.normal(size=(rows, pairs))
    result = adversarial_attention(a, s, 0.1)
    check_feasible(result, a, s)
    for r in range(rows):
        samples = np.concatenate([rng.dirichlet(np.full(pairs, alpha), 20_000) for alpha in (0.05, 0.3, 1.0)])
        feasible = samples[np.abs(samples @ s[r] - a[r] @ s[r]) <= 0.1]
        assert len(feasible) > 100
        assert (0.5 * np.abs(feasible - a[r]).sum(1)).max() <= result.max_tv[r] + 1e-12


def test_adversarial_attention_edge_cases():
    a = np.array([[0.5, 0.3, 0.2], [0.6, 0.2, 0.2]])
    s = np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]])
    result = adversarial_attention(a, s, 0.0)
    check_feasible(result, a, s)
    assert result.max_tv[0] == pytest.approx(0.8)  # equal values: any attention, all weight on the smallest a
    wide = adversarial_attention(a, s, 100.0)
    np.testing.assert_allclose(wide.max_tv, 1 - a.min(1))
    assert "do not pin down" in wide.meaning() and wide.summary()["rows"] == 2
    chunked = adversarial_attention(np.tile(a, (50, 1)), np.tile(s, (50, 1)), 0.0)
    np.testing.assert_allclose(chunked.max_tv, np.tile(result.max_tv, 50))


def test_adversarial_attention_of_an_afm():
    data = random_dataset()
    terms = decompose_split(random_model(data), data.valid)
    result = adversarial_attention_of(terms, 0.05)
    check_feasible(result, terms.pair_weights.double().numpy(), terms.pair_values.double().numpy())
    assert result.max_tv.shape == (len(data.valid),) and (result.max_tv <= 1).all()
    assert result.meaning().startswith("Attention as different as TV")


def test_adversarial_attention_checks_its_inputs():
    a, s = np.full((2, 3), 1 / 3), np.ones((2, 3))
    with pytest.raises(ConfigError, match="sum to 1"):
        adversarial_attention(a * 2, s, 0.1)
    with pytest.raises(ConfigError, match="epsilon"):
        adversarial_attention(a, s, -1.0)
    with pytest.raises(ConfigError, match="shape"):
        adversarial_attention(a, s[:, :2], 0.1)
