"""The Lesson's figures: one row drawn through eq. (1)-(5), attention replayed by epoch, and grouped
bars (a pair's weight by a gate's value, a gradient's share by model, scores by sample). Pure Plotly:
arrays and tables in, `go.Figure` out, like afm.figures (whose colours and heatmaps they share)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from afm.analysis.attention import pair_matrix
from afm.analysis.model_walk import ModelWalk
from afm.figures import DIVERGING, SEQUENTIAL, readable

PRESENTER_FONT = 20  # the presenter toggle's type size: legible from the back of a classroom


def presented(figure: go.Figure, presenter: bool) -> go.Figure:
    """The figure in the presenter's larger type (and taller, so the larger labels fit)."""
    if presenter:  # each part by name: the app's chart theme sets its own sizes over the layout's font
        figure.update_layout(font=dict(size=PRESENTER_FONT), title_font_size=PRESENTER_FONT + 4,
                             legend_font_size=PRESENTER_FONT, height=int((figure.layout.height or 450) * 1.15))
        figure.update_xaxes(tickfont_size=PRESENTER_FONT - 2, title_font_size=PRESENTER_FONT)
        figure.update_yaxes(tickfont_size=PRESENTER_FONT - 2, title_font_size=PRESENTER_FONT)
        figure.update_annotations(font_size=PRESENTER_FONT)
    return figure


@readable
def model_walk_figure(walk: ModelWalk, top: int = 8) -> go.Figure:
    """Eq. (1)-(5) left to right, top to bottom, on one row: its embeddings, the products of its
    `top` most-weighted pairs, their scores a'_ij and weights a_ij, the pooled vector beside p,
    and ŷ built from w0, Σ w_i x_i and pᵀ·pooled (a waterfall that ends on the prediction)."""
    shown = walk.top_pairs(top)  # (top,) pair indices, most weight first
    names = [walk.pair_names[q] for q in shown]
    fields = [f"{f}={v}" if not v.startswith(f) else v for f, v in zip(walk.field_names, walk.value_names)]
    figure = make_subplots(rows=2, cols=3, horizontal_spacing=0.17, vertical_spacing=0.2, subplot_titles=(
        "Embeddings e_i = v_i x_i", "(1) pair products e_i ⊙ e_j", "(2) a' = hᵀReLU(W(e_i⊙e_j)+b)",
        "(3) weights a_ij = softmax(a')", "(4) pooled Σ a(e_i⊙e_j), and p", "(5) ŷ = w0 + Σ w_i x_i + pᵀpooled"))
    figure.add_trace(go.Heatmap(z=walk.embeddings, y=fields, colorscale=DIVERGING, zmid=0, reversescale=True,
                                showscale=False, hovertemplate="%{y}, dim %{x}: %{z:.3f}<extra></extra>"), 1, 1)
    figure.add_trace(go.Heatmap(z=walk.products[shown], y=names, colorscale=DIVERGING, zmid=0,
                                reversescale=True, showscale=False,
                                hovertemplate="%{y}, dim %{x}: %{z:.4f}<extra></extra>"), 1, 2)
    if walk.scores is not None:
        figure.add_trace(go.Bar(x=walk.scores[shown], y=names, orientation="h", marker_color="#9467bd",
                                hovertemplate="%{y}: a' = %{x:.3f}<extra></extra>"), 1, 3)
    figure.add_trace(go.Bar(x=walk.weights[shown], y=names, orientation="h", marker_color="#d62728",
                            text=[f"{w:.2f}" for w in walk.weights[shown]], textposition="auto",
                            hovertemplate="%{y}: a = %{x:.3f}<extra></extra>"), 2, 1)
    dims = np.arange(len(walk.pooled))
    figure.add_trace(go.Bar(x=dims, y=walk.pooled, name="pooled", marker_color="#1f77b4"), 2, 2)
    figure.add_trace(go.Scatter(x=dims, y=walk.projection, name="p", mode="markers", marker=dict(
        color="#ff7f0e", size=8, symbol="diamond")), 2, 2)
    parts = [("w0", walk.bias), ("Σ w_i x_i", float(walk.first_order.sum())), ("pᵀpooled", walk.interaction)]
    figure.add_trace(go.Waterfall(
        x=[name for name, _ in parts] + ["ŷ"], y=[value for _, value in parts] + [walk.prediction],
        measure=["relative"] * len(parts) + ["total"],
        text=[f"{v:+.3f}" for _, v in parts] + [f"{walk.prediction:.3f}"],
        textposition="outside", connector=dict(line=dict(color="#999"))), 2, 3)
    figure.update_layout(height=450, showlegend=False, margin=dict(l=10, r=10, t=40, b=10))
    for row, col in ((1, 1), (1, 2), (1, 3), (2, 1)):  # first field, most-weighted pair on top
        figure.update_yaxes(autorange="reversed", row=row, col=col)
    figure.update_annotations(font_size=12)
    return figure


@readable
def replay_figure(frames: list[tuple[int, np.ndarray]], field_names, title: str) -> go.Figure:
    """Mean pair weight by epoch as a field x field heatmap with a Play button and an epoch slider,
    on one colour scale for every epoch (so a cell that lights up has grown, not been rescaled)."""
    if not frames:
        raise ValueError("no recorded epochs to replay")
    fields = len(field_names)
    matrices = [pair_matrix(weights, fields) for _, weights in frames]
    top = max(float(np.nanmax(m)) for m in matrices)

    def heatmap(matrix):
        return go.Heatmap(z=matrix, x=list(field_names), y=list(field_names), colorscale=SEQUENTIAL, zmin=0,
                          zmax=top, hoverongaps=False, colorbar=dict(title="weight"),
                          hovertemplate="%{y} x %{x}: %{z:.3f}<extra></extra>")

    figure = go.Figure(heatmap(matrices[0]), frames=[
        go.Frame(data=[heatmap(m)], name=str(epoch)) for (epoch, _), m in zip(frames, matrices)])
    steps = [dict(method="animate", label=str(epoch), args=[[str(epoch)], dict(mode="immediate", frame=dict(
        duration=0, redraw=True), transition=dict(duration=0))]) for epoch, _ in frames]
    figure.update_layout(
        title=title, height=480, yaxis=dict(autorange="reversed"), margin=dict(l=10, r=10, t=50, b=10),
        updatemenus=[dict(type="buttons", x=0, y=-0.12, xanchor="left", showactive=False, buttons=[
            dict(label="▶ Play", method="animate", args=[None, dict(frame=dict(duration=350, redraw=True),
                                                                  fromcurrent=True, transition=dict(duration=0))]),
            dict(label="❚❚ Pause", method="animate", args=[[None], dict(mode="immediate", frame=dict(
                duration=0, redraw=False))])])],
        sliders=[dict(active=0, steps=steps, x=0.15, len=0.85, y=-0.05, currentvalue=dict(prefix="epoch "))])
    return figure


@readable
def grouped_bars(frame: pd.DataFrame, x: str, group: str, y: str, title: str, yaxis: str,
                 colors: dict[str, str] | None = None, number: str = ".3f") -> go.Figure:
    """One bar per (x, group) with its value written on it: the lesson's comparisons at a glance."""
    figure = go.Figure()
    for name, part in frame.groupby(group, sort=False):
        figure.add_trace(go.Bar(x=part[x], y=part[y], name=str(name), text=[format(v, number) for v in part[y]],
                                textposition="outside", marker_color=(colors or {}).get(name)))
    figure.update_layout(title=title, barmode="group", height=420, yaxis_title=yaxis,
                         yaxis_range=[0, float(frame[y].max()) * 1.2], margin=dict(l=10, r=10, t=50, b=10),
                         legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    return figure
