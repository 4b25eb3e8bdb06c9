"""Attention: which feature pairs the attention network weights, and what they contribute."""

from __future__ import annotations

import numpy as np
import streamlit as st

from afm.analysis.attention import row_decomposition
from afm.app import cache, state
from afm.app.whatif import render_what_if
from afm.figures import attention_heatmap, decomposition_figure, planted_heatmap, top_pairs_figure
from afm.paths import sample_dir
from afm.synthetic import planted_pairs

run, dataset = state.require_run_and_data()
st.title("Attention")
model_name = run.model_config.model
left, right = st.columns([2, 3])
with left:
    state.run_picker("Model", key="attention_run")
split = right.radio("Rows from", ["test", "valid", "train"], horizontal=True,
                    format_func=lambda s: f"{s} ({len(dataset.splits[s]):,} rows)")
view = st.radio("Show", ["attention", "contribution", "magnitude"], horizontal=True, format_func={
    "attention": "attention a_ij", "contribution": "signed contribution a_ij·pᵀ(e_i⊙e_j)",
    "magnitude": "|contribution|"}.get)
st.caption("Attention is a weight, not a cause: a pair with high a_ij can still push the prediction down, or "
           "barely at all when pᵀ(e_i⊙e_j) is small. The contribution views show what each pair adds to ŷ."
           + (" FM weights every pair by 1, so its attention view is flat." if model_name == "fm" else "")
           + (" FwFM has one learned weight r per field pair, the same in every row." if model_name == "fwfm" else ""))

terms, summary = cache.pair_analysis(run.key, dataset.fingerprint, split, run, dataset)
names = list(dataset.schema.field_names)
planted = planted_pairs(sample_dir()) if dataset.name == "sample" else []
if planted:
    heat, truth = st.columns(2)
    heat.plotly_chart(attention_heatmap(summary, names, view, model_name), config=state.PLOTLY_CONFIG)
    truth.plotly_chart(planted_heatmap(planted, names), config=state.PLOTLY_CONFIG)
    learned = summary.ranking()[:len(planted)]
    wanted = {f"{a} x {b}" for a, b, _ in planted}
    found = len(wanted & set(learned))
    st.markdown(f"**Ground truth:** the {len(planted)} planted pairs are {sorted(wanted)}; the model's top "
                f"{len(planted)} by mean |contribution| are {learned} ({found} of {len(planted)} recovered).")
else:
    st.plotly_chart(attention_heatmap(summary, names, view, model_name), config=state.PLOTLY_CONFIG)

st.subheader("Top feature-value pairs")
a, b, c = st.columns(3)
top = a.slider("How many", 5, 50, 15)
support = b.number_input("Seen in at least (rows)", 1, 100_000, 20)
by = c.selectbox("Ranked by", ["attention_mean", "contribution_abs_mean", "contribution_mean"],
                 format_func=lambda s: s.replace("_", " "))
table = cache.top_pairs(run.key, dataset.fingerprint, split, top, int(support), by, run, dataset)
if table.empty:
    st.info("No feature-value pair is that frequent here; lower the minimum support.")
else:
    st.plotly_chart(top_pairs_figure(table, by), config=state.PLOTLY_CONFIG)
    st.dataframe(table.drop(columns=["first", "second"]), hide_index=True)

st.subheader("One row, decomposed")
rows = len(dataset.splits[split])
row = st.number_input(f"Row of the {split} split (0 to {rows - 1:,})", 0, rows - 1, 0)
ids = dataset.splits[split].feature_ids[row]
parts = row_decomposition(terms, int(row), dataset.schema, ids)
label = float(dataset.splits[split].labels[row])
st.plotly_chart(decomposition_figure(parts, float(terms.prediction[row]), label), config=state.PLOTLY_CONFIG)
pair_rows = parts[parts.kind == "pair"]
largest = pair_rows.loc[pair_rows["value"].abs().idxmax()]
st.caption(f"bias + first-order terms + pair terms = {parts['value'].sum():+.5f}, the prediction. The largest pair "
           f"term is {largest['term']} ({largest['value']:+.4f}, weight {largest['weight']:.3f}).")
with st.expander("All terms of this row"):
    st.dataframe(parts.assign(value=np.round(parts["value"], 5)), hide_index=True)

render_what_if(run, dataset)
