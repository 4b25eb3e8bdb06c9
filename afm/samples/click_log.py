"""A generated click log of random structure, sized like a user's upload: many fields, heavy-tailed
ids (a few values in most rows, a long tail seen once or twice), main effects, planted pairs that
act in every row and one pair that acts only where a gating field takes some of its values.

    s = b + sum_f w_f[x_f] + sum_(a,b) s_ab u_a[x_a] . v_b[x_b] + s_g u_i[x_i] . v_j[x_j] 1(x_g in G)

Each pair's effect is a rank-2 product of random per-value vectors (what a factorization model can
learn from ids seen a few times), scaled so that s is its RMS size where it acts. Regression: the
label is s plus Gaussian noise. Binary: the label is 1 with probability sigmoid(s - c), c chosen so
that about a quarter of the rows are clicks. Value frequencies are Zipf-like with a random exponent
per field. A seed draws everything; the same seed gives the same rows. `afm.samples.random_planted`
is the small-cardinality counterpart that the pair-recovery tests use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from afm.data import Dataset

CARDINALITY = (2, 400)  # log-uniform range of an ordinary field's values
LARGE_FIELDS = 2  # fields with ids in the thousands (user, item)
ZIPF = (0.9, 1.4)  # range of the frequency exponent of a field's values
MAIN_EFFECT = 0.4  # std of the first-order weights
PAIRS = 3  # pairs that act in every row
PAIR_STRENGTH = (0.5, 1.0)  # RMS size of a pair's effect where it acts
GATED_STRENGTH = (1.0, 1.5)
NOISE = 0.5  # std of the regression label's noise
CLICK_RATE = 0.25  # about this share of binary labels is 1


@dataclass
class ClickLog:
    """What was planted, for reports: field sizes, the pairs and the gate."""

    seed: int
    task: str
    cardinalities: tuple[int, ...]
    pairs: tuple[str, ...]
    gated: str
    gate: str

    def describe(self) -> str:
        return (f"seed {self.seed} ({self.task}): {len(self.cardinalities)} fields of {list(self.cardinalities)} "
                f"values, heavy-tailed; pairs {', '.join(self.pairs)} in every row, {self.gated} only for some "
                f"values of {self.gate}")


def _frequencies(rng: np.random.Generator, size: int) -> np.ndarray:
    """Zipf-like probabilities of a field's `size` values, in a random order."""
    weights = 1.0 / np.arange(1, size + 1) ** rng.uniform(*ZIPF)
    return rng.permutation(weights / weights.sum())


def _pair_term(rng: np.random.Generator, a: np.ndarray, b: np.ndarray, sizes: tuple[int, int], strength: float,
               where: np.ndarray | None = None) -> np.ndarray:
    """A rank-2 interaction of value columns `a`, `b` (N,), RMS `strength` over the rows `where`."""
    u, v = rng.normal(size=(sizes[0], 2)), rng.normal(size=(sizes[1], 2))
    term = (u[a] * v[b]).sum(1)  # (N,)
    acting = np.ones(len(a), bool) if where is None else where
    term = term - term[acting].mean()
    term = term * strength / max(term[acting].std(), 1e-9)
    return np.where(acting, term, 0.0)


def click_log(seed: int, rows: int = 30_000, fields: int = 13, task: str = "binary") -> tuple[pd.DataFrame, ClickLog]:
    """A frame of `rows` rows: `fields` text columns f0.. (values like "f3_17") and `label`."""
    rng = np.random.default_rng(seed)
    sizes = np.exp(rng.uniform(np.log(CARDINALITY[0]), np.log(CARDINALITY[1]), fields)).round().astype(int)
    sizes[rng.choice(fields, LARGE_FIELDS, replace=False)] = rng.integers(rows // 20, rows // 6, LARGE_FIELDS)
    values = np.stack([rng.choice(size, rows, p=_frequencies(rng, size)) for size in sizes], axis=1)  # (N, F)
    signal = rng.normal(0, 0.3) + sum(rng.normal(0, MAIN_EFFECT, size)[values[:, f]] for f, size in enumerate(sizes))
    everything = [(a, b) for a in range(fields) for b in range(a + 1, fields)]
    chosen = [everything[i] for i in rng.choice(len(everything), PAIRS + 1, replace=False)]
    for a, b in chosen[:PAIRS]:
        signal = signal + _pair_term(rng, values[:, a], values[:, b], (sizes[a], sizes[b]),
                                     rng.uniform(*PAIR_STRENGTH))
    i, j = chosen[PAIRS]
    gate = int(rng.choice([f for f in range(fields) if f not in (i, j)]))
    share = np.bincount(values[:, gate], minlength=sizes[gate]) / rows
    open_values = np.flatnonzero(np.cumsum(share[rng.permutation(sizes[gate])]) <= 0.4)  # about 40 % of rows
    where = np.isin(values[:, gate], open_values) if len(open_values) else values[:, gate] == np.argmax(share)
    signal = signal + _pair_term(rng, values[:, i], values[:, j], (sizes[i], sizes[j]), rng.uniform(*GATED_STRENGTH),
                                 where)
    if task == "binary":
        offset = np.quantile(signal, 1 - CLICK_RATE)
        labels = (rng.uniform(size=rows) < 1 / (1 + np.exp(-(signal - offset)))).astype(int)
    else:
        labels = (signal + NOISE * rng.normal(size=rows)).round(4)
    frame = pd.DataFrame({f"f{f}": np.char.add(f"f{f}_", values[:, f].astype(str)) for f in range(fields)})
    frame["label"] = labels
    truth = ClickLog(seed, task, tuple(int(s) for s in sizes), tuple(f"f{a} x f{b}" for a, b in chosen[:PAIRS]),
                     f"f{i} x f{j}", f"f{gate}")
    return frame, truth


def write_click_log(path: str | Path, seed: int, rows: int = 30_000, fields: int = 13,
                    task: str = "binary") -> ClickLog:
    """`click_log` written as a CSV file (what a user would upload)."""
    frame, truth = click_log(seed, rows, fields, task)
    frame.to_csv(path, index=False)
    return truth


def click_log_dataset(seed: int, rows: int = 30_000, fields: int = 13, task: str = "binary") -> Dataset:
    """`click_log` read as its CSV file would be (afm.api.read_data: the same encoding, rare values
    pooled, split 70/20/10 with `seed`)."""
    from afm.api import read_data  # here: the front door imports most of the package

    frame, truth = click_log(seed, rows, fields, task)
    dataset = read_data(frame, "label", seed)
    dataset.name = f"click-log-{task}-{seed}"
    dataset.notes.append(truth.describe())
    return dataset
