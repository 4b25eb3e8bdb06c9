"""Planted data of random structure, for testing what the pair views recover on data nobody
designed by hand: a seed draws the number of fields, their cardinalities, the main effects, the
two planted pairs and their strengths, the gating field and the one value of it where the gated
pair acts.

    y = w0 + sum_f w_f[x_f] + s_on T_on[x_a, x_b] + s_gated T_gated[x_i, x_j] 1(x_g = u*) + noise

Each T is a random table, double-centred (zero mean along each row and each column, so it is a
pure two-way interaction: no main effect leaks out of it) and scaled to unit standard deviation,
so s is the RMS size of the pair's effect in label units where it acts. Values are drawn
uniformly, so the centring holds in the data too and the gated term, zero on average for every
value of i, j and g alone, adds no interaction to the pairs (i, g) and (j, g). Every other pair
contributes nothing. Seeded: the same seed gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from afm.data import Dataset, FieldSchema, Split
from afm.data.splits import split_indices

FIELDS = (5, 8)  # fewest and most fields (inclusive)
CARDINALITY = (2, 6)  # fewest and most values of a field (inclusive)
ALWAYS_ON_STRENGTH = (0.6, 1.2)  # range of s_on, label units
GATED_STRENGTH = (1.0, 1.6)  # range of s_gated where the gate is open
MAIN_EFFECT = 0.5  # std of the first-order weights
NOISE = 0.4  # std of the label noise


@dataclass
class Truth:
    """What was planted, by name, and the tables that make the noiseless label."""

    seed: int
    fields: tuple[str, ...]  # "f0", "f1", ...
    cardinalities: tuple[int, ...]
    always_on: str  # the pair that acts in every row, "f1 x f4" (schema.pair_names order)
    gated: str  # the pair that acts only where gate = gate_value
    gate: str  # the gating field
    gate_value: str  # the value name of the gate where the gated pair acts, "f2_3"
    gate_value_id: int  # its feature id
    strengths: dict[str, float]  # pair -> s
    noise: float
    bias: float = field(repr=False, default=0.0)
    main: list[np.ndarray] = field(repr=False, default_factory=list)  # (|f|,) per field
    tables: dict[str, np.ndarray] = field(repr=False, default_factory=dict)  # pair -> (|a|, |b|), strength in

    @property
    def pairs(self) -> tuple[str, str]:
        return self.always_on, self.gated

    def _ends(self, pair: str) -> tuple[int, int]:
        first, second = pair.split(" x ")
        return self.fields.index(first), self.fields.index(second)

    def signal(self, feature_ids: np.ndarray) -> np.ndarray:
        """The noiseless label of rows (N, F) of feature ids: labels minus the noise."""
        offsets = np.concatenate(([0], np.cumsum(self.cardinalities)[:-1]))
        values = np.asarray(feature_ids) - offsets  # (N, F) value index within each field
        y = self.bias + sum(weights[values[:, f]] for f, weights in enumerate(self.main))  # (N,)
        for pair, table in self.tables.items():
            a, b = self._ends(pair)
            term = table[values[:, a], values[:, b]]  # (N,)
            if pair == self.gated:
                term = term * (feature_ids[:, self.fields.index(self.gate)] == self.gate_value_id)
            y = y + term
        return y

    def describe(self) -> str:
        on, gated = (f"{p} (strength {self.strengths[p]:.2f})" for p in self.pairs)
        return (f"seed {self.seed}: {len(self.fields)} fields of {list(self.cardinalities)} values; {on} in every "
                f"row, {gated} only where {self.gate} is {self.gate_value}; noise {self.noise:g}")


def _pure_interaction(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A random (rows, cols) table with zero row and column means and unit standard deviation."""
    table = rng.normal(size=(rows, cols))
    table = table - table.mean(0) - table.mean(1, keepdims=True) + table.mean()
    return table / table.std()


def _structure(rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int], tuple[int, int], int, int]:
    """(cardinalities (F,), always-on pair, gated pair, gate field, gate value), all drawn."""
    fields = int(rng.integers(FIELDS[0], FIELDS[1] + 1))
    sizes = rng.integers(CARDINALITY[0], CARDINALITY[1] + 1, fields)  # (F,)
    everything = [(a, b) for a in range(fields) for b in range(a + 1, fields)]
    gated = everything[int(rng.integers(len(everything)))]
    gate = int(rng.choice([f for f in range(fields) if f not in gated]))
    # The always-on pair is any other pair: it may share a field with the gated one, not the gate alone.
    others = [p for p in everything if p != gated and gate not in p]
    always_on = others[int(rng.integers(len(others)))]
    return sizes, always_on, gated, gate, int(rng.integers(sizes[gate]))


def planted_dataset(seed: int, rows: int = 12_000, noise: float = NOISE) -> tuple[Dataset, Truth]:
    """A Dataset (splits 70/20/10, seeded) of `rows` one-hot rows and the Truth planted in it."""
    rng = np.random.default_rng(seed)
    sizes, always_on, gated, gate, u_star = _structure(rng)
    fields = len(sizes)
    names = tuple(f"f{f}" for f in range(fields))
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))  # (F,)
    strengths = {always_on: float(rng.uniform(*ALWAYS_ON_STRENGTH)), gated: float(rng.uniform(*GATED_STRENGTH))}
    pair_name = {p: f"{names[p[0]]} x {names[p[1]]}" for p in strengths}
    truth = Truth(seed, names, tuple(int(s) for s in sizes), pair_name[always_on], pair_name[gated], names[gate],
                  f"{names[gate]}_{u_star}", int(offsets[gate] + u_star),
                  {pair_name[p]: round(s, 4) for p, s in strengths.items()}, noise,
                  bias=float(rng.normal(0, 0.3)), main=[rng.normal(0, MAIN_EFFECT, s) for s in sizes])
    for p in (always_on, gated):
        truth.tables[pair_name[p]] = truth.strengths[pair_name[p]] * _pure_interaction(rng, sizes[p[0]], sizes[p[1]])
    values = np.stack([rng.integers(0, s, rows) for s in sizes], axis=1)  # (N, F)
    ids = (values + offsets).astype(np.int64)  # (N, F)
    labels = (truth.signal(ids) + noise * rng.normal(size=rows)).astype(np.float32)  # (N,)
    schema = FieldSchema(names, np.repeat(np.arange(fields), sizes).tolist(),
                         [f"{names[f]}_{v}" for f in range(fields) for v in range(sizes[f])])
    everything = Split(ids, np.ones(ids.shape, np.float32), labels)
    splits = {name: everything.take(part) for name, part in split_indices(rows, seed).items()}
    dataset = Dataset(f"planted-{seed}", schema, splits, f"memory (afm.samples.random_planted, seed {seed})",
                      notes=[truth.describe(), f"split 70/20/10 with seed {seed}"])
    return dataset, truth
