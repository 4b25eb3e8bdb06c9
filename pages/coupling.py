"""Gradient coupling: FM vs FwFM vs AFM, measured on the same rows (docs/gradient_coupling.md)."""

from __future__ import annotations

import copy

import numpy as np
import streamlit as st

from afm.analysis.coupling import (
    autograd_embedding_gradient,
    coupling_summary,
    embedding_gradient_parts,
    hessian_coupling,
    information_abundance,
    seed_formula_error_by_scale,
)
from afm.app import state
from afm.figures import field_pair_heatmaps, metric_over_epochs, per_field_bars, seed_error_by_scale_figure
from afm.sources import BLOG, BLOG_EQUATIONS, EXACT_EQUATIONS, PAPER_SHORT

state.init_state()
dataset = state.load_current()
if dataset is None:
    st.stop()
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

fitting = {name: run for name, run in st.session_state.runs.items()
           if state.fit_problem(run, state.dataset_for(run, dataset)) is None}
chosen = {}
columns = st.columns(3)
for column, model in zip(columns, ("fm", "fwfm", "afm")):
    options = [n for n, r in fitting.items() if r.model_config.model == model]
    pick = column.selectbox(model.upper(), ["(none)"] + options, index=1 if options else 0, key=f"couple_{model}")
    if pick != "(none)":
        chosen[model] = fitting[pick]
if not chosen:
    st.info("No FM, FwFM or AFM model fits this dataset yet: train one on the Data & model page.")
    st.stop()
a, b, c = st.columns(3)
rows = a.select_slider("Rows measured", [128, 256, 512, 1024, 2048, 4096], value=1024)
rows = min(rows, len(dataset.valid))
hessian_rows = b.select_slider("Rows for AFM's Hessian", [64, 128, 256, 512, 1024], value=256,
                               help="Hessian-vector products cost more than the closed forms of FM and FwFM.")
probes = c.select_slider("Hutchinson probes", [2, 4, 8, 16], value=4)
sample = np.random.default_rng(0).permutation(len(dataset.valid))[:rows]
names = list(dataset.schema.field_names)


def rows_of(run, picked: np.ndarray):
    return state.dataset_for(run, dataset).valid.tensors(picked)


# Each analysis is cached on the run's content key and the rows, so a widget change recomputes
# only what it changes, and sessions looking at the same bundled model share the work.
@st.cache_data(show_spinner="Measuring coupling…", max_entries=32)
def measure(run_key: str, fingerprint: str, rows: int, _run, _sample):
    ids, values, targets = rows_of(_run, _sample)
    return coupling_summary(_run.model, ids, values, targets, _run.task), information_abundance(_run.model)


@st.cache_data(show_spinner="Estimating Hessian blocks…", max_entries=32)
def hessian(run_key: str, fingerprint: str, rows: int, probes: int, _run, _sample):
    ids, values, targets = rows_of(_run, _sample)
    return hessian_coupling(_run.model, ids, values, targets, _run.task, probes=probes)


@st.cache_data(show_spinner="Comparing the blog post's formula with autograd…", max_entries=16)
def seed_errors(run_key: str, fingerprint: str, scales: tuple[float, ...], _run, _sample):
    ids, values, targets = rows_of(_run, _sample)
    return seed_formula_error_by_scale(_run.model, ids, values, targets, np.array(scales), _run.task)


def show(figures: dict) -> None:
    """One heatmap per model: side by side on a wide screen, stacked on a narrow one."""
    grid = st.grid(len(figures), min_column_width=360)
    for figure in figures.values():
        grid.plotly_chart(figure, config=state.PLOTLY_CONFIG)


tabs = st.tabs(["Shares", "Hessian", "Tug-of-war", "Blog's formula", "Over training", "Verify"],
               key="coupling_tab", on_change="rerun")  # lazy: only the open tab computes
if tabs[0].open or tabs[2].open:
    results = {m: measure(r.key, dataset.fingerprint, rows, r, sample) for m, r in chosen.items()}

with tabs[0]:
    if tabs[0].open:
        st.markdown("**C[f, g]**: the mean size of the part of ∂L/∂v_f that comes from partner g, normalised per "
                    "row. A flat row means every partner pulls v_f equally hard (FM with similar norms); attention or "
                    "field weights concentrate it on the pairs that matter.")
        show(field_pair_heatmaps({m: r[0].share for m, r in results.items()}, names,
                                 f"share of ∂L/∂v_f from partner g ({rows:,} validation rows)", colorbar="share"))
        st.caption("Information abundance of each embedding table (‖σ(E)‖₁/‖σ(E)‖∞: how many directions it uses): "
                   + ", ".join(f"{m.upper()} {r[1]:.2f}" for m, r in results.items()))

with tabs[1]:
    if tabs[1].open:
        st.markdown("‖∂²L/∂v_f∂v_g‖_F (root mean square over rows), split into the coupling the model builds in, "
                    "ℓ'·∂²ŷ/∂v_f∂v_g, and the curvature any model gets from the loss, ℓ''·∇_fŷ∇_gŷᵀ. FM and FwFM "
                    "have closed forms (r x_f x_g I); AFM is estimated with Hessian-vector products.")
        st.info("Compare models by the **ratio**. Block sizes are not a property of the function a model computes: "
                "v → c·v with p and W (FwFM: r) divided by c² gives the same predictions and divides both parts by c² "
                "(tested). Their ratio does not change.")
        blocks = {}
        for model, run in chosen.items():
            subset = sample[:hessian_rows] if model == "afm" else sample
            blocks[model] = hessian(run.key, dataset.fingerprint, len(subset), probes, run, subset)
        parts = {"ratio": "model part / curvature part", "model_part": "model part ℓ'·∂²ŷ/∂v_f∂v_g",
                 "curvature_part": "curvature part ℓ''·∇_fŷ∇_gŷᵀ", "total": "whole block"}
        part = st.radio("Show", list(parts), horizontal=True, format_func=parts.get)
        eye = np.eye(len(names), dtype=bool)
        matrices = {m: np.where(eye, np.nan, h.model_part / np.where(h.curvature_part > 0, h.curvature_part, np.nan)
                                if part == "ratio" else getattr(h, part)) for m, h in blocks.items()}
        show(field_pair_heatmaps(matrices, names, parts[part], colorbar="ratio" if part == "ratio" else "‖block‖_F"))
        for model, block in blocks.items():
            note = "" if block.method == "closed form" else (
                f", largest relative standard error {np.nanmax(block.relative_stderr):.1%}")
            st.caption(f"{model.upper()}: {block.method} on {block.rows:,} rows{note}.")

with tabs[2]:
    if tabs[2].open:
        st.markdown("For each v_f: the cosine between partner g's pull G_fg and the total update, and the "
                    "**cancellation** 1 − ‖Σ_g G_fg‖ / Σ_g ‖G_fg‖: near 0 all partners pull one way, near 1 they "
                    "cancel out and v_f hardly moves however hard each pulls.")
        show(field_pair_heatmaps({m: r[0].cosine for m, r in results.items()}, names,
                                 "cos(partner g's pull, total update)", colorbar="cosine", diverging=True))
        st.plotly_chart(per_field_bars({m: r[0].cancellation for m, r in results.items()}, names,
                                       "Cancellation index per field", "1 − ‖Σ G‖ / Σ ‖G‖",
                                       baselines={m: r[0].cancellation_baseline for m, r in results.items()},
                                       baseline_label="if pulls were random"), config=state.PLOTLY_CONFIG)
        partners = len(names) - 1
        st.caption(f"The black marks are chance: the index if each partner pulled, with its actual size, in an "
                   f"independent random direction (with {partners} equal pulls, 1 − 1/√{partners} = "
                   f"{1 - 1 / np.sqrt(partners):.3f}). Below the mark, partners pull more *together* than chance; "
                   "above it, against each other. For FM the index does not involve the loss at all: ℓ' scales every "
                   "pull alike, so it measures the geometry of the embeddings.")

with tabs[3]:
    if tabs[3].open:
        if "afm" not in chosen:
            st.info("Pick an AFM model above to compare the blog post's eq. (11) with the exact gradient.")
        else:
            st.markdown("The blog post's eq. (11) keeps only the diagonal a(1 − a) of the softmax Jacobian and "
                        "multiplies by p elementwise. Its error against autograd grows with the embedding scale: the "
                        "terms it drops are cubic in |v|, the one it keeps is linear. At initialisation, embeddings "
                        "are drawn from N(0, 0.01), which is why it looks right there (about half of the attention "
                        "network's ReLUs are on, so that is not the reason); after training it is far off.")
            scales = tuple(float(s) for s in np.logspace(-3, 1, 9))
            errors = seed_errors(chosen["afm"].key, dataset.fingerprint, scales, chosen["afm"], sample[:256])
            st.plotly_chart(seed_error_by_scale_figure(
                np.array(scales), errors, "Blog eq. (11) vs autograd, embeddings rescaled (1 = as trained)"),
                config=state.PLOTLY_CONFIG)

with tabs[4]:
    if tabs[4].open:
        st.markdown("How the measures moved while each model trained: recorded on 512 validation rows after every "
                    "epoch (epoch 0 is before training) when a run is trained with *Track coupling* ticked; the "
                    "bundled sample models have it.")
        histories = {f"{m.upper()} ({r.name})": r.history for m, r in chosen.items()
                     if any("coupling" in record for record in r.history)}
        if not histories:
            st.info("These runs did not record coupling while training. Train with *Track coupling* ticked.")
        else:
            st.plotly_chart(metric_over_epochs(histories, "cancellation_mean", "Mean cancellation index per epoch",
                                               "cancellation"), config=state.PLOTLY_CONFIG)
            st.plotly_chart(metric_over_epochs(histories, "information_abundance",
                                               "Information abundance of the embeddings per epoch", "‖σ‖₁/‖σ‖∞"),
                            config=state.PLOTLY_CONFIG)
            afm_histories = {k: v for k, v in histories.items() if k.startswith("AFM")}
            if afm_histories:
                st.plotly_chart(metric_over_epochs(afm_histories, "seed_formula_error",
                                                   "Blog eq. (11): relative error vs autograd during training",
                                                   "relative error"), config=state.PLOTLY_CONFIG)

with tabs[5]:
    if tabs[5].open:
        st.markdown("Compare the closed forms above with PyTorch's autograd on the measured rows (float64, dropout "
                    "off).")
        if st.button("Verify against autograd"):
            for model, run in chosen.items():
                ids, values, targets = rows_of(run, sample)
                exact_model = copy.deepcopy(run.model).double()
                closed = embedding_gradient_parts(exact_model, ids, values.double(), targets.double(), run.task)
                reference = autograd_embedding_gradient(exact_model, ids, values.double(), targets.double(), run.task)
                error = float((closed.gradient() - reference).abs().max())
                scale = float(reference.abs().max())
                st.write(f"**{model.upper()}**: max |closed form − autograd| = {error:.3e} "
                         f"(largest gradient entry {scale:.3e}) over {len(sample):,} rows.")
