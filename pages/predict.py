"""Predict & share: score new rows with the active model and download them, explained; download
the model's report, one HTML file that opens offline."""

from __future__ import annotations

import re

import streamlit as st

from afm.app import sharing, state
from afm.errors import AFMError

state.init_state()
st.title("Predict & share")
run = state.active_run()
if run is None:
    st.info("No model yet: train or load one on the **Data & model** page.")
    state.end_page()
st.caption(f"Active model: **{run.name}** ({run.model_config.model.upper()}, {run.task}); change it on the Data & "
           "model page. Rows are encoded with the model's own saved encoding.")

st.subheader("Score new rows")
uploaded = st.file_uploader("Rows to score: a CSV with the model's columns (the label column may be missing) or a "
                            "libfm file (labels optional)", type=["csv", "libfm", "txt"], key="predict_upload")
pairs = run.model_config.num_pairs
explain = st.number_input("Explain each row by its largest pair terms (0: scores only)", 0, min(pairs, 50),
                          min(3, pairs), key="predict_explain")
drop = st.checkbox("Leave out the file's own columns (the scored CSV then holds the row number, label and scores)",
                   key="predict_drop_inputs", help="By default each scored row keeps the CSV's columns, as written, "
                                                   "before its prediction and explanation.")
if uploaded is not None and st.button("Score the rows", type="primary"):
    try:
        st.session_state.predict_result = sharing.score_upload(run, uploaded, int(explain), st.progress(0.0),
                                                               keep_inputs=not drop)
    except AFMError as exc:
        st.session_state.predict_result = None
        st.error(f"Cannot score these rows: {exc}")
result = st.session_state.get("predict_result")
if result is not None and uploaded is not None and (result.run_key, result.upload_id, result.keep_inputs) == (
        run.key, uploaded.file_id, not drop):
    st.success(f"{result.summary['rows']:,} rows scored in {result.summary['seconds']:.1f} s.")
    st.dataframe(result.preview, hide_index=True)
    st.download_button("Download the scored rows (CSV)", data=result.path.read_bytes, file_name=result.download_name,
                       mime="text/csv")

st.subheader("Share a report")
dataset = state.load_current(show_errors=False)
dataset = state.dataset_for(run, dataset) if dataset is not None else None
if dataset is not None and state.fit_problem(run, dataset):
    dataset = None
st.caption("One HTML file with plotly.js inside: it opens offline and can be mailed. It holds the model card (data, "
           "settings, metrics, curves)" + (f" and the attention analysis of the {dataset.name} test rows." if dataset
                                           else "; pick data the model fits on the Data & model page for the "
                                                "attention analysis."))
coupling = st.checkbox("Include the gradient coupling summary", key="report_coupling", disabled=dataset is None)
st.download_button("Download the report (HTML)",
                   data=lambda: sharing.report_html(run, dataset, coupling),
                   file_name=f"afm-report-{re.sub(r'[^A-Za-z0-9._-]+', '_', run.name)}.html", mime="text/html")
