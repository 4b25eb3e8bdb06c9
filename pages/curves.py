"""Curves: train/valid/test metrics per epoch for every run of the session."""

from __future__ import annotations

import streamlit as st

from afm.app import state
from afm.figures import learning_curves
from afm.jobs import epoch_zero_note, histories_frame, runs_table

state.init_state()
st.title("Curves")
runs = st.session_state.runs
if not runs:
    st.info("No runs yet: train or load a model on the Data & model page.")
    state.end_page()
current = state.load_current(show_errors=False)
on_this_data = [n for n, r in runs.items() if current is not None and r.trained_on.name == current.name]
names = st.multiselect("Runs", list(runs), default=on_this_data or list(runs),
                       help="At first, the runs on the current dataset.")
picked = {name: runs[name] for name in names}
has_binary = any(run.task == "binary" for run in picked.values())
metric = st.radio("Metric", ["rmse", "auc", "logloss"] if has_binary else ["rmse"], horizontal=True)
left, right = st.columns([3, 1])
splits = left.multiselect("Splits", ["train", "valid", "test"], default=["train", "valid", "test"])
log_y = right.checkbox("Log scale", value=False, help="Spreads out the late epochs, where the runs differ.")
st.caption("Train RMSE is the running value over each epoch's batches (dropout on); valid and test are measured "
           "after the epoch with dropout off. Model selection uses validation only; epoch 0 is the starting point.")
references = {}
if metric == "rmse" and any(run.trained_on.name == "frappe" for run in picked.values()):
    references = {"paper FM 0.3385": 0.3385, "paper AFM 0.3102": 0.3102}
figure = learning_curves({name: run.history for name, run in picked.items()}, metric, tuple(splits), references,
                         models={name: run.model_config.model for name, run in picked.items()}, log_y=log_y)
st.plotly_chart(figure, config={**state.PLOTLY_CONFIG,
                                "toImageButtonOptions": {"format": "png", "scale": 2, "filename": "afm-curves"}})
for name, run in picked.items():
    note = epoch_zero_note(run.model_config.model, run.train_config.get("init_from"),
                           bool(run.train_config.get("match_fm")), run.model_config.num_pairs)
    if note:
        st.caption(f"**{name}**: {note}")
st.caption("PNG: the camera icon on the chart. HTML and CSV: the buttons below.")
st.subheader("Run comparison")
st.dataframe(runs_table(picked), hide_index=True, placeholder="")
left, right = st.columns(2)
left.download_button("Figure as HTML", figure.to_html(include_plotlyjs=True), file_name="afm-curves.html",
                     mime="text/html")
right.download_button("History as CSV", histories_frame(picked).to_csv(index=False), file_name="afm-history.csv",
                      mime="text/csv")
