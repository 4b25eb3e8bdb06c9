"""The Lesson, "Why attention helps FM, and when it does not": its steps and the numbers each step
says, computed from the bundled samples' own models (no training). The app draws it
(pages/lesson.py); everything it shows is computed here or in afm.analysis, so it can be tested.

The story runs on the `sample` (user x item matters only on phones; hour x device everywhere) and
ends on `sample-fixed` (three pairs that matter equally in every row), where attention has nothing
to add: afm.samples.planted says why each sample teaches what it does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from afm.analysis.attention import decompose_split, rows_by_value
from afm.analysis.coupling.summary import coupling_summary
from afm.data import FieldSchema, Split
from afm.models import PairwiseModel

MODEL_LABELS = {"fm": "FM", "fwfm": "FwFM", "afm": "AFM"}


@dataclass(frozen=True)
class Step:
    key: str  # what the page draws for it (afm.app.lesson.DRAW)
    title: str
    see: str  # the one sentence that says what to see
    try_this: str  # the one thing to do on this step


STEPS = (
    Step("data", "The data and its planted gate",
         "Two pairs were planted: user x item moves the rating only on phones, hour x device in every row.",
         "Hover the two bright cells: one says *only where device is phone*."),
    Step("fm", "FM: one weight for every pair",
         "FM adds all 45 pairs with weight 1, so its heatmap is flat: it cannot single out the two that matter.",
         "Look for the planted pairs in the flat heatmap: nothing marks them."),
    Step("fwfm", "FwFM: one weight per field pair",
         "FwFM learns a weight r per field pair, so the pairs that matter stand out, but r is the same in "
         "every row: it cannot follow the gate.",
         "Compare the phone and laptop bars of FwFM: the same weight, whatever the device."),
    Step("afm", "AFM live on one row",
         "AFM computes a weight for each pair of this row, eq. (1)-(5): the softmax in (3) moves the weight "
         "to where this row needs it.",
         "Switch the device from phone to laptop and watch the weight on user x item fall."),
    Step("replay", "Attention as it was learned",
         "At epoch 0 attention is nearly uniform; training moves it onto the pairs that matter.",
         "Press ▶ Play, or drag the slider back to epoch 0."),
    Step("explain", "Is attention the explanation?",
         "Attention says where the model looks; the exact Shapley interaction says how much each pair moves ŷ. "
         "Read them together.",
         "Find a pair with high attention but a small Shapley value."),
    Step("coupling", "How attention couples the gradients",
         "In FM every partner pulls on an embedding equally (eq. 7); in AFM each pull is weighted by a_ij "
         "(eq. 9), so item's pull on user follows the device.",
         "Compare AFM's phone and laptop bars with FM's."),
    Step("fixed", "When attention does not help",
         "On the fixed-pairs sample three pairs matter equally in every row: one weight per field pair says it "
         "all, and AFM is no better than FwFM.",
         "Show the fixed-pairs AFM's attention: it sits on the planted pairs, the same in every row."),
)


def scoreboard(checkpoints: dict[tuple[str, str], object]) -> pd.DataFrame:
    """(sample, model, test RMSE at the best epoch) for each bundled checkpoint: the scoreboard."""
    lines = [{"sample": sample, "model": MODEL_LABELS[model], "test_rmse": float(c.best["test_rmse"])}
             for (sample, model), c in checkpoints.items() if c.best.get("test_rmse") is not None]
    return pd.DataFrame(lines)


def pair_weight_by_value(models: dict[str, PairwiseModel], split: Split, schema: FieldSchema, pair: str,
                         field: str) -> pd.DataFrame:
    """(model, value of `field`, mean weight on `pair` over those rows): FM's 1, FwFM's r (the same
    for every value) and AFM's mean a_ij in the rows of each value."""
    q = schema.pair_names().index(pair)
    masks = rows_by_value(split, schema, field)
    lines = []
    for name, model in models.items():
        weights = decompose_split(model, split).pair_weights[:, q].double().numpy()  # (N,)
        lines += [{"model": MODEL_LABELS[name], field: value, "weight": float(weights[mask].mean())}
                  for value, mask in masks.items()]
    return pd.DataFrame(lines)


def gradient_share_by_value(models: dict[str, PairwiseModel], split: Split, schema: FieldSchema, field: str,
                            partner: str, gate: str, rows: int = 256) -> pd.DataFrame:
    """(model, value of `gate`, share of `field`'s embedding gradient that comes from `partner`) over
    the first `rows` rows of each value (docs/gradient_coupling.md, measure 1)."""
    f, g = schema.field_names.index(field), schema.field_names.index(partner)
    lines = []
    for value, mask in rows_by_value(split, schema, gate).items():
        ids, values, labels = split.tensors(np.flatnonzero(mask)[:rows])
        for name, model in models.items():
            share = coupling_summary(model, ids, values, labels).share[f, g]
            lines.append({"model": MODEL_LABELS[name], gate: value, "share": float(share)})
    return pd.DataFrame(lines)


def with_value(schema: FieldSchema, ids: np.ndarray, field: str, value_id: int) -> np.ndarray:
    """A copy of one row's feature ids (F,) with `field` set to the feature `value_id`."""
    changed = np.array(ids, copy=True)
    changed[schema.field_names.index(field)] = value_id
    return changed


def reconciled_sentence(verdict: str, agreement_tau: float, top_attention: list[str], top_shapley: list[str]) -> str:
    """Attention against Shapley and the uniform-attention test in one sentence a class can read:
    whether the model *uses* its attention (the test) is a different question from whether attention
    *ranks* the pairs as their effects do (the agreement), and both answers can hold at once."""
    shared = [p for p in top_attention if p in top_shapley]
    uses = "does not use" not in verdict
    agree = ("attention and Shapley share " + (", ".join(shared) if shared else "none") +
             f" of their top {len(top_attention)}")
    order = ("and order the pairs alike" if agreement_tau >= 0.6 else "but order the rest differently"
             if agreement_tau >= 0.3 else "but order most pairs differently")
    return (f"This AFM {'needs' if uses else 'does not need'} its per-row attention (the test below), and "
            f"{agree} {order} (median Kendall tau {agreement_tau:.2f}): "
            + ("read attention as *where* the model looks, and Shapley as *how much* each pair moves ŷ."
               if uses else "read its attention as one weight per pair, and Shapley for each pair's effect."))


def rows_with(split: Split, schema: FieldSchema, field: str, value: str) -> np.ndarray:
    """Row numbers of `split` whose `field` holds `value` (by value name)."""
    return np.flatnonzero(rows_by_value(split, schema, field, limit=10_000)[value])

