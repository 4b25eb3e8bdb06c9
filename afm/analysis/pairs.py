"""Which field pairs matter, every view side by side, on a bounded sample of rows: the one entry
point the Attention page, `afm pairs`, `afm report` and `afm predict --explain` share.

Per pair: the model's attention (a_ij; 1 for FM, r_fg for FwFM) and its spread, the signed and
absolute contribution a_ij·pᵀ(e_i⊙e_j), the exact Shapley interaction index (SII) and the
Shapley-Taylor pair term (the pair's share of ŷ: a row's terms and main effects sum to it), under
the coalition semantics chosen (afm.analysis.shapley); and the field that most changes the pair's
effect, from the labels (model-free) and from the model's SII (afm.analysis.gates); whether the
pair is part of an effect of three fields, and how much of the prediction no pair carries
(afm.analysis.higher_order); and, on request, erasure curves of each measure (`erasure_of`,
afm.analysis.erasure).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from afm.analysis.attention import decompose_split, summarize_pairs
from afm.analysis.erasure import RANDOM_ORDERS, ErasureCurves, erasure_curves, pair_measures
from afm.analysis.faithfulness import (
    AdversarialAttention,
    AttentionBaselines,
    RankAgreement,
    adversarial_attention_of,
    attention_baselines,
    attention_views,
    rank_agreement,
)
from afm.analysis.gates import (
    GateChoice,
    GateResult,
    data_gates,
    gate_sentence,
    gate_table,
    model_gates,
    strongest_gate,
)
from afm.analysis.higher_order import HigherOrder, HigherOrderCollector, effect_of_pairs, three_field_effects
from afm.analysis.shapley import MAX_FIELDS, SEMANTICS, PairShapley, background_rows, pair_shapley, pair_summary
from afm.data import FieldSchema, Split
from afm.errors import ConfigError
from afm.models import PairwiseModel, PredictionTerms

DEFAULT_ROWS = 256  # rows explained by default: exact values for 10 fields in well under 2 s on 2 CPU cores
DEFAULT_BACKGROUND = 16  # background rows per coalition under "background"
GATE_SUPPORT = 20  # rows a value of a gating field needs before its spread counts

# The columns of `afm pairs` and of the page's ranked table, in order.
PAIR_COLUMNS = ("pair", "attention_mean", "attention_std", "contribution_mean", "contribution_abs_mean",
                "shapley_mean", "shapley_abs_mean", "taylor_mean", "taylor_abs_mean", "gate", "gate_strength",
                "gate_model_strength", "gate_values", "part_of_effect")


@dataclass
class PairExplanation:
    """Everything shown about pairs for one model on a sample of one split's rows."""

    rows: np.ndarray  # (R,) row numbers of the split that were explained, ascending
    terms: PredictionTerms  # the decomposition of those rows
    shapley: PairShapley  # exact values of those rows
    table: pd.DataFrame  # one line per field pair, PAIR_COLUMNS, most important (mean |SII|) first
    gates: pd.DataFrame  # afm.analysis.gates.gate_table: (pair, gate) lines, strongest first
    coalitions: str  # "absent" or "background": what v(S) means for every Shapley number here
    background: int  # background rows used (0 under "absent")
    seconds: float  # time to compute it all
    schema: FieldSchema = field(repr=False, default=None)
    split_name: str = ""  # the split the rows were drawn from ("test", ...), for every sentence to name
    higher_order: HigherOrder | None = field(repr=False, default=None)  # Möbius terms by order, triples' terms
    effects: pd.DataFrame | None = None  # higher_order.three_field_effects: triples that act as one effect

    @property
    def non_pairwise_share(self) -> float | None:
        """The share of the prediction's variance over the explained rows that no order-2
        explanation carries (afm.analysis.higher_order): 0 for FM and FwFM."""
        return None if self.higher_order is None else self.higher_order.non_pairwise_share()

    @property
    def strongest_gate(self) -> GateChoice | None:
        """The (pair, gate) the page opens on, with the gate's most different values."""
        return strongest_gate(self.gates, self.schema)

    def describe(self) -> str:
        """One line for captions and logs: what was computed, how, how long it took."""
        how = (f"fields outside a coalition take values from {self.background} background rows of the "
               "training split" if self.coalitions == "background" else
               "fields outside a coalition are absent (their pairs leave AFM's softmax)")
        return (f"Exact Shapley values of {self.rows_label} ({how}); computed in {self.seconds:.2f} s.")

    @property
    def rows_label(self) -> str:
        """The explained rows as a sentence names them: "256 test rows"."""
        return f"{len(self.rows):,} {self.split_name + ' ' if self.split_name else ''}rows"

    def gate_sentence(self) -> str | None:
        """The sentence on the strongest (pair, gate) line; None when no gate could be measured."""
        return gate_sentence(self.gates.iloc[0], self.rows_label) if len(self.gates) else None


def sample_rows(split: Split, count: int, seed: int = 0) -> np.ndarray:
    """`count` row numbers of `split` (all when it has fewer), seeded, ascending."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ConfigError(f"rows to explain must be a whole number >= 1, got {count!r}")
    if len(split) <= count:
        return np.arange(len(split))
    return np.sort(np.random.default_rng(seed).choice(len(split), count, replace=False))


def explain_pairs(model: PairwiseModel, split: Split, schema: FieldSchema, train: Split, *,
                  rows: int = DEFAULT_ROWS, coalitions: str = "absent", background: int = DEFAULT_BACKGROUND,
                  seed: int = 0, label_gates: GateResult | None = None, split_name: str = "") -> PairExplanation:
    """Explain `rows` sampled rows of `split`. `train`, the training split, gives the background
    rows ("background") and the data gates (labels only, no model: the most rows, so the most
    value cells with enough support). `label_gates`: `label_gates(train, schema)` when the caller
    keeps it (it depends on the data alone, and is most of the cost: 1.4 of 1.5 s on Frappe).
    `split_name`: which split `split` is, named in every sentence the explanation gives."""
    if coalitions not in SEMANTICS:
        raise ConfigError(f"coalitions must be one of {SEMANTICS}, got {coalitions!r}")
    if schema.num_fields > MAX_FIELDS:
        raise ConfigError(f"exact Shapley values need 2^F model evaluations per row; {schema.num_fields} fields "
                          f"is more than the {MAX_FIELDS} this tool computes exactly")
    started = time.perf_counter()
    picked = sample_rows(split, rows, seed)
    terms = decompose_split(model, split, rows=picked)
    device = next(model.parameters()).device
    ids = torch.from_numpy(np.asarray(split.feature_ids[picked], dtype=np.int64)).to(device)  # (R, F)
    values = torch.from_numpy(np.asarray(split.feature_values[picked], dtype=np.float32)).to(device)  # (R, F)
    drawn = None
    if coalitions == "background":
        drawn = tuple(t.to(device) for t in background_rows(train, background, seed))
    collector = HigherOrderCollector(schema.num_fields)  # fed by the same tables as the Shapley values
    shapley = pair_shapley(model, ids, values, coalitions, drawn, on_mobius=collector)
    gates = _gates(split, label_gates or label_gates_of(train, schema), schema, picked, terms, shapley)
    higher = collector.result(coalitions)
    effects = three_field_effects(higher, shapley.pair_interaction.abs().mean(0).numpy(), schema, gates)
    table = _pair_table(terms, shapley, schema, gates, effect_of_pairs(effects, schema))
    return PairExplanation(picked, terms, shapley, table, gates, coalitions,
                           background if coalitions == "background" else 0, time.perf_counter() - started, schema,
                           split_name, higher_order=higher, effects=effects)


def erasure_of(model: PairwiseModel, explanation: PairExplanation, split: Split, task: str = "regression",
               random_orders: int = RANDOM_ORDERS, seed: int = 0) -> ErasureCurves:
    """Erasure curves (afm.analysis.erasure) of the explained rows of `split` (the split
    `explanation` was made from), for every measure the explanation has, against their labels."""
    device = next(model.parameters()).device
    picked = explanation.rows
    ids = torch.from_numpy(np.asarray(split.feature_ids[picked], dtype=np.int64)).to(device)  # (R, F)
    values = torch.from_numpy(np.asarray(split.feature_values[picked], dtype=np.float32)).to(device)  # (R, F)
    measures = pair_measures(model, explanation.terms, explanation.shapley.pair_interaction,
                             explanation.shapley.pair_terms)
    return erasure_curves(model, ids, values, measures, np.asarray(split.labels[picked]), task, random_orders, seed)


def label_gates_of(train: Split, schema: FieldSchema) -> GateResult:
    """The model-free gate strengths of the training labels (afm.analysis.gates.data_gates)."""
    return data_gates(train, schema, min_support=GATE_SUPPORT)


def _gates(split: Split, from_labels: GateResult, schema: FieldSchema, picked: np.ndarray, terms: PredictionTerms,
           shapley: PairShapley) -> pd.DataFrame:
    """(pair, gate) lines: the labels' gate strength over the training rows, the model's SII and
    attention spread over the explained rows."""
    ids = np.asarray(split.feature_ids[picked])  # (R, F)
    support = min(GATE_SUPPORT, max(2, len(picked) // 8))
    from_model = model_gates(shapley.pair_interaction.numpy(), ids, schema, min_support=support)
    from_attention = model_gates(terms.pair_weights.double().numpy(), ids, schema, min_support=support,
                                 absolute=False)
    return gate_table(from_labels, from_model, from_attention)


def _pair_table(terms: PredictionTerms, shapley: PairShapley, schema: FieldSchema, gates: pd.DataFrame,
                effects: list[str]) -> pd.DataFrame:
    frame = summarize_pairs(terms, schema).frame()
    exact = pair_summary(shapley, schema)
    frame["shapley_mean"], frame["shapley_abs_mean"] = exact["sii_mean"], exact["sii_abs_mean"]
    frame["taylor_mean"], frame["taylor_abs_mean"] = exact["taylor_mean"], exact["taylor_abs_mean"]
    first = gates.drop_duplicates("pair").set_index("pair")  # gate_table is strongest first already
    frame["gate"] = frame["pair"].map(first["gate"])
    frame["gate_strength"] = frame["pair"].map(first["data_strength"])
    frame["gate_model_strength"] = frame["pair"].map(first["model_strength"])
    frame["gate_values"] = frame["pair"].map(first["values"])
    frame["part_of_effect"] = effects  # pair_names order, as summarize_pairs'
    frame = frame.sort_values("shapley_abs_mean", ascending=False, kind="stable").reset_index(drop=True)
    return frame[list(PAIR_COLUMNS)]


@dataclass
class AttentionChecks:
    """The panel of three: is this model's attention an explanation on these rows?"""

    agreement: RankAgreement  # (a) per-row rank agreement of attention, |contribution|, |SII|
    baselines: AttentionBaselines | None  # (b) uniform and frozen attention (AFM only)
    adversarial: AdversarialAttention | None  # (c) the farthest attention with the same ŷ (AFM only)

    def agreement_sentence(self, model: str) -> str:
        """Attention against |Shapley interaction|, except for an FM, whose attention is 1 for every
        pair (no order to compare): its |contribution| instead."""
        first = "|contribution|" if model == "fm" else "attention"
        return self.agreement.meaning(first, "|Shapley interaction|")


def check_attention(model: PairwiseModel, explanation: PairExplanation, split: Split, train: Split,
                    task: str = "regression", label_range: tuple[float, float] | None = None,
                    epsilon: float | None = None) -> AttentionChecks:
    """(a) on the explained rows; (b) on all of `split`, frozen weights from `train`; (c) on the
    explained rows with ε (default: 1 % of the training labels' range; a logit of 0.05 for binary)."""
    views = attention_views(explanation.terms, explanation.shapley.pair_interaction.numpy())
    agreement = rank_agreement(views)
    if model.fixed_pair_weights() is not None:  # FM, FwFM: one weight per pair, nothing per row to test
        return AttentionChecks(agreement, None, None)
    low, high = label_range or (float(train.labels.min()), float(train.labels.max()))
    epsilon = epsilon if epsilon is not None else (0.05 if task == "binary" else 0.01 * max(high - low, 1e-12))
    baselines = attention_baselines(model, split, train, explanation.schema, task=task, label_range=label_range,
                                    split_name=explanation.split_name)
    return AttentionChecks(agreement, baselines, adversarial_attention_of(explanation.terms, epsilon))


def shapley_row_terms(result: PairShapley, row: int, schema: FieldSchema, ids: np.ndarray) -> pd.DataFrame:
    """One row of `result` as Shapley-Taylor parts (the columns of `attention.row_decomposition`):
    v(∅), each field alone v({i}) - v(∅), each pair's share. The `value` column sums to ŷ."""
    names = ["nothing known: v(∅)"] + [f"alone: {schema.feature_label(int(i))}" for i in ids]
    kinds = ["bias"] + ["first order"] * schema.num_fields
    values = [float(result.empty[row])] + result.main_terms[row].tolist()
    left, right = np.triu_indices(schema.num_fields, k=1)
    names += [f"{schema.feature_label(int(ids[a]))} x {schema.feature_label(int(ids[b]))}" for a, b in zip(left, right)]
    kinds += ["pair"] * len(left)
    values += result.pair_terms[row].tolist()
    return pd.DataFrame({"term": names, "kind": kinds, "value": values, "weight": np.nan})
