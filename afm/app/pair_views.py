"""The Attention page's pair-importance parts: the exact Shapley controls, the heatmap of the
chosen view, the gate section, the panel of attention checks and one row's waterfall. They call
into afm.analysis.pairs (through afm.app.cache) and afm.figures; the page only places them."""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from afm.analysis.answer import answer_sentences, reference_sentence
from afm.analysis.attention import rows_by_value, summarize_pairs
from afm.analysis.gates import rows_by_values
from afm.analysis.higher_order import describe_effect, non_pairwise_sentence
from afm.analysis.pairs import DEFAULT_BACKGROUND, DEFAULT_ROWS, PairExplanation, shapley_row_terms
from afm.analysis.shapley import MAX_FIELDS, background_rows, pair_shapley, pair_summary
from afm.app import cache, state
from afm.app.jobs import Run
from afm.data import Dataset
from afm.figures import (
    adversarial_figure,
    attention_heatmap,
    decomposition_figure,
    erasure_figure,
    pair_value_heatmap,
    rank_agreement_figure,
)
from afm.models import PredictionTerms

VIEWS = {"attention": "attention a_ij", "contribution": "signed contribution a_ij·pᵀ(e_i⊙e_j)",
         "magnitude": "|contribution|", "shapley": "|Shapley interaction| (exact)",
         "taylor": "Shapley-Taylor share of ŷ (exact)"}
# view -> (column of the explanation table, column of shapley.pair_summary, title, colour bar, diverging)
SHAPLEY_VIEWS = {"shapley": ("shapley_abs_mean", "sii_abs_mean", "Mean |Shapley interaction index|", "|SII|", False),
                 "taylor": ("taylor_mean", "taylor_mean", "Mean Shapley-Taylor pair share of ŷ", "share", True)}
COALITIONS = {"absent": "absent (the other fields are not in the row)",
              "background": f"background (the other fields from {DEFAULT_BACKGROUND} training rows)"}
TABLE_LABELS = {"attention_std": "attention spread (std)", "shapley_abs_mean": "|Shapley interaction|",
                "shapley_mean": "Shapley interaction", "taylor_mean": "Shapley-Taylor share",
                "taylor_abs_mean": "|Shapley-Taylor share|", "gate_strength": "gate strength (labels)",
                "gate_model_strength": "gate strength (model)", "gate_values": "where"}


def shapley_settings(dataset: Dataset, split: str) -> tuple[int, str]:
    """The coalition and row-count widgets: (rows to explain exactly, coalitions). Nothing is computed."""
    left, right = st.columns([3, 2])
    coalitions = left.radio("Shapley coalitions: a field outside the coalition is", list(COALITIONS),
                            format_func=COALITIONS.get, horizontal=True, key="coalitions",
                            help="absent: as if the row never had it (for AFM its pairs leave the softmax). "
                                 "background: it takes the values of training rows, averaged (interventional).")
    available = len(dataset.splits[split])
    rows = right.number_input("Rows explained exactly", 1, min(available, 4096), min(available, DEFAULT_ROWS),
                              key=f"shapley_rows_{split}", help="A seeded sample of the split; 2^F coalitions a row.")
    return int(rows), coalitions


def explanation(run: Run, dataset: Dataset, split: str, rows: int, coalitions: str,
                settings) -> PairExplanation | None:
    """The exact values the settings ask for (computed once for the server: afm.app.cache), said
    in the `settings` container; None above 16 fields."""
    if dataset.schema.num_fields > MAX_FIELDS:
        settings.info(f"Exact Shapley values need 2^F model evaluations a row; {dataset.schema.num_fields} fields is "
                      f"more than the {MAX_FIELDS} computed exactly, so the Shapley views are off for this data.")
        return None
    result = cache.pair_explanation(run, dataset, split, rows, coalitions)
    settings.caption(result.describe())
    return result


def heatmap(view: str, summary, result: PairExplanation | None, names: list[str], model_name: str,
            rows_label: str = "", mask: np.ndarray | None = None, zmax: float | None = None):
    """The field x field figure of one view, over all rows or the rows of `mask` (of the split)."""
    if view not in SHAPLEY_VIEWS:
        return attention_heatmap(summary, names, view, model_name, zmax=zmax, rows_label=rows_label)
    table_column, summary_column, title, colorbar, diverging = SHAPLEY_VIEWS[view]
    table = result.table
    if mask is not None:
        table = pair_summary(result.shapley, result.schema, rows=mask[result.rows]).rename(
            columns={summary_column: table_column})
    explained = len(result.rows) if mask is None else int(mask[result.rows].sum())
    where = f"{explained:,} {rows_label + ' ' if rows_label else ''}explained rows"
    # Beside each other (one per value of a field) the panels are narrow: the rows on a line of their own.
    figure = pair_value_heatmap(table, names, table_column, f"{title}<br>over {where}" if rows_label else
                                f"{title} over {where}", colorbar, diverging)
    if zmax is not None:
        figure.update_traces(zmax=zmax, zmin=-zmax if diverging else 0)
    return figure


def ranked_table(result: PairExplanation) -> None:
    st.dataframe(result.table.round(4), hide_index=True,
                 column_config={k: st.column_config.Column(v) for k, v in TABLE_LABELS.items()})


def gate_section(dataset: Dataset, split: str, terms: PredictionTerms, result: PairExplanation | None,
                 view: str, model_name: str) -> str | None:
    """The gate table and the per-value comparison it opens on; returns the field split by."""
    names, schema, rows = list(dataset.schema.field_names), dataset.schema, dataset.splits[split]
    choice = result.strongest_gate if result is not None else None
    if result is not None and choice is not None:
        st.markdown(result.gate_sentence())
        st.dataframe(result.gates.head(8)[["pair", "gate", "data_strength", "model_strength", "attention_spread",
                                           "values"]].round(4), hide_index=True)
    by = st.selectbox("Split the rows by", ["(no split)", *names], index=1 + names.index(choice.gate) if choice else 0,
                      help="Opens on the field that most changes a pair's effect in the training labels, showing "
                           "its most different values. AFM computes its attention for each row; FM and FwFM "
                           "weigh a pair the same in every row.")
    if by == "(no split)":
        return None
    common = rows_by_value(rows, schema, by, limit=50)  # name -> mask, most frequent first
    wanted = dict(choice.values) if choice and by == choice.gate else {}
    options = list(dict.fromkeys([*wanted, *common]))
    shown = st.multiselect("Values", options, default=list(wanted) or options[:2], max_selections=4)
    ids = {**{name: i for name, i in wanted.items()}, **_ids_of(rows, schema, by, common)}
    masks = rows_by_values(rows, schema, by, [ids[name] for name in shown])
    parts = {value: summarize_pairs(terms, schema, rows=mask) for value, mask in masks.items() if mask.any()}
    if parts:
        bound = _shared_bound(view, parts, result, masks)
        compare = st.grid(len(parts), min_column_width=420)
        for value, part in parts.items():
            compare.plotly_chart(heatmap(view, part, result, names, model_name, rows_label=f"{by}={value}",
                                         mask=masks[value], zmax=bound), config=state.PLOTLY_CONFIG)
    return by


def _ids_of(rows, schema, field: str, common: dict) -> dict[str, int]:
    column = rows.feature_ids[:, schema.field_names.index(field)]
    return {name: int(column[np.argmax(mask)]) for name, mask in common.items()}


def _shared_bound(view: str, parts: dict, result: PairExplanation | None, masks: dict) -> float | None:
    """One colour scale for the per-value heatmaps, so their colours compare."""
    if view in SHAPLEY_VIEWS:
        if result is None:
            return None
        column = SHAPLEY_VIEWS[view][1]
        tables = [pair_summary(result.shapley, result.schema, rows=masks[v][result.rows]) for v in parts
                  if masks[v][result.rows].any()]
        return max((float(np.nanmax(np.abs(t[column]))) for t in tables), default=None)
    attribute = {"attention": "attention_mean", "contribution": "contribution_mean",
                 "magnitude": "contribution_abs_mean"}[view]
    return max(float(np.nanmax(np.abs(getattr(s, attribute)))) for s in parts.values())


def attention_checks_section(run: Run, dataset: Dataset, split: str, result: PairExplanation,
                             coalitions: str) -> None:
    """The panel of three, each with one sentence of what it means."""
    checks = cache.attention_checks(run, dataset, split, len(result.rows), coalitions)
    agreement = checks.agreement
    st.markdown("**Do the views rank a row's pairs alike?** Kendall's tau per row between each two views, and "
                f"how many of each row's top {agreement.top} pairs they share.")
    st.plotly_chart(rank_agreement_figure(agreement.frame(), agreement.chance_overlap, agreement.top),
                    config=state.PLOTLY_CONFIG)
    st.caption(checks.agreement_sentence(run.model_config.model))
    if checks.baselines is None:
        st.caption("FM and FwFM weigh each pair the same in every row: there is no per-row attention to test.")
        return
    st.markdown("**Does the model need per-row attention?** The same AFM with every weight 1/P, and with each "
                f"pair's mean training attention as a fixed weight (an FwFM), on {checks.baselines.rows_label}.")
    st.dataframe(checks.baselines.frame().round(4), hide_index=True)
    st.markdown(checks.baselines.verdict())
    st.plotly_chart(adversarial_figure(checks.adversarial.max_tv, checks.adversarial.epsilon),
                    config=state.PLOTLY_CONFIG)
    st.caption(checks.adversarial.meaning() + " With many pairs this is expected: a prediction is one number, "
               "the attention P of them.")


def shapley_waterfall(run: Run, dataset: Dataset, split: str, row: int, coalitions: str) -> None:
    """One row's exact Shapley-Taylor parts, v(∅) + fields alone + pair shares = ŷ."""
    rows = dataset.splits[split]
    device = next(run.model.parameters()).device
    ids = torch.from_numpy(np.asarray(rows.feature_ids[row:row + 1], dtype=np.int64)).to(device)  # (1, F)
    values = torch.from_numpy(np.asarray(rows.feature_values[row:row + 1], dtype=np.float32)).to(device)  # (1, F)
    drawn = None
    if coalitions == "background":
        drawn = tuple(t.to(device) for t in background_rows(dataset.train, DEFAULT_BACKGROUND))
    result = pair_shapley(run.model, ids, values, coalitions, drawn)
    parts = shapley_row_terms(result, 0, dataset.schema, rows.feature_ids[row])
    st.plotly_chart(decomposition_figure(parts, float(result.prediction[0]), float(rows.labels[row])),
                    config=state.PLOTLY_CONFIG)
    st.caption(f"Under {coalitions} coalitions: what is predicted with no field known, v(∅) = "
               f"{float(result.empty[0]):+.4f}, plus what each field adds alone, plus each pair's Shapley-Taylor "
               f"share = {parts['value'].sum():+.5f}, the prediction.")


def trust_section(run: Run, dataset: Dataset, split: str, result: PairExplanation, coalitions: str) -> None:
    """Can I trust this pair? Effects of three fields, the part no pair carries, erasure curves."""
    for _, line in result.effects.iterrows():
        st.markdown(f"**{describe_effect(line)}.** Its pairs are parts of one effect, not effects of their own.")
    if result.effects.empty:
        st.caption("No three fields act as one effect here: each ranked pair can be read on its own.")
    st.caption(non_pairwise_sentence(result.non_pairwise_share, coalitions))
    if run.model_config.num_pairs < 2:
        return
    curves = cache.erasure(run, dataset, split, len(result.rows), coalitions)
    st.plotly_chart(erasure_figure(curves), config=state.PLOTLY_CONFIG)
    st.caption(curves.meaning())


def in_short(slot, run: Run, dataset: Dataset, split: str, result: PairExplanation | None, coalitions: str,
             complete: bool = True) -> None:
    """The answer first, in a few sentences (afm.analysis.answer): what the report and
    `Explanation.summary()` say too, on the same rows. Drawn in `slot` twice: at the top of the page
    from the exact values alone (`complete=False`: cheap), then, once the rest of the page is drawn,
    with the checks of attention and the gradient-boosting reference (seconds more)."""
    if result is None:
        slot.markdown("This data has more fields than exact Shapley values allow; the heatmap and the tabs below "
                      "show attention and contributions.")
        return
    checks = reference = None
    if complete and run.model_config.num_pairs >= 2:
        checks = cache.attention_checks(run, dataset, split, len(result.rows), coalitions)
    if complete and split == "test" and len(dataset.test) and len(dataset.train) <= cache.REFERENCE_ROWS:
        reference = reference_sentence(cache.reference(dataset, run.task), cache.model_metrics(run, dataset, "test"),
                                       run.task)
    said = answer_sentences(result, checks, run.model_config.model, reference)
    if not complete:
        said.append("*Whether attention is the reason here, and how gradient boosting does on these rows: "
                    "computing…*")
    slot.markdown("\n".join(f"- {sentence}" for sentence in said))
