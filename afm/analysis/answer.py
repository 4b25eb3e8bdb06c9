"""The answer first: a few sentences computed from the analyses of one model on one set of rows,
which the Attention page opens on ("In short"), `Explanation.summary()` returns and the report
repeats: the pairs every measure agrees on, the strongest gate, whether attention can be read as
the reason here, what no pair carries, and how the model compares with gradient boosting."""

from __future__ import annotations

from afm.analysis.higher_order import describe_effect
from afm.analysis.pairs import AttentionChecks, PairExplanation
from afm.metrics import SELECTION_METRIC

WEAKER_BY = 0.005  # a model worse than the reference by more than this is said to be the weaker one


def top_pairs_sentence(explanation: PairExplanation, model: str) -> str:
    """The three pairs that matter most by mean |Shapley interaction|, and where another measure
    puts a different pair first."""
    table = explanation.table
    top = list(table["pair"].head(3))
    measures = {"|contribution|": "contribution_abs_mean"}
    if model == "afm":
        measures["attention"] = "attention_mean"
    firsts = {name: table.sort_values(column, ascending=False, kind="stable")["pair"].iloc[0]
              for name, column in measures.items()}
    others = [f"{name} puts {pair} first" for name, pair in firsts.items() if pair != top[0]]
    return (f"On {explanation.rows_label}, the pairs that matter most (mean |Shapley interaction|) are "
            f"{', '.join(top)}" + (f"; {' and '.join(others)}." if others else f"; every measure puts {top[0]} first."))


def reference_sentence(reference: dict, metrics: dict, task: str) -> str:
    """The model against gradient boosting (afm.analysis.reference) on the same test rows;
    `metrics`: the model's own on those rows (`Checkpoint.evaluate`)."""
    metric, lower_is_better = SELECTION_METRIC[task]
    ours, theirs = metrics.get(metric), reference.get(f"test_{metric}")
    if ours is None or theirs is None:
        return "No reference score could be computed on these rows."
    better = ours < theirs if lower_is_better else ours > theirs
    gap = abs(ours - theirs)
    return (f"On the test rows the model's {metric.upper()} is {ours:.4f}, gradient boosting's on the same split "
            f"{theirs:.4f}: the model is {'better' if better else 'worse'} by {gap:.4f}"
            + ("." if better or gap < WEAKER_BY else "; read its explanation as that of a weaker model."))


def answer_sentences(explanation: PairExplanation, checks: AttentionChecks | None, model: str,
                     reference: str | None = None) -> list[str]:
    """The answer, in order: the top pairs, the strongest gate (or the effect of three fields it
    is part of), for an AFM whether its attention is used per row, and the reference sentence."""
    said = [top_pairs_sentence(explanation, model)]
    if explanation.effects is not None and len(explanation.effects):
        said.append(f"{describe_effect(explanation.effects.iloc[0])} (order-3 Shapley interactions over "
                    f"{explanation.rows_label}).")
    gate = explanation.gate_sentence()
    if gate:
        said.append(gate)
    if checks is not None:
        said.append(checks.baselines.verdict() if checks.baselines is not None else checks.agreement_sentence(model))
    if reference:
        said.append(reference)
    return said
