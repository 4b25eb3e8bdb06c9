"""Would this ranking survive another seed? The same recipe trained with several seeds, each
model's field pairs ranked by each measure, and the rankings compared (Wiegreffe & Pinter 2019
check an explanation's variance across seeds before reading it).

Per measure: the mean Kendall tau-b between every two seeds' rankings of the P pairs, the mean
share of the top 3 they have in common, and per pair the best and worst rank it took (1 = the
most important). The measures are the columns of the ranked table (`afm.analysis.pairs`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from afm.analysis.faithfulness import kendall_tau_b, top_overlap
from afm.analysis.gates import GateResult
from afm.analysis.pairs import explain_pairs, label_gates_of
from afm.data import Dataset, Split
from afm.errors import ConfigError
from afm.models import PairwiseModel

# measure -> the ranked table's column it ranks by (larger = more important)
MEASURES = {"attention": "attention_mean", "contribution": "contribution_abs_mean",
            "shapley": "shapley_abs_mean", "taylor": "taylor_abs_mean"}
TOP = 3
STABLE_TAU, SHAKY_TAU = 0.7, 0.4  # mean tau at or above: stable; below SHAKY_TAU: unstable
TOP_HOLDS = 2 / 3  # two seeds share at least 2 of their top 3: the top holds, whatever the order below


@dataclass
class SeedStability:
    """Rankings of one recipe's field pairs across seeds, compared."""

    seeds: list[int]
    pairs: list[str]  # pair names, in the order of `ranks`' columns
    ranks: dict[str, np.ndarray]  # measure -> (S, P) rank of each pair under each seed, 1 = most important
    kendall_tau: dict[str, float]  # measure -> mean tau-b over the S(S-1)/2 pairs of seeds
    top3_overlap: dict[str, float]  # measure -> mean share of the top 3 two seeds share

    def summary(self) -> dict:
        """The JSON of `afm pairs --seeds`: {measure: {"kendall_tau": ..., "top3_overlap": ...}}."""
        return {m: {"kendall_tau": round(self.kendall_tau[m], 4), "top3_overlap": round(self.top3_overlap[m], 4)}
                for m in self.ranks}

    def rank_ranges(self) -> pd.DataFrame:
        """One line per pair: `<measure>_rank_min` and `<measure>_rank_max` across the seeds."""
        columns = {"pair": self.pairs}
        for measure, ranks in self.ranks.items():
            columns[f"{measure}_rank_min"] = ranks.min(0)
            columns[f"{measure}_rank_max"] = ranks.max(0)
        return pd.DataFrame(columns)

    def verdict(self, measure: str) -> str:
        """One sentence on one measure: can its ranking be read, or would another seed change it?"""
        tau, shared, count = self.kendall_tau[measure], self.top3_overlap[measure], len(self.seeds)
        facts = (f"{measure.capitalize()}: over {count} seeds the pair rankings agree with mean Kendall tau "
                 f"{tau:.2f}, and two seeds share {shared * TOP:.1f} of their top {TOP}")
        if not np.isfinite(tau):
            return facts + ": the measure is the same for every pair, so there is no ranking to compare."
        if tau >= STABLE_TAU:
            return facts + ": stable, another seed would rank the pairs much the same."
        if shared >= TOP_HOLDS:
            return facts + ": its top pairs hold, the order below them is the seed's; read the top, not the rest."
        if tau >= SHAKY_TAU:
            return facts + ": the broad order holds but the top pairs change with the seed; read it as a hint."
        return facts + ": unstable, this ranking is mostly the seed's, not the data's."

    def verdicts(self) -> list[str]:
        return [self.verdict(m) for m in self.ranks]


def _ranks(scores: np.ndarray) -> np.ndarray:
    """(S, P) scores -> (S, P) ranks, 1 for the largest; ties keep the table's order (stable)."""
    order = np.argsort(-scores, axis=1, kind="stable")  # (S, P)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :].repeat(len(scores), 0), axis=1)
    return ranks


def seed_stability(tables: list[pd.DataFrame], seeds: list[int]) -> SeedStability:
    """Compare the ranked tables (`PairExplanation.table`, one per seed, any row order) of models
    trained with `seeds`. A measure is left out where any table lacks it or holds NaN."""
    if len(tables) < 2 or len(tables) != len(seeds):
        raise ConfigError(f"stability needs two or more seeds, one table each; got {len(tables)} tables "
                          f"for {len(seeds)} seeds")
    pairs = list(tables[0]["pair"])
    aligned = []
    for table in tables:
        if sorted(table["pair"]) != sorted(pairs):
            raise ConfigError("the seeds' tables name different field pairs; they must come from one dataset")
        aligned.append(table.set_index("pair").loc[pairs])
    ranks, taus, overlaps = {}, {}, {}
    left, right = np.triu_indices(len(tables), k=1)  # every two seeds
    for measure, column in MEASURES.items():
        if any(column not in t.columns for t in aligned):
            continue
        scores = np.stack([t[column].to_numpy(np.float64) for t in aligned])  # (S, P)
        if not np.isfinite(scores).all():
            continue
        ranks[measure] = _ranks(scores)
        if len(pairs) < 2:
            taus[measure], overlaps[measure] = float("nan"), 1.0
            continue
        with np.errstate(invalid="ignore"):
            tau = kendall_tau_b(scores[left], scores[right])  # (S(S-1)/2,) NaN where one seed ties every pair
        taus[measure] = float(np.nanmean(tau)) if np.isfinite(tau).any() else float("nan")
        overlaps[measure] = float(top_overlap(scores[left], scores[right], TOP).mean())
    return SeedStability(list(seeds), pairs, ranks, taus, overlaps)


def compare_seeds(models: list[tuple[int, PairwiseModel]], split: Split, dataset: Dataset, *, rows: int,
                  coalitions: str, background: int, seed: int = 0, split_name: str = "",
                  first: pd.DataFrame | None = None, label_gates: GateResult | None = None) -> SeedStability:
    """Explain each (seed, model) on the same sampled rows of `split` and compare their rankings
    (`afm pairs --seeds` and the Attention page's check). `first`: the first model's ranked table
    when it is already made; `label_gates`: the data's gate table, made once here otherwise."""
    gates = label_gates or label_gates_of(dataset.train, dataset.schema)
    tables = [first] if first is not None else []
    tables += [explain_pairs(model, split, dataset.schema, dataset.train, rows=rows, coalitions=coalitions,
                             background=background, seed=seed, label_gates=gates, split_name=split_name).table
               for _, model in models[len(tables):]]
    return seed_stability(tables, [number for number, _ in models])
