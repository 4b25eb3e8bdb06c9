"""AFM Inspector: `streamlit run app.py`. The pages only wire widgets to the `afm` package."""

import streamlit as st

from afm.app import state, uploads
from afm.numerics import flush_subnormals

# Each run of this script has a thread of its own: no subnormal arithmetic in it (afm.numerics).
flush_subnormals()


@st.cache_resource
def clean_up_once_per_server() -> None:
    """Uploads left behind by server processes that were killed."""
    uploads.remove_orphans()


def tab_icon():
    """The browser tab's icon, drawn here (a field x field heatmap in blues): a Material icon as
    `page_icon` is fetched from fonts.gstatic.com, and nothing this app shows leaves the machine."""
    import numpy as np
    from PIL import Image

    shades = np.array([[8, 48, 107], [66, 146, 198], [222, 235, 247]], dtype=np.uint8)  # (3, RGB)
    cells = np.array([[2, 0, 1, 1], [0, 2, 1, 0], [1, 1, 2, 1], [1, 0, 1, 2]])  # (4, 4) which shade
    return Image.fromarray(shades[cells].repeat(16, axis=0).repeat(16, axis=1))  # (64, 64, 3)


st.set_page_config(page_title="AFM Inspector", page_icon=tab_icon(), layout="wide")
clean_up_once_per_server()
state.init_state()
page = st.navigation([
    st.Page("pages/lesson.py", title="Lesson", icon=":material/school:"),
    st.Page("pages/data_model.py", title="Data & model", icon=":material/database:", default=True),
    st.Page("pages/attention.py", title="Attention", icon=":material/grid_on:"),
    st.Page("pages/coupling.py", title="Gradient coupling", icon=":material/link:"),
    st.Page("pages/curves.py", title="Curves", icon=":material/show_chart:"),
    st.Page("pages/predict.py", title="Predict & share", icon=":material/ios_share:"),
])
page.run()
# After the page, so it shows the page's changes (a page that stops early draws it itself: end_page).
state.sidebar_status(st.sidebar, show_job=page.title != "Data & model")
