"""The Gradient coupling page's views: the models picked, the cached measurements (keyed on each
run's content and the rows, so a widget change recomputes only what it changes and sessions
looking at one bundled model share the work), and one function per tab. The page wires them."""

from __future__ import annotations

import copy
from dataclasses import dataclass

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
from afm.app import cache, state
from afm.app.jobs import Run
from afm.data import Dataset
from afm.figures import field_pair_heatmaps, metric_over_epochs, per_field_bars, seed_error_by_scale_figure

AGREEMENT = 1e-9  # relative to the largest gradient entry: float64 rounding, not a different formula


@dataclass
class Rows:
    """The validation rows every tab measures, and the dataset they come from."""

    dataset: Dataset
    sample: np.ndarray  # row numbers of the validation split
    hessian_rows: int  # AFM's Hessian-vector products use the first this many
    probes: int  # Hutchinson probes for AFM's Hessian

    @property
    def names(self) -> list[str]:
        return list(self.dataset.schema.field_names)

    def seen_by(self, run: Run) -> Dataset:
        """The dataset as `run` reads it (with its own encoding)."""
        return state.dataset_for(run, self.dataset)


def pick_models(dataset: Dataset) -> dict[str, Run]:
    """One selector per model kind (FM, FwFM, AFM), among the runs that fit the data."""
    fitting = {name: run for name, run in st.session_state.runs.items()
               if state.fit_problem(run, state.dataset_for(run, dataset)) is None}
    chosen = {}
    for column, model in zip(st.columns(3), ("fm", "fwfm", "afm")):
        options = [n for n, r in fitting.items() if r.model_config.model == model]
        pick = column.selectbox(model.upper(), ["(none)"] + options, index=1 if options else 0, key=f"couple_{model}")
        if pick != "(none)":
            chosen[model] = fitting[pick]
    return chosen


# The cached measurements take the run, the data as the run reads it and the row numbers; they read
# nothing else (no session state), so every session asking the same question shares the answer.
@st.cache_data(show_spinner="Measuring coupling…", max_entries=32, hash_funcs=cache.BY_CONTENT)
def _measure(run: Run, data: Dataset, rows: np.ndarray):
    ids, values, targets = data.valid.tensors(rows)
    return coupling_summary(run.model, ids, values, targets, run.task), information_abundance(run.model)


@st.cache_data(show_spinner="Estimating Hessian blocks…", max_entries=32, hash_funcs=cache.BY_CONTENT)
def _hessian(run: Run, data: Dataset, rows: np.ndarray, probes: int):
    ids, values, targets = data.valid.tensors(rows)
    return hessian_coupling(run.model, ids, values, targets, run.task, probes=probes)


@st.cache_data(show_spinner="Comparing the blog post's formula with autograd…", max_entries=16,
               hash_funcs=cache.BY_CONTENT)
def _seed_errors(run: Run, data: Dataset, rows: np.ndarray, scales: tuple[float, ...]):
    ids, values, targets = data.valid.tensors(rows)
    return seed_formula_error_by_scale(run.model, ids, values, targets, np.array(scales), run.task)


def measurements(chosen: dict[str, Run], rows: Rows) -> dict:
    return {m: _measure(r, rows.seen_by(r), rows.sample) for m, r in chosen.items()}


def _show(figures: dict) -> None:
    """One heatmap per model: side by side on a wide screen, stacked on a narrow one (800 px, whose
    page has the whole width once the sidebar is collapsed: two of 376 px there were cramped)."""
    grid = st.grid(len(figures), min_column_width=400)
    for figure in figures.values():
        grid.plotly_chart(figure, config=state.PLOTLY_CONFIG)


def shares(results: dict, rows: Rows) -> None:
    st.markdown("**C[f, g]**: the mean size of the part of ∂L/∂v_f that comes from partner g, normalised per "
                "row. A flat row means every partner pulls v_f equally hard (FM with similar norms); attention or "
                "field weights concentrate it on the pairs that matter.")
    st.caption("What to look for: rows that are flat for FM and concentrated for AFM or FwFM, on the pairs "
               "the Attention page ranks first.")
    _show(field_pair_heatmaps({m: r[0].share for m, r in results.items()}, rows.names,
                              f"share of ∂L/∂v_f from partner g ({len(rows.sample):,} validation rows)",
                              colorbar="share"))
    st.caption("Information abundance of each embedding table (‖σ(E)‖₁/‖σ(E)‖∞: how many directions it uses): "
               + ", ".join(f"{m.upper()} {r[1]:.2f}" for m, r in results.items()))


def hessian(chosen: dict[str, Run], rows: Rows) -> None:
    st.markdown("‖∂²L/∂v_f∂v_g‖_F (root mean square over rows), split into the coupling the model builds in, "
                "ℓ'·∂²ŷ/∂v_f∂v_g, and the curvature any model gets from the loss, ℓ''·∇_fŷ∇_gŷᵀ. FM and FwFM "
                "have closed forms (r x_f x_g I); AFM is estimated with Hessian-vector products.")
    st.info("Compare models by the **ratio**. Block sizes are not a property of the function a model computes: "
            "v → c·v with p and W (FwFM: r) divided by c² gives the same predictions and divides both parts by c² "
            "(tested). Their ratio does not change.")
    st.caption("What to look for: a ratio well above 1 means the model itself ties the two fields' embeddings "
               "together more than the loss does; compare the same cell across the models.")
    blocks = {}
    for model, run in chosen.items():
        picked = rows.sample[:rows.hessian_rows] if model == "afm" else rows.sample
        blocks[model] = _hessian(run, rows.seen_by(run), picked, rows.probes)
    parts = {"ratio": "model part / curvature part", "model_part": "model part ℓ'·∂²ŷ/∂v_f∂v_g",
             "curvature_part": "curvature part ℓ''·∇_fŷ∇_gŷᵀ", "total": "whole block"}
    part = st.radio("Show", list(parts), horizontal=True, format_func=parts.get)
    eye = np.eye(len(rows.names), dtype=bool)
    matrices = {m: np.where(eye, np.nan, h.model_part / np.where(h.curvature_part > 0, h.curvature_part, np.nan)
                            if part == "ratio" else getattr(h, part)) for m, h in blocks.items()}
    _show(field_pair_heatmaps(matrices, rows.names, parts[part], colorbar="ratio" if part == "ratio" else "‖block‖_F"))
    for model, block in blocks.items():
        note = "" if block.method == "closed form" else (
            f", largest relative standard error {np.nanmax(block.relative_stderr):.1%}")
        st.caption(f"{model.upper()}: {block.method} on {block.rows:,} rows{note}.")


def tug_of_war(results: dict, rows: Rows) -> None:
    st.markdown("For each v_f: the cosine between partner g's pull G_fg and the total update, and the "
                "**cancellation** 1 − ‖Σ_g G_fg‖ / Σ_g ‖G_fg‖: near 0 all partners pull one way, near 1 they "
                "cancel out and v_f hardly moves however hard each pulls.")
    st.caption("What to look for: bars far from their black chance mark; near the mark, the partners' pulls "
               "are no more aligned than random directions would be.")
    _show(field_pair_heatmaps({m: r[0].cosine for m, r in results.items()}, rows.names,
                              "cos(partner g's pull, total update)", colorbar="cosine", diverging=True))
    st.plotly_chart(per_field_bars({m: r[0].cancellation for m, r in results.items()}, rows.names,
                                   "Cancellation index per field", "1 − ‖Σ G‖ / Σ ‖G‖",
                                   baselines={m: r[0].cancellation_baseline for m, r in results.items()},
                                   baseline_label="if pulls were random"), config=state.PLOTLY_CONFIG)
    partners = len(rows.names) - 1
    st.caption(f"The black marks, one on each model's bar, are chance: the index if each partner pulled, with "
               f"its actual size, in an independent random direction (with {partners} equal pulls, 1 − 1/√{partners} "
               f"= {1 - 1 / np.sqrt(partners):.3f}). Below the mark, partners pull more *together* than chance; "
               "above it, against each other. For FM the index does not involve the loss at all: ℓ' scales every "
               "pull alike, so it measures the geometry of the embeddings.")


def blog_formula(chosen: dict[str, Run], rows: Rows) -> None:
    if "afm" not in chosen:
        st.info("Pick an AFM model above to compare the blog post's eq. (11) with the exact gradient.")
        return
    st.markdown("The blog post's eq. (11) keeps only the diagonal a(1 − a) of the softmax Jacobian and "
                "multiplies by p elementwise. Its error against autograd grows with the embedding scale: the "
                "terms it drops are cubic in |v|, the one it keeps is linear. At initialisation, embeddings "
                "are drawn from N(0, 0.01), which is why it looks right there (about half of the attention "
                "network's ReLUs are on, so that is not the reason); after training it is far off.")
    st.caption("What to look for: the error at scale 1 (the model as trained); below about 0.01 the formula is "
               "close, so the blog's derivation describes an untrained AFM, not this one.")
    scales = tuple(float(s) for s in np.logspace(-3, 1, 9))
    errors = _seed_errors(chosen["afm"], rows.seen_by(chosen["afm"]), rows.sample[:256], scales)
    st.plotly_chart(seed_error_by_scale_figure(
        np.array(scales), errors, "Blog eq. (11) vs autograd, embeddings rescaled (1 = as trained)"),
        config=state.PLOTLY_CONFIG)


def over_training(chosen: dict[str, Run]) -> None:
    st.markdown("How the measures moved while each model trained: recorded on 512 validation rows after every "
                "epoch (epoch 0 is before training) when a run is trained with *Track coupling* ticked; the "
                "bundled sample models have it.")
    st.caption("What to look for: whether cancellation falls as the model learns (partners come to pull together) "
               "and whether the embeddings use more directions over time.")
    histories = {f"{m.upper()} ({r.name})": r.history for m, r in chosen.items()
                 if any("coupling" in record for record in r.history)}
    if not histories:
        st.info("These runs did not record coupling while training. Train with *Track coupling* ticked.")
        return
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


def verify(chosen: dict[str, Run], rows: Rows) -> None:
    st.markdown("Compare the closed forms above with PyTorch's autograd on the measured rows (float64, dropout "
                "off).")
    if not st.button("Verify against autograd"):
        return
    for model, run in chosen.items():
        ids, values, targets = rows.seen_by(run).valid.tensors(rows.sample)
        exact_model = copy.deepcopy(run.model).double()
        closed = embedding_gradient_parts(exact_model, ids, values.double(), targets.double(), run.task)
        reference = autograd_embedding_gradient(exact_model, ids, values.double(), targets.double(), run.task)
        error = float((closed.gradient() - reference).abs().max())
        scale = float(reference.abs().max())
        verdict = "agree to float64 rounding" if error <= AGREEMENT * max(scale, 1e-300) else "DISAGREE"
        st.write(f"**{model.upper()}**: max |closed form − autograd| = {error:.3e} "
                 f"(largest gradient entry {scale:.3e}) over {len(rows.sample):,} rows: the two {verdict}.")
