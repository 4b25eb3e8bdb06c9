"""Curves: train/valid/test metrics per epoch for every run of the session."""

from __future__ import annotations

import streamlit as st

from afm.app import cache, state
from afm.app.jobs import epoch_zero_note, histories_frame, runs_table
from afm.figures import learning_curves

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
# The task's own metric first: AUC where every run picked is a binary one, RMSE where any is regression.
metrics = (["auc", "logloss", "rmse"] if all(run.task == "binary" for run in picked.values()) else
           ["rmse", "auc", "logloss"]) if has_binary else ["rmse"]
metric = st.radio("Metric", metrics, horizontal=True)
left, right = st.columns([3, 1])
splits = left.multiselect("Splits", ["train", "valid", "test"], default=["train", "valid", "test"])
log_y = right.checkbox("Log scale", value=False, help="Spreads out the late epochs, where the runs differ.")
st.caption("Train RMSE is the running value over each epoch's batches (dropout on); valid and test are measured "
           "after the epoch with dropout off. Model selection uses validation only; epoch 0 is the starting point.")
references = {}
if metric == "rmse" and any(run.trained_on.name == "frappe" for run in picked.values()):
    references = {"paper FM 0.3385": 0.3385, "paper AFM 0.3102": 0.3102}
here = [run for run in picked.values() if run.trained_on.name == getattr(current, "name", None)]
reference = None
if here and st.checkbox("Gradient-boosting reference", value=len(current.train) <= cache.REFERENCE_ROWS,
                        help="scikit-learn's HistGradientBoosting on the same training rows: how good a model of "
                             "this data the explained one is."):
    reference = cache.reference(current, here[0].task)
    references.update({f"gradient boosting (scikit-learn) {split}": reference[f"{split}_{metric}"]
                       for split in ("valid", "test") if reference.get(f"{split}_{metric}") is not None})
figure = learning_curves({name: run.history for name, run in picked.items()}, metric, tuple(splits), references,
                         models={name: run.model_config.model for name, run in picked.items()}, log_y=log_y)
st.plotly_chart(figure, config={**state.PLOTLY_CONFIG,
                                "toImageButtonOptions": {"format": "png", "scale": 2, "filename": "afm-curves"}})
if reference is not None and f"valid_{metric}" in reference:
    pooled = ", ".join(reference["pooled_fields"])
    pooled = f" ({pooled}: its 254 commonest values)" if pooled else ""
    test = f", test {reference[f'test_{metric}']:.4f}" if reference.get(f"test_{metric}") is not None else ""
    st.caption(f"Gradient boosting ({reference['estimator']}, scikit-learn's defaults, no early stopping) fitted on "
               f"the same {reference['train_rows']:,} training rows of {current.name}, every field a feature{pooled}: "
               f"valid {metric.upper()} {reference[f'valid_{metric}']:.4f}{test} ({reference['seconds']:.1f} s). "
               "A model that does not beat this line has learned less of the data than an off-the-shelf model: "
               "what it explains is a weak fit.")
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
