"""The Attention page's what-if section: start from a data row or compose one from each field's
named values, change one field, and see the prediction, every pair's term and attention, and
how each moved from the starting row. Widgets only; the analysis is `afm.analysis.whatif`."""

from __future__ import annotations

import numpy as np
import streamlit as st

from afm.analysis.whatif import Row, compare_rows, field_number, field_options, typical_row
from afm.app import state
from afm.app.jobs import Run
from afm.data import SPLITS, Dataset, FieldSchema
from afm.figures import what_if_figure
from afm.metrics import sigmoid

ORIGINS = {"row": "a row of the data", "compose": "values I choose"}


# Headers a user can read, each column wide enough for its header (auto widths cut "start_attention").
WHAT_IF_COLUMNS = {
    "part": st.column_config.TextColumn("part", width="medium"),
    "start": st.column_config.TextColumn("starting row", width="medium"),
    "now": st.column_config.TextColumn("now", width="medium"),
    **{name: st.column_config.NumberColumn(label, width="medium") for name, label in (
        ("start_term", "term, starting row"), ("term", "term now"), ("change", "change of the term"),
        ("start_attention", "weight, starting row"), ("attention", "weight now"),
        ("attention_change", "change of the weight"))},
}


def render_what_if(run: Run, dataset: Dataset) -> None:
    """Draw the section for the active run on `dataset` (already read with the run's encoding)."""
    schema = dataset.schema
    names = list(schema.field_names)
    st.subheader("What if")
    st.caption("Change one field of a row and see what moves. Under AFM one field changes its own pairs and, through "
               "the softmax over all pairs, the attention of every other pair of the row too.")
    origin = st.radio("Start from", list(ORIGINS), format_func=ORIGINS.get, horizontal=True, key="whatif_origin")
    if origin == "row":
        left, right = st.columns(2)
        split = left.selectbox("Split", SPLITS[::-1], key="whatif_split",  # test rows first, as above
                               format_func=lambda s: f"{s} ({len(dataset.splits[s]):,} rows)")
        rows = dataset.splits[split]
        index = int(right.number_input(f"Row (0 to {len(rows) - 1:,})", 0, len(rows) - 1, 0, key="whatif_row"))
        start = Row(rows.feature_ids[index], rows.feature_values[index])
    else:
        start = typical_row(schema, dataset.train)
        columns = st.columns(min(len(names), 5))
        for field in range(len(names)):
            with columns[field % len(columns)]:
                start = start.with_field(schema, field, _pick(schema, field, start, names[field], "whatif_start"))
    left, right = st.columns(2)
    field = left.selectbox("Change the field", range(len(names)), format_func=names.__getitem__, key="whatif_field")
    with right:
        choice = _pick(schema, field, start, "to", "whatif_to")
    result = compare_rows(run.model, schema, start, start.with_field(schema, field, choice))
    binary = run.task == "binary"
    a, b, c = st.columns(3)
    a.metric("Prediction, starting row", f"{result.start_prediction:+.4f}")
    b.metric("Prediction now", f"{result.prediction:+.4f}", f"{result.change:+.4f}")
    if binary:
        before, now = sigmoid(np.array([result.start_prediction, result.prediction]))
        c.metric("Probability now", f"{now:.3f}", f"{now - before:+.3f}")
    st.plotly_chart(what_if_figure(result.table), config=state.PLOTLY_CONFIG)
    changed = result.changed_fields
    st.caption((f"Changed: {', '.join(changed)}. " if changed else "Nothing changed yet: pick another value. ")
               + "The changes of all terms add up to the change of the prediction.")
    table = result.table.reindex(result.table["change"].abs().sort_values(ascending=False, kind="stable").index)
    st.dataframe(table.round(5), hide_index=True, placeholder="", column_config=WHAT_IF_COLUMNS)


def _pick(schema: FieldSchema, field: int, row: Row, label: str, prefix: str) -> int | float:
    """A value for `field`: one of its named values, or a number for a CSV numeric column. The
    row's own value is preselected the first time the widget is drawn."""
    key = f"{prefix}_{field}"
    options = field_options(schema, field)
    if options is None:
        return float(st.number_input(label, value=field_number(schema, field, row), key=key, format="%.4g"))
    ids = [feature for feature, _ in options]
    names = dict(options)
    current = int(row.feature_ids[field])
    return int(st.selectbox(label, ids, index=ids.index(current) if current in names else 0, key=key,
                            format_func=lambda feature: names[feature]))
