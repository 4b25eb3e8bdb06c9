"""Stability across seeds (afm.analysis.stability, afm.fitting.refit_seeds, `afm pairs --seeds`):
the comparison against brute force on generated rankings, and on retrained models."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from afm.analysis.stability import MEASURES, TOP, seed_stability
from afm.errors import ConfigError


def tables_of(scores: np.ndarray, names: list[str]) -> list[pd.DataFrame]:
    """One ranked table per seed, every measure's column the same scores, rows shuffled."""
    rng = np.random.default_rng(len(names))
    out = []
    for row in scores:
        frame = pd.DataFrame({"pair": names, **{column: row for column in MEASURES.values()}})
        out.append(frame.iloc[rng.permutation(len(names))].reset_index(drop=True))
    return out


def brute_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall tau-b by counting every two positions."""
    concordant = discordant = ties_x = ties_y = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        if sx == 0:
            ties_x += 1
        if sy == 0:
            ties_y += 1
        if sx and sy:
            concordant += sx == sy
            discordant += sx != sy
    pairs = len(x) * (len(x) - 1) // 2
    return (concordant - discordant) / np.sqrt((pairs - ties_x) * (pairs - ties_y))


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 5), st.integers(3, 12), st.integers(0, 2**32 - 1))
def test_seed_comparison_matches_brute_force(seeds, pairs, seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=(seeds, pairs)).astype(float)  # ties on purpose
    if (scores == scores[:, :1]).all(axis=1).any():
        scores[:, 0] += 10  # no seed that ties every pair: tau is defined
    names = [f"p{i}" for i in range(pairs)]
    result = seed_stability(tables_of(scores, names), list(range(seeds)))
    expected_tau = np.mean([brute_tau(scores[a], scores[b]) for a, b in itertools.combinations(range(seeds), 2)])
    for measure in MEASURES:
        assert result.kendall_tau[measure] == pytest.approx(expected_tau)
        ranks = result.ranks[measure]  # (S, P), 1 = largest score
        for s in range(seeds):
            assert sorted(ranks[s]) == list(range(1, pairs + 1))
            by_name = dict(zip(result.pairs, ranks[s]))
            for p, q in itertools.permutations(range(pairs), 2):  # a larger score, a better (smaller) rank
                if scores[s, p] > scores[s, q]:
                    assert by_name[names[p]] < by_name[names[q]]
        ranges = result.rank_ranges().set_index("pair")
        assert (ranges[f"{measure}_rank_min"] <= ranges[f"{measure}_rank_max"]).all()
        assert 0.0 <= result.top3_overlap[measure] <= 1.0


def test_identical_rankings_are_stable_and_reversed_ones_are_not():
    names = [f"p{i}" for i in range(6)]
    same = seed_stability(tables_of(np.tile(np.arange(6.0), (3, 1)), names), [0, 1, 2])
    assert same.kendall_tau["shapley"] == pytest.approx(1.0) and same.top3_overlap["shapley"] == 1.0
    assert (same.rank_ranges()["shapley_rank_min"] == same.rank_ranges()["shapley_rank_max"]).all()
    assert "stable, another seed" in same.verdict("shapley")
    reversed_ = seed_stability(tables_of(np.stack([np.arange(6.0), -np.arange(6.0)]), names), [0, 1])
    assert reversed_.kendall_tau["shapley"] == pytest.approx(-1.0) and reversed_.top3_overlap["shapley"] == 0.0
    assert "unstable" in reversed_.verdict("shapley")
    assert reversed_.summary()["shapley"] == {"kendall_tau": -1.0, "top3_overlap": 0.0}
    assert TOP == 3


def test_a_flat_measure_says_there_is_no_ranking():
    names = ["a", "b", "c"]
    tables = tables_of(np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0]]), names)
    for table in tables:
        table["attention_mean"] = 1.0  # an FM: attention is 1 for every pair
    result = seed_stability(tables, [0, 1])
    assert np.isnan(result.kendall_tau["attention"])
    assert "same for every pair" in result.verdict("attention")


def test_bad_comparisons_are_one_line_errors():
    names = ["a", "b", "c"]
    with pytest.raises(ConfigError, match="two or more seeds"):
        seed_stability(tables_of(np.ones((1, 3)), names), [0])
    other = tables_of(np.ones((2, 3)), names)
    other[1]["pair"] = ["a", "b", "d"]
    with pytest.raises(ConfigError, match="different field pairs"):
        seed_stability(other, [0, 1])


def test_refit_seeds_keeps_the_checkpoint_and_retrains_its_recipe():
    from afm.checkpoint import load_checkpoint
    from afm.data import load_dataset
    from afm.fitting import refit_seeds
    from afm.paths import sample_dir

    checkpoint = load_checkpoint(sample_dir() / "sample" / "sample_fwfm.safetensors")
    dataset = load_dataset("sample")
    short = dataclasses.replace(checkpoint, train_config={**checkpoint.train_config, "epochs": 2})  # quick retrains
    models = refit_seeds(short, dataset, 3)
    assert [seed for seed, _ in models] == [checkpoint.recipe.seed + i for i in range(3)]
    assert models[0][1] is short.model
    weights = [model.embedding.weight.detach() for _, model in models]
    assert not np.allclose(weights[1].numpy(), weights[2].numpy())  # other seeds, other models
    with pytest.raises(ConfigError, match="2..20"):
        refit_seeds(short, dataset, 1)


@pytest.mark.slow
def test_the_attention_page_checks_stability_as_one_job():
    """Every widget at its default, then "Check stability": one scheduler job retrains the model's
    recipe (shortened here to 2 epochs) and the page gives a verdict per measure and the rank bands."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=180)
    at.switch_page("pages/attention.py").run()
    run = at.session_state["runs"][at.session_state["active_run"]]
    run.train_config = {**run.train_config, "epochs": 2}
    button = [b for b in at.button if b.label == "Check stability"][0]
    button.click().run()
    assert not at.exception, [e.value for e in at.exception]
    (job,) = at.session_state["stability_jobs"].values()
    assert job.join(timeout=600) and job.status == "done", (job.status, job.error)
    at.run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    verdicts = [m.value for m in at.markdown if "over 3 seeds the pair rankings agree" in m.value]
    assert len(verdicts) == len(job.stability.ranks) == 4  # attention, contribution, shapley, taylor
    titles = [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in at.get("plotly_chart")]
    assert any(title.startswith("Rank of each pair across seeds") for title in titles), titles


def test_a_top_that_holds_over_a_noisy_tail_is_said_so():
    """Three pairs far above the rest in every seed, the rest shuffled: a low tau, but the top holds."""
    rng = np.random.default_rng(0)
    scores = np.stack([np.concatenate([[30.0, 20.0, 10.0], rng.permutation(12) / 12]) for _ in range(3)])
    result = seed_stability(tables_of(scores, [f"p{i}" for i in range(15)]), [0, 1, 2])
    assert result.top3_overlap["shapley"] == 1.0 and result.kendall_tau["shapley"] < 0.7
    assert "its top pairs hold" in result.verdict("shapley")
