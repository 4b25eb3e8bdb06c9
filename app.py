"""AFM Inspector: `streamlit run app.py`. The pages only wire widgets to the `afm` package."""

import streamlit as st

from pages import common

st.set_page_config(page_title="AFM Inspector", page_icon=":material/hub:", layout="wide")
common.init_state()
navigation = st.navigation([
    st.Page("pages/data_model.py", title="Data & model", icon=":material/database:", default=True),
    st.Page("pages/attention.py", title="Attention", icon=":material/grid_on:"),
    st.Page("pages/coupling.py", title="Gradient coupling", icon=":material/link:"),
    st.Page("pages/curves.py", title="Curves", icon=":material/show_chart:"),
])
common.sidebar_status()
navigation.run()
