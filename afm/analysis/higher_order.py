"""What no pair explains: the interactions of three and more fields in a model's coalition table.

From the exact 2^F table v(S) of each row (afm.analysis.shapley) and its Möbius transform m
(v(S) = sum_{T ⊆ S} m(T)), the prediction splits by order: ŷ = v(∅) + sum_{|T|=1} m(T) +
sum_{|T|=2} m(T) + H, with H = sum_{|T|≥3} m(T) the part no order-2 explanation carries.

- `non_pairwise_share`: sum_r H_r² / sum_r (ŷ_r - mean ŷ)², over the explained rows: the fraction
  of the prediction's variance the order-≤2 Möbius part (v(∅) + mains + pairs) leaves unexplained,
  as 1 - R² of that part as a predictor of ŷ. 0 when every interaction is pairwise: exactly, for
  FM and FwFM (their v is a polynomial of order 2 in the players, under both coalition semantics).
  Above 0 for AFM, whose softmax couples all pairs of a row. Above 1 when the pairwise part is a
  worse predictor of ŷ than the mean: it and H are large and cancel (AFM, absent coalitions: a
  pair alone in the softmax gets all the attention, so m({i, j}) is many times its share of ŷ).
  Shapley-Taylor's order-2 terms cannot show any of this: they absorb every higher order by
  construction, so they always add up to ŷ.
- `three_field_effects`: triples of fields whose order-3 Shapley interaction (SII of order 3:
  sum_{T ⊇ ijk} m(T) / (|T| - 2), Grabisch and Roubens 1999) is large against their own pairs'
  SII and for which the labels' gate table sees one pair of the three change with the third: one
  effect, read by a pairwise table as three pairs ("user x item x device: one effect, seen as
  user x item (gated by device), user x device, item x device").
R rows, F fields, C = 2^F coalitions, P = F(F-1)/2 pairs, T = F(F-1)(F-2)/6 triples, i < j < k.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from afm.analysis.shapley import coalition_tables, mobius_transform, superset_sums
from afm.data import FieldSchema
from afm.errors import ConfigError
from afm.models import PairwiseModel

# A triple is one effect when all three hold (docs/explain.md, "Effects of three fields"):
EFFECT_PAIR_RATIO = 0.5  # its mean |order-3 SII| >= this x the largest mean |SII| of its three pairs
EFFECT_FLOOR = 0.1  # ... and >= this x the largest mean |SII| of any pair: it matters in the model at all
EFFECT_GATE_RATIO = 1 / 3  # ... and one of its (pair, gate) lines in the labels' gate table is >= this x the
#                            table's strongest line (random_planted: planted gates 4-12x the next line)
EFFECT_COLUMNS = ("effect", "fields", "pairs", "strength", "pair_strengths", "gated_pair", "gate", "gate_strength")


@dataclass
class HigherOrder:
    """The Möbius terms of R rows by order, and the order-3 terms of each triple (float64, CPU)."""

    coalitions: str  # "absent" or "background": what v(S) means
    prediction: torch.Tensor  # (R,) v(N), the sum of all Möbius terms
    empty: torch.Tensor  # (R,) v(∅)
    by_order: torch.Tensor  # (R, F + 1) sum of m(T) over |T| = 0..F (order 0: v(∅))
    triples: np.ndarray  # (T, 3) field indices i < j < k
    triple_mobius: torch.Tensor  # (R, T) m({i, j, k})
    triple_interaction: torch.Tensor  # (R, T) SII of order 3

    @property
    def non_pairwise(self) -> torch.Tensor:
        """(R,) H: the prediction's Möbius terms of order 3 and above."""
        return self.by_order[:, 3:].sum(1)

    def order_shares(self) -> dict[int, float]:
        """Order -> sum_r (its Möbius terms summed)² / sum_r (ŷ - mean ŷ)², orders 1..F (NaN if ŷ is constant)."""
        spread = float(((self.prediction - self.prediction.mean()) ** 2).sum())
        return {order: float((self.by_order[:, order] ** 2).sum()) / spread if spread > 0 else float("nan")
                for order in range(1, self.by_order.shape[1])}

    def non_pairwise_share(self) -> float:
        """sum_r H_r² / sum_r (ŷ_r - mean ŷ)² (module docstring); NaN if ŷ is the same in every row."""
        spread = float(((self.prediction - self.prediction.mean()) ** 2).sum())
        return float((self.non_pairwise ** 2).sum()) / spread if spread > 0 else float("nan")


class HigherOrderCollector:
    """Builds a `HigherOrder` from the Möbius tables of consecutive batches of rows: pass it as
    `on_mobius` to afm.analysis.shapley.pair_shapley to get both from one pass over the tables."""

    def __init__(self, fields: int):
        self.fields = fields
        self.triples = np.array(list(itertools.combinations(range(fields), 3)), dtype=np.int64).reshape(-1, 3)
        self.parts: dict[str, list[torch.Tensor]] = {}

    def __call__(self, moebius: torch.Tensor) -> None:
        """Keeps what `HigherOrder` needs of one (r, C) Möbius table; the table is left as it is."""
        device, fields = moebius.device, self.fields
        codes = torch.arange(1 << fields, device=device)  # (C,)
        size = ((codes[:, None] >> torch.arange(fields, device=device)) & 1).sum(1)  # (C,) |T|
        triples = torch.as_tensor((1 << self.triples).sum(1), device=device)  # (T,) the coalition {i, j, k}
        weight = torch.where(size >= 3, 1 / (size - 2).clamp_min(1).double(), 0.0)  # (C,)
        by_order = moebius @ torch.nn.functional.one_hot(size, fields + 1).double()  # (r, F + 1)
        found = {"prediction": moebius.sum(1), "empty": moebius[:, 0].clone(), "by_order": by_order,  # (r,) (r,)
                 "triple_mobius": moebius[:, triples],  # (r, T)
                 "triple_interaction": superset_sums(moebius * weight, fields)[:, triples]}  # (r, T)
        for name, tensor in found.items():
            self.parts.setdefault(name, []).append(tensor.cpu())

    def result(self, coalitions: str) -> HigherOrder:
        return HigherOrder(coalitions, triples=self.triples,
                           **{name: torch.cat(tensors) for name, tensors in self.parts.items()})


def higher_order_terms(model: PairwiseModel, ids, values, coalitions: str = "absent", background=None,
                       batch_rows: int | None = None) -> HigherOrder:
    """The Möbius terms by order and the order-3 terms of every triple of R rows (ids, values
    (R, F)), from the exact table of afm.analysis.shapley (same arguments as `pair_shapley`)."""
    collector = HigherOrderCollector(model.config.num_fields)
    for table in coalition_tables(model, ids, values, coalitions, background, batch_rows):
        collector(mobius_transform(table, model.config.num_fields))
    return collector.result(coalitions)


def non_pairwise_share(model: PairwiseModel, ids, values, coalitions: str = "absent", background=None) -> float:
    """The share of the prediction's variance over these rows that no order-2 explanation carries
    (module docstring): exactly 0 for FM and FwFM, above 0 for AFM."""
    return higher_order_terms(model, ids, values, coalitions, background).non_pairwise_share()


def _gate_lines(gates: pd.DataFrame, triple: set[int], fields: int) -> pd.DataFrame:
    """The (pair, gate) lines of `gate_table` among the three fields of `triple`, strongest in the
    labels first."""
    left, right = np.triu_indices(fields, k=1)  # (P,) each
    p, g = gates["p"].to_numpy(dtype=np.int64), gates["g"].to_numpy(dtype=np.int64)  # (L,) each
    inside = np.array([{a, b, c} == triple for a, b, c in zip(left[p], right[p], g)], dtype=bool)  # (L,)
    return gates[inside].sort_values("data_strength", ascending=False, na_position="last", kind="stable")


def three_field_effects(higher: HigherOrder, pair_strength, schema: FieldSchema, gates: pd.DataFrame) -> pd.DataFrame:
    """The triples that act as one effect (EFFECT_* rules above), strongest first: columns
    EFFECT_COLUMNS. `pair_strength` (P,): each pair's mean |SII| over the same rows; `gates`:
    afm.analysis.gates.gate_table with the labels' strengths. strength: mean |order-3 SII|."""
    strength = higher.triple_interaction.abs().mean(0).numpy()  # (T,)
    pairs = np.asarray(pair_strength, dtype=np.float64)  # (P,)
    if pairs.shape != (schema.num_pairs,) or len(strength) != len(higher.triples):
        raise ConfigError(f"pair_strength must be ({schema.num_pairs},) and the triples those of "
                          f"{schema.num_fields} fields, got {pairs.shape} and {len(higher.triples)} triples")
    index = {pair: p for p, pair in enumerate(itertools.combinations(range(schema.num_fields), 2))}
    names, labels = schema.pair_names(), gates["data_strength"].to_numpy(dtype=np.float64)
    strongest_gate = float(np.nanmax(labels)) if np.isfinite(labels).any() else float("nan")
    found = []
    for t in np.argsort(-strength, kind="stable"):
        own = [index[pair] for pair in itertools.combinations(higher.triples[t].tolist(), 2)]
        fields = tuple(schema.field_names[f] for f in higher.triples[t])
        lines = _gate_lines(gates, set(higher.triples[t].tolist()), schema.num_fields)
        gate = float(lines["data_strength"].iloc[0]) if len(lines) else float("nan")
        if not (strength[t] >= EFFECT_PAIR_RATIO * pairs[own].max() and strength[t] >= EFFECT_FLOOR * pairs.max()
                and gate >= EFFECT_GATE_RATIO * strongest_gate):  # NaN: the labels cannot tell, no effect
            continue
        found.append((" x ".join(fields), list(fields), [names[p] for p in own], float(strength[t]),
                      [float(pairs[p]) for p in own], lines["pair"].iloc[0], lines["gate"].iloc[0], gate))
    return pd.DataFrame(found, columns=list(EFFECT_COLUMNS))


def describe_effect(line: pd.Series) -> str:
    """'site x position x device: one effect, seen as site x position (gated by device), site x
    device, position x device'."""
    seen = [f"{pair} (gated by {line['gate']})" if pair == line["gated_pair"] else pair for pair in line["pairs"]]
    return f"{line['effect']}: one effect, seen as " + ", ".join(seen)


def effect_of_pairs(effects: pd.DataFrame, schema: FieldSchema) -> list[str]:
    """(P,) pair_names order: the strongest effect each pair is a part of, or "" for none."""
    part = {}
    for name, pairs in zip(effects["effect"], effects["pairs"]):  # strongest first
        for pair in pairs:
            part.setdefault(pair, name)
    return [part.get(pair, "") for pair in schema.pair_names()]


def non_pairwise_sentence(share: float, coalitions: str) -> str:
    """One sentence on `HigherOrder.non_pairwise_share()` for the user, under `coalitions`."""
    if share < 1e-9:
        return ("All of this model's prediction is carried by pairs: its terms of three fields and more are 0 "
                "(an FM or FwFM is a sum of pairs), so the pair rankings are the whole story.")
    if share <= 1:
        return (f"{share:.0%} of the prediction's variance over these rows is carried by no pair (terms of three "
                f"fields and more, from the attention's softmax): the pair rankings tell the rest.")
    hint = " Background coalitions give the share that applies to typical rows." if coalitions == "absent" else ""
    return (f"This model is not a sum of pairs here: its terms of three fields and more have {share:,.0f} times the "
            "prediction's variance and cancel its pair terms (a pair alone in the softmax takes all the "
            f"attention).{hint}")
