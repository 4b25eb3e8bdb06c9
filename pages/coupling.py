"""Gradient coupling: FM vs FwFM vs AFM, measured on the same rows (docs/gradient_coupling.md)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from afm.app import coupling_views, state
from afm.citations import BLOG, BLOG_EQUATIONS, EXACT_EQUATIONS, PAPER_SHORT

state.init_state()
dataset = state.load_current()
if dataset is None:
    state.end_page()
st.title("Gradient coupling")
st.markdown(f"In FM every embedding's gradient is a sum of the *other* embeddings of the row: each update of v_f is "
            f"pulled by all of its partners. {BLOG[0].upper() + BLOG[1:]}, a reading of the AFM paper ({PAPER_SHORT}), "
            "argues that AFM's attention turns that direct coupling into an indirect one. Here the same rows go "
            "through each model and the pulls are measured.")
for line in EXACT_EQUATIONS:
    st.latex(line)
st.caption("FM: c_ij = 1; FwFM: c_ij = r_ij; AFM: the form above, from the full softmax Jacobian.")
with st.expander("The blog post's eq. (8)-(11), as it writes them, beside the exact form"):
    grid = st.grid(2, min_column_width=420)
    with grid.cell():
        st.markdown("**The blog post** (its eq. 10 keeps only the diagonal a(1 − a) of the softmax Jacobian)")
        for line in BLOG_EQUATIONS:
            st.latex(line)
    with grid.cell():
        st.markdown("**Exact** (checked against autograd in the *Verify* tab)")
        for line in EXACT_EQUATIONS:
            st.latex(line)
        st.caption("The off-diagonal terms −a_ij·a_m do not vanish: summed against the pair values they turn "
                   "(1 − a_ij)·s_ij into (s_ij − s̄); and p enters the attention term only through s_ij = pᵀe_ij, "
                   "not elementwise.")

chosen = coupling_views.pick_models(dataset)
if not chosen:
    st.info("No FM, FwFM or AFM model fits this dataset yet: train one on the Data & model page.")
    state.end_page()
a, b, c = st.columns(3)
measured = min(a.select_slider("Rows measured", [128, 256, 512, 1024, 2048, 4096], value=1024), len(dataset.valid))
hessian_rows = b.select_slider("Rows for AFM's Hessian", [64, 128, 256, 512, 1024], value=256,
                               help="Hessian-vector products cost more than the closed forms of FM and FwFM.")
probes = c.select_slider("Hutchinson probes", [2, 4, 8, 16], value=4)
rows = coupling_views.Rows(dataset, np.random.default_rng(0).permutation(len(dataset.valid))[:measured],
                           hessian_rows, probes)

views = {"Shares": lambda: coupling_views.shares(results, rows),
         "Hessian": lambda: coupling_views.hessian(chosen, rows),
         "Tug-of-war": lambda: coupling_views.tug_of_war(results, rows),
         "Blog's formula": lambda: coupling_views.blog_formula(chosen, rows),
         "Over training": lambda: coupling_views.over_training(chosen),
         "Verify": lambda: coupling_views.verify(chosen, rows)}
tabs = st.tabs(list(views), key="coupling_tab", on_change="rerun")  # lazy: only the open tab computes
results = coupling_views.measurements(chosen, rows) if tabs[0].open or tabs[2].open else {}
for tab, view in zip(tabs, views.values()):
    with tab:
        if tab.open:
            view()
