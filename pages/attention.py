"""Attention: the answer first ("In short": which pairs matter, the strongest gate, whether attention
is the reason, the gradient-boosting reference), then the heatmap; every detail behind a tab: the
ranked table, the gates, the checks of attention, trust (erasure, effects, seeds), value pairs, one
row, what-if."""

from __future__ import annotations

import numpy as np
import streamlit as st

from afm.analysis.attention import default_min_support, ranked_pairs, row_decomposition
from afm.app import cache, pair_views, seed_check, state
from afm.app.whatif import render_what_if
from afm.data.registry import BUNDLED_SAMPLES, REGISTRY
from afm.figures import decomposition_figure, planted_heatmap, top_pairs_figure
from afm.paths import sample_dir
from afm.samples.planted import planted_pairs

dataset = state.require_data()
st.title("Attention")
left, right = st.columns([2, 3])
with left:
    run = state.page_run(dataset, "Model", key="attention_run")
dataset = state.require_fit(run, dataset)
model_name = run.model_config.model
split = right.radio("Rows from", ["test", "valid", "train"], horizontal=True,
                    format_func=lambda s: f"{s} ({len(dataset.splits[s]):,} rows)")
settings = st.expander("How the exact Shapley values are computed: rows explained, coalitions")
with settings:
    rows_explained, coalitions = pair_views.shapley_settings(dataset, split)

# Cheap first: the answer from the exact values and the heatmap; the checks of attention and the
# reference complete the answer at the end. Every analysis is computed once for the server.
st.subheader("In short")
short = st.empty()
result = pair_views.explanation(run, dataset, split, rows_explained, coalitions, settings)
pair_views.in_short(short, run, dataset, split, result, coalitions, complete=False)
terms, summary = cache.pair_analysis(run, dataset, split)
names = list(dataset.schema.field_names)
views = [v for v in pair_views.VIEWS if result is not None or v not in pair_views.SHAPLEY_VIEWS]
view = st.radio("Show", views, horizontal=True, format_func=pair_views.VIEWS.get, key="attention_view",
                index=views.index("shapley") if "shapley" in views else 0)
planted = planted_pairs(sample_dir() / dataset.name) if dataset.name in BUNDLED_SAMPLES else []
st.plotly_chart(pair_views.heatmap(view, summary, result, names, model_name), config=state.PLOTLY_CONFIG)
if planted:
    learned = summary.ranking()[:len(planted)]
    found = len({p.pair for p in planted} & set(learned))
    st.markdown(f"**Ground truth** ({REGISTRY[dataset.name].description}): planted "
                f"{'; '.join(p.describe() for p in planted)}. The model's top {len(planted)} by mean |contribution|: "
                f"{', '.join(learned)} ({found} of {len(planted)} recovered).")
    with st.expander("The planted pairs as a heatmap, beside the model's"):
        st.plotly_chart(planted_heatmap(planted, names), config=state.PLOTLY_CONFIG)
st.caption("Attention is a weight, not a cause: a pair with high a_ij can still push the prediction down, or "
           "barely at all when pᵀ(e_i⊙e_j) is small. The contribution views show what each pair adds to ŷ; the "
           "exact Shapley views what it adds once every other field's effect is shared out fairly "
           "(docs/explain.md)."
           + (" FM weights every pair by 1, so its attention view is flat." if model_name == "fm" else "")
           + (" FwFM has one learned weight r per field pair, the same in every row." if model_name == "fwfm" else ""))

ranked, gated, checked, trusted, valued, one_row, what_if = st.tabs(
    ["Ranked pairs", "Where a third field matters", "Is attention the explanation?", "Can I trust this pair?",
     "Feature-value pairs", "One row", "What if"])
with ranked:
    if result is not None:
        st.caption("Sorted by mean |Shapley interaction| over the explained rows, most important first.")
        pair_views.ranked_table(result)
    else:
        st.caption("Sorted by mean |contribution| over the split's rows, most important first.")
        st.dataframe(ranked_pairs(summary).round(4), hide_index=True)

with gated:
    by = pair_views.gate_section(dataset, split, terms, result, view, model_name)
    gates = [p.when[0] for p in planted if p.when]
    if gates and by == gates[0]:
        st.caption("On this sample the device decides whether user x item matters. A fixed weight per field pair "
                   "(FM, FwFM) can only split the difference between phone and laptop rows. AFM's attention is a "
                   "softmax over each row's pairs: in phone rows it puts its weight on user x item; in laptop rows "
                   "it moves it to pairs whose value pᵀ(e_i⊙e_j) is near zero, which switches user x item off. That "
                   "is why AFM's RMSE is a third of FwFM's here, and no better on the fixed-pairs sample.")

if result is not None:
    with checked:
        pair_views.attention_checks_section(run, dataset, split, result, coalitions)
    with trusted:
        pair_views.trust_section(run, dataset, split, result, coalitions)
        with st.expander("Would this ranking survive another seed?"):
            seed_check.stability_section(run, dataset, split, len(result.rows), coalitions)

with valued:
    a, b, c = st.columns(3)
    top = a.slider("How many", 5, 50, 15)
    support = b.number_input("Seen in at least (rows)", 1, 100_000,
                             default_min_support(dataset.splits[split], dataset.schema, summary),
                             key=f"support_{run.key}_{dataset.fingerprint}_{split}",
                             help="The default keeps value pairs of the most important field pairs in view.")
    rank_by = c.selectbox("Ranked by", ["attention_mean", "contribution_abs_mean", "contribution_mean"],
                          format_func=lambda s: s.replace("_", " "))
    table = cache.top_pairs(run, dataset, split, top, int(support), rank_by)
    if table.empty:
        st.info("No feature-value pair is that frequent here; lower the minimum support.")
    else:
        st.plotly_chart(top_pairs_figure(table, rank_by), config=state.PLOTLY_CONFIG)
        st.dataframe(table.drop(columns=["first", "second"]), hide_index=True)

with one_row:
    rows = len(dataset.splits[split])
    row = st.number_input(f"Row of the {split} split (0 to {rows - 1:,})", 0, rows - 1, 0)
    ids = dataset.splits[split].feature_ids[row]
    parts = row_decomposition(terms, int(row), dataset.schema, ids)
    label = float(dataset.splits[split].labels[row])
    model_terms, exact = st.tabs(["The model's own terms", "Exact Shapley-Taylor parts"])
    with exact:
        if result is not None:
            pair_views.shapley_waterfall(run, dataset, split, int(row), coalitions)
    with model_terms:
        st.plotly_chart(decomposition_figure(parts, float(terms.prediction[row]), label), config=state.PLOTLY_CONFIG)
        pair_rows = parts[parts.kind == "pair"]
        largest = pair_rows.loc[pair_rows["value"].abs().idxmax()]
        st.caption(f"bias + first-order terms + pair terms = {parts['value'].sum():+.5f}, the prediction. The "
                   f"largest pair term is {largest['term']} ({largest['value']:+.4f}, weight {largest['weight']:.3f}).")
        with st.expander("All terms of this row"):
            st.dataframe(parts.assign(value=np.round(parts["value"], 5)), hide_index=True)

with what_if:
    render_what_if(run, dataset)

pair_views.in_short(short, run, dataset, split, result, coalitions)
