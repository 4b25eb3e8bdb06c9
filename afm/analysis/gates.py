"""Where a pair's effect depends on a third field: (pair, gating field) ranked, from the data and
from the model. A fixed weight per field pair (FM: 1, FwFM: r_fg) gives a pair the same say in
every row; if brand x hour matters on phones and not on laptops, device *gates* it, and only a
per-row weight (AFM's attention) can follow.

- `data_gates`, model-free: how much the pair's two-way interaction in the labels changes across
  the values of each other field: a gate in the data is something a model could use.
- `model_gates`: how much a per-row score of the pair (Shapley interaction, contribution or
  attention) changes across them: a data gate with a flat attention spread is one attention ignores.
- `gate_table` ranks both; `strongest_gate` is what the Attention page preselects, with the gate's
  most different values (where the pair is strongest and weakest), not its most common.

N rows, F fields, P = F(F-1)/2 pairs (i < j, row-major), U values of a gating field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from afm.data import FieldSchema, Split
from afm.errors import ConfigError, DataError

BACKFIT_SWEEPS = 100  # most sweeps of the additive fit; it stops once its fitted values settle


@dataclass
class Levels:
    """A pair's strength in the rows where the gating field takes each of its qualifying values."""

    value_ids: np.ndarray  # (U,) feature ids of the gating field
    strength: np.ndarray  # (U,) the pair's strength in those rows
    support: np.ndarray  # (U,) rows counted for each value


@dataclass
class GateResult:
    """strength[p, g]: how much pair p's strength changes across the values of field g."""

    statistic: str  # one line: what `strength` measures, in which units
    schema: FieldSchema = field(repr=False)
    strength: np.ndarray  # (P, F) weighted std across values; NaN where g is in p or < 2 values qualify
    levels: dict[tuple[int, int], Levels]  # (p, g) -> per-value strengths, where strength is finite

    def extremes(self, pair: int, gate: int, count: int = 1) -> list[int]:
        """Feature ids of the gate's most different values for this pair: the `count` where the
        pair is strongest, then the `count` where it is weakest (strongest first)."""
        levels = self.levels.get((pair, gate))
        if levels is None:
            return []
        order = np.argsort(-levels.strength, kind="stable")
        chosen = list(order[:count]) + [u for u in order[::-1][:count] if u not in order[:count]]
        return [int(levels.value_ids[u]) for u in chosen]

    def describe(self, pair: int, gate: int, count: int = 1) -> str:
        """'strongest where device=phone (0.62, 1,203 rows); weakest where device=laptop (0.01, ...)'."""
        levels = self.levels.get((pair, gate))
        if levels is None:
            return ""
        where = {int(v): u for u, v in enumerate(levels.value_ids)}
        parts = [f"{self.schema.feature_label(i)} ({levels.strength[where[i]]:.3g}, {levels.support[where[i]]:,} rows)"
                 for i in self.extremes(pair, gate, count)]
        weak = "; weakest where " + ", ".join(parts[count:]) if parts[count:] else ""
        return "strongest where " + ", ".join(parts[:count]) + weak

    def frame(self) -> pd.DataFrame:
        """One line per (pair, gate) with a finite strength: pair, gate, strength, p, g."""
        pairs, gates = np.nonzero(np.isfinite(self.strength))
        names = self.schema.pair_names()
        return pd.DataFrame({"pair": [names[p] for p in pairs], "gate": [self.schema.field_names[g] for g in gates],
                             "strength": self.strength[pairs, gates], "p": pairs, "g": gates})


def _spread(levels: np.ndarray, support: np.ndarray) -> float:
    """Support-weighted standard deviation across values: sqrt(Σ n_u (m_u - m̄)² / Σ n_u)."""
    mean = np.average(levels, weights=support)
    return float(np.sqrt(np.average((levels - mean) ** 2, weights=support)))


def _group(codes: np.ndarray, count: int, weights: np.ndarray) -> np.ndarray:
    return np.bincount(codes, weights, minlength=count)


def _additive_fit(mean: np.ndarray, n: np.ndarray, row: np.ndarray, col: np.ndarray, rows: int,
                  cols: int) -> np.ndarray:
    """Residuals of the weighted least-squares fit mean_c ≈ α_row(c) + β_col(c) (weights n),
    by backfitting; on a complete balanced table this is ȳ_ab - ȳ_a· - ȳ_·b + ȳ."""
    weight_row, weight_col = _group(row, rows, n), _group(col, cols, n)  # (A',), (B',)
    alpha = _group(row, rows, n * mean) / weight_row  # (A',)
    residual, settled = mean - alpha[row], 1e-10 * (float(np.abs(mean).max()) + 1.0)  # (C,), a tolerance
    for _ in range(BACKFIT_SWEEPS):
        beta = _group(col, cols, n * (mean - alpha[row])) / weight_col  # (B',)
        alpha = _group(row, rows, n * (mean - beta[col])) / weight_row  # (A',)
        residual, before = mean - alpha[row] - beta[col], residual  # (C,) each
        if np.abs(residual - before).max() < settled:  # α, β alone may drift where the table is disconnected
            break
    return residual  # (C,)


def _interaction_levels(gate_i: tuple, gate_j: tuple, b: np.ndarray, kb: int, k_gate: int, y: np.ndarray,
                        y2: np.ndarray, min_support: int):
    """(gate value codes (U,), m(u) (U,), n_u (U,)) of one (pair, gate), see `data_gates`.
    gate_i = (ua (N,), gate code of each ua code): dense codes of (gate value, value of i);
    gate_j the same for j; b (N,) the code of j's value, kb its count; k_gate the gate's values."""
    (ua, ua_gate), (ub, ub_gate) = gate_i, gate_j
    cell, _ = pd.factorize(ua * kb + b)  # (N,) dense code of the (u, a, b) cell
    count = int(cell.max()) + 1
    n = np.bincount(cell, minlength=count)  # (C,)
    keep = n >= min_support  # (C,)
    if keep.sum() < 4:
        return None
    cell_ua, cell_ub = np.empty(count, np.int64), np.empty(count, np.int64)  # (C,) each
    cell_ua[cell], cell_ub[cell] = ua, ub
    total, square = _group(cell, count, y)[keep], _group(cell, count, y2)[keep]  # (C',) each
    n, cell_ua, cell_ub = n[keep].astype(np.float64), cell_ua[keep], cell_ub[keep]
    row_code, row_ids = pd.factorize(cell_ua)  # (C',), (A',) the (u, a) margins with support
    col_code, col_ids = pd.factorize(cell_ub)  # (C',), (B',) the (u, b) margins
    mean = total / n  # (C',) ȳ_uab
    residual = _additive_fit(mean, n, row_code, col_code, len(row_ids), len(col_ids))  # (C',)
    gate = ua_gate[cell_ua]  # (C',) the gate value code of each cell
    interaction = _group(gate, k_gate, n * residual**2)  # (K_g,) SS(u)
    within = _group(gate, k_gate, square - total * mean)  # (K_g,) within-cell sum of squares
    support = _group(gate, k_gate, n)  # (K_g,) n_u
    cells = np.bincount(gate, minlength=k_gate)  # (K_g,)
    values_i = np.bincount(ua_gate[row_ids], minlength=k_gate)  # (K_g,) values of i with a counted cell
    values_j = np.bincount(ub_gate[col_ids], minlength=k_gate)  # (K_g,) values of j
    freedom = cells - values_i - values_j + 1  # (K_g,) df(u)
    noise = within / np.maximum(support - cells, 1)  # (K_g,) pooled within-cell variance σ̂²(u)
    strength = np.sqrt(np.maximum(interaction - freedom * noise, 0.0) / np.maximum(support, 1))  # (K_g,) m(u)
    valid = np.flatnonzero((cells > 0) & (freedom >= 1))  # (U,)
    return valid, strength[valid], support[valid].astype(np.int64)


def data_gates(split: Split, schema: FieldSchema, min_support: int = 20) -> GateResult:
    """Model-free gates: for each pair (i, j) and each other field g, how much the pair's two-way
    interaction in the labels changes across the values u of g.

    Within the rows where g = u, count the cells (a, b) of values of i and j seen in at least
    `min_support` rows, with cell means ȳ_ab and counts n_ab. Fit ȳ_ab ≈ α_a + β_b by weighted
    least squares (weights n_ab; on a complete balanced table the residual is the classic
    ȳ_ab - ȳ_a· - ȳ_·b + ȳ) and take the interaction sum of squares SS(u) = Σ n_ab r_ab². Noise
    alone gives SS(u) ≈ df(u) σ̂²(u), df = cells - values of i - values of j + 1 (a connected table), σ̂² the pooled
    within-cell variance, so the pair's strength where g = u is

        m(u) = sqrt(max(SS(u) - df(u) σ̂²(u), 0) / n_u),

    the RMS size of the (i, j) interaction in label units (n_u: the rows of the counted cells).
    Values with df(u) < 1 (no 2 x 2 of supported cells) are skipped. The gate strength is the
    n_u-weighted standard deviation of m(u) over the values that qualify (NaN if fewer than 2):
    zero when the pair acts alike under every value of g. The levels keep every m(u), so the
    values where the pair is strongest and weakest can be shown."""
    if split.num_fields != schema.num_fields or len(split) == 0:
        raise DataError("split", f"no rows, or not the schema's {schema.num_fields} fields: no gates to look for")
    if not (isinstance(min_support, int) and min_support >= 2):  # a cell of one row has no within-cell variance
        raise ConfigError(f"min_support must be an integer of at least 2, got {min_support!r}")
    fields = schema.num_fields
    y = np.asarray(split.labels, dtype=np.float64)  # (N,)
    y2 = y * y  # (N,)
    codes, uniques = zip(*(pd.factorize(split.feature_ids[:, f]) for f in range(fields)))  # (N,) and (K_f,) each
    left, right = np.triu_indices(fields, k=1)  # (P,) each
    strength = np.full((len(left), fields), np.nan)  # (P, F)
    levels: dict[tuple[int, int], Levels] = {}
    for g in range(fields):
        if len(uniques[g]) < 2:
            continue
        joint = {}  # f -> (N,) dense code of (g's value, f's value), (K,) g's value code of each
        for f in range(fields):
            if f != g:
                code, ids = pd.factorize(codes[g].astype(np.int64) * len(uniques[f]) + codes[f])
                joint[f] = (code.astype(np.int64), ids // len(uniques[f]))
        for p, (i, j) in enumerate(zip(left, right)):
            if g in (i, j):
                continue
            found = _interaction_levels(joint[i], joint[j], codes[j], len(uniques[j]), len(uniques[g]), y, y2,
                                        min_support)
            if found is None or len(found[0]) < 2:
                continue
            gate_codes, m, support = found
            strength[p, g] = _spread(m, support)
            levels[(p, g)] = Levels(np.asarray(uniques[g])[gate_codes].astype(np.int64), m, support)
    statistic = ("n-weighted std across the gate's values of the RMS two-way interaction of the pair in the "
                 "labels, noise-corrected (label units)")
    return GateResult(statistic, schema, strength, levels)


def model_gates(pair_scores: np.ndarray, feature_ids: np.ndarray, schema: FieldSchema, min_support: int = 20,
                absolute: bool = True) -> GateResult:
    """Model-based gates: for each pair p and each other field g, the spread across the values u
    of g of the mean score of pair p over the rows where g = u.

    `pair_scores` (R, P) is any per-row score of the pairs: Shapley interaction, contribution
    a_ij s_ij (both taken as |score| with `absolute`), or attention a_ij (the attention spread).
    The level of value u is mean_{rows with g=u} |score_p|, over values seen in at least
    `min_support` rows; the strength is their n_u-weighted standard deviation, in the score's
    units (NaN if fewer than 2 values qualify). A large spread means the model treats the pair
    differently depending on g."""
    scores = np.asarray(pair_scores, dtype=np.float64)  # (R, P)
    ids = np.asarray(feature_ids)  # (R, F)
    if ids.ndim != 2 or ids.shape[1] != schema.num_fields:
        raise ConfigError(f"feature_ids must be (rows, {schema.num_fields}), got shape {ids.shape}")
    if scores.shape != (ids.shape[0], schema.num_pairs):
        raise ConfigError(f"pair_scores must be ({ids.shape[0]}, {schema.num_pairs}), got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ConfigError("pair_scores holds NaN or infinite values")
    if not (isinstance(min_support, int) and min_support >= 1):
        raise ConfigError(f"min_support must be a positive integer, got {min_support!r}")
    if absolute:
        scores = np.abs(scores)
    fields = schema.num_fields
    left, right = np.triu_indices(fields, k=1)  # (P,) each
    strength = np.full((len(left), fields), np.nan)  # (P, F)
    levels: dict[tuple[int, int], Levels] = {}
    for g in range(fields):
        values, code, support = np.unique(ids[:, g], return_inverse=True, return_counts=True)  # (U,), (R,), (U,)
        order = np.argsort(code, kind="stable")  # (R,)
        starts = np.concatenate(([0], np.cumsum(support)[:-1]))  # (U,)
        means = np.add.reduceat(scores[order], starts, axis=0) / support[:, None]  # (U, P)
        keep = support >= min_support  # (U,)
        if keep.sum() < 2:
            continue
        for p in np.flatnonzero((left != g) & (right != g)):
            strength[p, g] = _spread(means[keep, p], support[keep])
            levels[(int(p), g)] = Levels(values[keep].astype(np.int64), means[keep, p], support[keep])
    kind = "|score|" if absolute else "score"
    return GateResult(f"n-weighted std across the gate's values of the mean {kind} (score units)", schema,
                      strength, levels)


class GateChoice(NamedTuple):
    """What the Attention page preselects: a pair, its gate, and the gate's values to compare."""

    pair: str
    gate: str
    values: dict[str, int]  # value name -> feature id: where the pair is strongest, then weakest


def gate_table(data: GateResult, model: GateResult | None = None, attention: GateResult | None = None,
               count: int = 1) -> pd.DataFrame:
    """(pair, gate) ranked by data strength, strongest first: columns pair, gate, data_strength,
    model_strength and attention_spread (NaN where not given or not measurable), values (the
    gate's `count` values where the pair is strongest and weakest in the data, as text; from the
    model where the data cannot tell), value_ids (their feature ids), p and g (pair and gate
    index). Combinations the data cannot measure (too little support) come last, by model strength."""
    results = {"data_strength": data, "model_strength": model, "attention_spread": attention}
    grids = {}
    for name, result in results.items():
        if result is not None and result.strength.shape != data.strength.shape:
            raise ConfigError(f"{name}: a result of {result.strength.shape} pairs x fields, the data's is "
                              f"{data.strength.shape}")
        grids[name] = result.strength if result is not None else np.full(data.strength.shape, np.nan)  # (P, F)
    pairs, gates = np.nonzero(np.isfinite(np.stack(list(grids.values()))).any(0))  # (L,) each
    names = data.schema.pair_names()
    frame = pd.DataFrame({"pair": [names[p] for p in pairs], "gate": [data.schema.field_names[g] for g in gates],
                          **{name: grid[pairs, gates] for name, grid in grids.items()}, "p": pairs, "g": gates})
    sources = [next((r for r in (data, model, attention) if r is not None and (p, g) in r.levels), None)
               for p, g in zip(pairs, gates)]
    frame["values"] = [s.describe(p, g, count) if s else "" for p, g, s in zip(pairs, gates, sources)]
    frame["value_ids"] = [s.extremes(p, g, count) if s else [] for p, g, s in zip(pairs, gates, sources)]
    frame = frame.sort_values(["data_strength", "model_strength"], ascending=False, na_position="last", kind="stable")
    columns = ["pair", "gate", "data_strength", "model_strength", "attention_spread", "values", "value_ids", "p", "g"]
    return frame[columns].reset_index(drop=True)


def strongest_gate(table: pd.DataFrame, schema: FieldSchema) -> GateChoice | None:
    """The first line of `gate_table` with a finite data (else model) strength, as the pair, the
    gate and its most different values to show; None when nothing could be measured."""
    for column in ("data_strength", "model_strength"):
        measured = table[np.isfinite(table[column].to_numpy(dtype=np.float64))]
        if len(measured):
            line = measured.sort_values(column, ascending=False, kind="stable").iloc[0]
            return GateChoice(line["pair"], line["gate"], {schema.value_name(i): int(i) for i in line["value_ids"]})
    return None


def rows_by_values(split: Split, schema: FieldSchema, field_name: str, value_ids: list[int]) -> dict[str, np.ndarray]:
    """Boolean row masks (N,) for chosen values of a field, in the order given: like
    `rows_by_value`, but for a gate's most different values instead of its most common."""
    if field_name not in schema.field_names:
        raise ConfigError(f"no field {field_name!r}; fields are {list(schema.field_names)}")
    column = split.feature_ids[:, schema.field_names.index(field_name)]  # (N,)
    return {schema.value_name(int(i)): column == i for i in value_ids}


def gate_sentence(line: pd.Series, explained: str = "the explained rows") -> str:
    """One sentence on one line of `gate_table`, for the user; the label strength is measured on
    the training rows, the model's on `explained` ("256 test rows"), and the sentence says so."""
    text = f"The {line['pair']} interaction changes with {line['gate']}"
    if np.isfinite(line["data_strength"]):
        text += f" in the training labels (spread {line['data_strength']:.3g} in label units)"
    if line["values"]:
        text += f", {line['values']}"
    text += ": a fixed weight per pair (FM, FwFM) averages this away, only a per-row weight can follow it"
    if np.isfinite(line["attention_spread"]):
        text += (f"; on {explained}, this model's attention to the pair moves by {line['attention_spread']:.3g} "
                 f"across {line['gate']}")
    return text + "."
