"""Pure Plotly figure builders: arrays and tables in, `go.Figure` out. No Streamlit here, so
every figure is testable on its own and the app's pages only wire widgets to these."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from afm.analysis.attention import PairSummary, pair_matrix

SEQUENTIAL = "Blues"
DIVERGING = "RdBu"
MODEL_COLORS = {"fm": "#1f77b4", "fwfm": "#2ca02c", "afm": "#d62728"}
SPLIT_DASH = {"train": "dot", "valid": "solid", "test": "dash"}
SPLIT_STYLE_NAMES = {"dot": "dotted", "solid": "solid", "dash": "dashed"}


def readable(build: Callable) -> Callable:
    """Axes make room for their own tick labels (field names, numbers) and titles: with fixed
    10-px margins they were cut off outside the app (the report, *Figure as HTML*)."""

    @functools.wraps(build)
    def built(*args, **kwargs):
        made = build(*args, **kwargs)  # a figure, or a dict of them (one per model)
        for figure in made.values() if isinstance(made, dict) else (made,):
            figure.update_xaxes(automargin=True)
            figure.update_yaxes(automargin=True)
        return made

    return built


def _heatmap(matrix: np.ndarray, names, *, diverging: bool, hover: np.ndarray | None = None,
             colorbar: str = "", zmax: float | None = None, showscale: bool = True) -> go.Heatmap:
    finite = matrix[np.isfinite(matrix)]
    bound = zmax if zmax is not None else (float(np.abs(finite).max()) if finite.size else 1.0)
    limits = dict(zmin=-bound, zmax=bound, zmid=0) if diverging else dict(zmin=0, zmax=bound)
    return go.Heatmap(z=matrix, x=list(names), y=list(names), colorscale=DIVERGING if diverging else SEQUENTIAL,
                      reversescale=diverging, text=hover, hoverinfo="text" if hover is not None else "x+y+z",
                      hoverongaps=False, colorbar=dict(title=colorbar), showscale=showscale, **limits)


@readable
def field_pair_heatmap(matrix: np.ndarray, field_names, title: str, colorbar: str = "", diverging: bool = False,
                       hover: np.ndarray | None = None) -> go.Figure:
    """A field x field heatmap (F, F); NaN cells (the diagonal) stay blank."""
    figure = go.Figure(_heatmap(matrix, field_names, diverging=diverging, hover=hover, colorbar=colorbar))
    figure.update_layout(title=title, yaxis=dict(autorange="reversed"), margin=dict(l=10, r=10, t=50, b=10),
                         height=480)
    return figure


COLORBAR_TITLES = {"attention": "a_ij", "contribution": "a·pᵀ(e⊙e)", "magnitude": "|a·pᵀ(e⊙e)|"}
ATTENTION_MODES = {
    "attention": ("Mean attention a_ij", "attention_mean", False),
    "contribution": ("Mean signed contribution a_ij·pᵀ(e_i⊙e_j)", "contribution_mean", True),
    "magnitude": ("Mean |contribution|", "contribution_abs_mean", False),
}


@readable
def attention_heatmap(summary: PairSummary, field_names, mode: str = "attention", model_name: str = "afm",
                      zmax: float | None = None, rows_label: str = "") -> go.Figure:
    """Field x field view of a `PairSummary`; hover shows the pair, a_ij's mean and spread and
    the pair's mean contribution to the prediction. `zmax`: a colour scale shared with other
    heatmaps (rows of one value against rows of another); `rows_label`: which rows, for the title."""
    title, attribute, diverging = ATTENTION_MODES[mode]
    fields = len(field_names)
    if model_name != "afm" and mode == "attention":
        title = "Pair weight (1 for every FM pair)" if model_name == "fm" else "Field-pair weight r_fg (FwFM)"
    matrices = {name: pair_matrix(getattr(summary, name), fields)
                for name in ("attention_mean", "attention_std", "contribution_mean", "contribution_abs_mean")}
    hover = np.full((fields, fields), "", dtype=object)
    for i in range(fields):
        for j in range(fields):
            if i != j:
                hover[i, j] = (f"{field_names[i]} x {field_names[j]}<br>"
                               f"attention {matrices['attention_mean'][i, j]:.4f} ± "
                               f"{matrices['attention_std'][i, j]:.4f}<br>"
                               f"contribution {matrices['contribution_mean'][i, j]:+.4f} "
                               f"(|·| {matrices['contribution_abs_mean'][i, j]:.4f})")
    figure = field_pair_heatmap(matrices[attribute], field_names,
                                f"{title} over {summary.rows:,} {rows_label + ' ' if rows_label else ''}rows",
                                colorbar=COLORBAR_TITLES[mode], diverging=diverging, hover=hover)
    if zmax is not None:
        figure.update_traces(zmax=zmax, zmin=-zmax if diverging else 0)
    return figure


@readable
def planted_heatmap(planted, field_names) -> go.Figure:
    """The synthetic sample's ground truth (`afm.samples.planted.PlantedPair`s): the strength of each
    planted pair where it acts, 0 elsewhere; hover says when a pair acts only in some rows."""
    index = {name: i for i, name in enumerate(field_names)}
    matrix = np.zeros((len(field_names), len(field_names)))
    np.fill_diagonal(matrix, np.nan)
    hover = np.full(matrix.shape, "", dtype=object)
    for pair in planted:
        a, b = index[pair.first], index[pair.second]
        matrix[a, b] = matrix[b, a] = pair.strength
        hover[a, b] = hover[b, a] = pair.describe()
    return field_pair_heatmap(matrix, field_names, "Planted interactions (ground truth)", colorbar="strength",
                              hover=np.where(hover == "", None, hover))


@readable
def top_pairs_figure(table: pd.DataFrame, by: str = "attention_mean") -> go.Figure:
    """Horizontal bars of `afm.analysis.attention.top_feature_pairs` output, best on top."""
    ordered = table.iloc[::-1]
    figure = go.Figure(go.Bar(
        x=ordered[by], y=ordered["pair"], orientation="h",
        customdata=np.stack([ordered["support"], ordered["contribution_mean"]], axis=1),
        hovertemplate="%{y}<br>" + by + " %{x:.4f}<br>rows %{customdata[0]}<br>"
                      "mean contribution %{customdata[1]:+.4f}<extra></extra>"))
    figure.update_layout(title=f"Top feature-value pairs by {by.replace('_', ' ')}", height=max(300, 28 * len(table)),
                         margin=dict(l=10, r=10, t=50, b=10), xaxis_title=by.replace("_", " "))
    return figure


@readable
def gate_strengths_figure(gates: pd.DataFrame, top: int = 10) -> go.Figure:
    """The `top` strongest (pair, gate) lines of `afm.analysis.gates.gate_table`: how much the pair's
    effect moves with the gate's value in the labels (data) and in the model, side by side."""
    shown = gates.head(top).iloc[::-1]
    names = [f"{pair} | {gate}" for pair, gate in zip(shown["pair"], shown["gate"])]
    figure = go.Figure([go.Bar(x=shown["data_strength"], y=names, orientation="h", name="in the labels",
                               hovertemplate="%{y}<br>labels: %{x:.4f}<extra></extra>"),
                        go.Bar(x=shown["model_strength"], y=names, orientation="h", name="in the model",
                               hovertemplate="%{y}<br>model: %{x:.4f}<extra></extra>")])
    figure.update_layout(title="Where a pair's effect depends on a third field (pair | gating field)", barmode="group",
                         height=max(320, 44 * len(shown) + 120), margin=dict(l=10, r=10, t=50, b=10),
                         xaxis_title="gate strength", legend=dict(orientation="h", yanchor="top", y=-0.12))
    return figure


WATERFALL_COLORS = {"raises": "#1a9850", "lowers": "#d73027", "prediction": "#4575b4"}  # what a bar does to ŷ


@readable
def decomposition_figure(table: pd.DataFrame, prediction: float, label: float | None = None,
                         max_terms: int = 15) -> go.Figure:
    """Waterfall of one row's prediction: bias, first-order terms, pair terms (the largest
    `max_terms` by size; the rest summed into one bar). The bars end at the prediction."""
    ordered = table.reindex(table["value"].abs().sort_values(ascending=False).index)
    shown = pd.concat([table[table.kind == "bias"], ordered[ordered.kind != "bias"].head(max_terms)])
    rest = table["value"].sum() - shown["value"].sum()
    names = list(shown["term"]) + ([f"{len(table) - len(shown)} smaller terms"] if len(table) > len(shown) else [])
    values = list(shown["value"]) + ([rest] if len(table) > len(shown) else [])
    figure = go.Figure(go.Waterfall(
        orientation="h", y=names + ["prediction"], x=values + [prediction],
        measure=["relative"] * len(values) + ["total"], connector=dict(line=dict(width=1)),
        increasing=dict(marker=dict(color=WATERFALL_COLORS["raises"])),
        decreasing=dict(marker=dict(color=WATERFALL_COLORS["lowers"])),
        totals=dict(marker=dict(color=WATERFALL_COLORS["prediction"])),
        hovertemplate="%{y}: %{x:+.4f}<extra></extra>"))
    title = f"Prediction {prediction:+.4f}" + (f" (label {label:+g})" if label is not None else "")
    key = "; ".join(f"<span style='color:{color}'>■</span> {meaning}" for meaning, color in WATERFALL_COLORS.items())
    figure.update_layout(title=dict(text=title, subtitle=dict(text=key)), yaxis=dict(autorange="reversed"),
                         height=max(350, 26 * (len(names) + 1)),
                         margin=dict(l=10, r=10, t=70, b=10))
    return figure


@readable
def what_if_figure(table: pd.DataFrame, top: int = 12) -> go.Figure:
    """A what-if comparison (`afm.analysis.whatif.compare_rows`'s table): the `top` terms that
    moved most, each as it was in the start row and as it is now (left), and the pairs' attention
    before and after (right; the softmax moves every pair's weight when one field changes)."""
    parts = table[table["kind"] != "bias"]
    moved = parts.reindex(parts["change"].abs().sort_values(ascending=False, kind="stable").index).head(top)
    moved = moved.iloc[::-1]  # largest on top
    figure = make_subplots(rows=1, cols=2, shared_yaxes=True, column_widths=[0.62, 0.38], horizontal_spacing=0.02,
                           subplot_titles=["Term", "Attention a_ij"])  # short: two titles share 800 px
    for name, column, attention, colour, values in (
            ("start row", "start_term", "start_attention", "#9ecae1", "start"),
            ("now", "term", "attention", "#d62728", "now")):
        hover = moved[values].where(moved[values] != "", moved["part"])
        figure.add_trace(go.Bar(x=moved[column], y=moved["part"], orientation="h", name=name, marker_color=colour,
                                customdata=np.stack([hover], axis=1), legendgroup=name,
                                hovertemplate="%{customdata[0]}<br>term %{x:+.4f}<extra>" + name + "</extra>"),
                         row=1, col=1)
        figure.add_trace(go.Bar(x=moved[attention], y=moved["part"], orientation="h", name=name, marker_color=colour,
                                showlegend=False, legendgroup=name, customdata=np.stack([hover], axis=1),
                                hovertemplate="%{customdata[0]}<br>a_ij %{x:.4f}<extra>" + name + "</extra>"),
                         row=1, col=2)
    figure.update_layout(barmode="group", height=max(320, 34 * len(moved) + 90), margin=dict(l=10, r=10, t=50, b=10),
                         legend=dict(orientation="h", y=-0.08))
    return figure


@readable
def field_pair_heatmaps(matrices: dict[str, np.ndarray], field_names, title: str, colorbar: str,
                        diverging: bool = False, x_title: str = "partner g",
                        y_title: str = "embedding v_f of field f") -> dict[str, go.Figure]:
    """One field x field heatmap per model (FM, FwFM, AFM), each its own figure so a page can lay
    them side by side on a wide screen and one under the other on a narrow one, all on one
    colour scale so the colours compare across models."""
    finite = np.concatenate([m[np.isfinite(m)] for m in matrices.values()])
    bound = float(np.abs(finite).max()) if finite.size else 1.0
    figures = {}
    for name, matrix in matrices.items():
        figure = go.Figure(_heatmap(matrix, field_names, diverging=diverging, zmax=bound, colorbar=colorbar))
        figure.update_layout(title=f"{name.upper()}: {title}", height=420, margin=dict(l=10, r=10, t=50, b=10),
                             xaxis_title=x_title, yaxis=dict(autorange="reversed", title=y_title))
        figures[name] = figure
    return figures


@readable
def per_field_bars(values: dict[str, np.ndarray], field_names, title: str, yaxis: str,
                   baselines: dict[str, np.ndarray] | None = None, baseline_label: str = "baseline") -> go.Figure:
    """Grouped bars, one group per field, one bar per model; `baselines` (per model, per field)
    are drawn as markers on the bars, e.g. what chance alone would give."""
    figure = go.Figure([go.Bar(name=name.upper(), x=list(field_names), y=np.asarray(v), offsetgroup=name,
                               marker_color=MODEL_COLORS.get(name)) for name, v in values.items()])
    for name, baseline in (baselines or {}).items():
        figure.add_trace(go.Scatter(x=list(field_names), y=np.asarray(baseline), mode="markers",
                                    name=f"{name.upper()} {baseline_label}", offsetgroup=name, legendgroup="baseline",
                                    marker=dict(symbol="line-ew-open", size=22, line=dict(width=3, color="black"))))
    figure.update_layout(title=title, barmode="group", scattermode="group", yaxis_title=yaxis, xaxis_title="field f",
                         height=400, margin=dict(l=10, r=10, t=50, b=10))
    return figure


@readable
def seed_error_by_scale_figure(scales, errors, title="Seed eq. (11) vs autograd") -> go.Figure:
    figure = go.Figure(go.Scatter(x=list(scales), y=list(errors), mode="lines+markers",
                                  hovertemplate="scale %{x:g}: relative error %{y:.3g}<extra></extra>"))
    figure.update_layout(title=title, xaxis=dict(type="log", title="embedding scale (v multiplied by)"),
                         yaxis=dict(type="log", title="||seed − autograd|| / ||autograd||"), height=380,
                         margin=dict(l=10, r=10, t=50, b=10))
    return figure


@readable
def metric_over_epochs(histories: dict[str, list[dict]], key: str, title: str, yaxis: str,
                       nested: str | None = "coupling") -> go.Figure:
    """A per-epoch scalar for several runs: `record[nested][key]` (or `record[key]`)."""
    figure = go.Figure()
    for name, history in histories.items():
        points = [(r["epoch"], (r.get(nested) or {}).get(key) if nested else r.get(key)) for r in history]
        points = [(e, v) for e, v in points if v is not None]
        if points:
            epochs, values = zip(*points)
            figure.add_trace(go.Scatter(x=epochs, y=values, mode="lines+markers", name=name,
                                        line=dict(color=MODEL_COLORS.get(name.split(" ")[0].lower()))))
    figure.update_layout(title=title, xaxis_title="epoch", yaxis_title=yaxis, height=360,
                         margin=dict(l=10, r=10, t=50, b=10))
    return figure


@readable
def learning_curves(runs: dict[str, list[dict]], metric: str = "rmse", splits=("train", "valid", "test"),
                    references: dict[str, float] | None = None, models: dict[str, str] | None = None,
                    log_y: bool = False) -> go.Figure:
    """Per-epoch metric of every run (colour: run, dash: split), with horizontal reference lines
    (e.g. the paper's Frappe test RMSE: FM 0.3385, AFM 0.3102). `models` (run -> fm/fwfm/afm)
    gives the first run of each model its usual colour."""
    figure = go.Figure()
    palette = ["#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
    used: set[str] = set()
    drawn = [s for s in ("valid", "test", "train") if s in splits]  # the legend shows a run's first line
    for index, (name, history) in enumerate(runs.items()):
        usual = MODEL_COLORS.get((models or {}).get(name, ""))
        color = usual if usual and usual not in used else palette[index % len(palette)]
        used.add(color)
        shown = False
        for split in drawn:
            points = [(r["epoch"], r.get(f"{split}_{metric}")) for r in history]
            points = [(e, v) for e, v in points if v is not None and np.isfinite(v)]
            if points:
                epochs, values = zip(*points)
                # One legend entry per run (colour); the line style says the split.
                figure.add_trace(go.Scatter(x=epochs, y=values, mode="lines+markers", name=name, legendgroup=name,
                                            showlegend=not shown,
                                            line=dict(color=color, dash=SPLIT_DASH.get(split, "solid")),
                                            hovertemplate=f"{name} {split} epoch %{{x}}: %{{y:.4f}}<extra></extra>"))
                shown = True
    # Labels above the highest line and below the others: reference values close together (the
    # paper's FM 0.3385 and AFM 0.3102) would otherwise print on top of each other.
    ordered = sorted((references or {}).items(), key=lambda item: -item[1])
    for n, (label, value) in enumerate(ordered):
        figure.add_hline(y=value, line=dict(color="grey", dash="dashdot", width=1), annotation_text=label,
                         annotation_position="top right" if n == 0 else "bottom right")
    last_epoch = max((r["epoch"] for history in runs.values() for r in history), default=1)
    styles = ", ".join(f"{SPLIT_STYLE_NAMES[SPLIT_DASH[s]]} = {s}" for s in drawn)
    figure.update_layout(title=dict(text=f"{metric.upper()} per epoch", subtitle=dict(
                             text=f"colour: run; line: {styles}")),
                         xaxis=dict(title="epoch", tickmode="linear", tick0=0, dtick=max(1, -(-last_epoch // 10))),
                         yaxis_title=metric.upper(), yaxis_type="log" if log_y else "linear",
                         height=460 + 22 * max(0, len(runs) - 3), margin=dict(l=10, r=10, t=70, b=10),
                         legend=dict(orientation="h", yanchor="top", y=-0.15))
    return figure


@readable
def pair_value_heatmap(table: pd.DataFrame, field_names, column: str, title: str, colorbar: str,
                       diverging: bool = False) -> go.Figure:
    """Field x field view of one column of a per-pair table (`afm.analysis.pairs`, pairs named
    "a x b"); hover gives the pair and the value."""
    index = {name: n for n, name in enumerate(field_names)}
    fields = len(field_names)
    matrix = np.full((fields, fields), np.nan)
    hover = np.full((fields, fields), "", dtype=object)
    for pair, value in zip(table["pair"], table[column]):
        i, j = (index[name] for name in pair.split(" x ", 1))
        matrix[i, j] = matrix[j, i] = value
        hover[i, j] = hover[j, i] = f"{pair}<br>{colorbar} {value:+.4f}"
    return field_pair_heatmap(matrix, field_names, title, colorbar=colorbar, diverging=diverging, hover=hover)


@readable
def rank_agreement_figure(frame: pd.DataFrame, chance: float, top: int) -> go.Figure:
    """Distributions over rows of Kendall's tau (left) and the top-k overlap (right), one box per
    comparison of views (`RankAgreement.frame()`)."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Kendall tau per row", f"top-{top} overlap per row"))
    for n, (comparison, part) in enumerate(frame.groupby("comparison", sort=False)):
        color = px_color(n)
        figure.add_trace(go.Box(x=part["tau"], name=comparison, marker_color=color, boxmean=True,
                                legendgroup=comparison), row=1, col=1)
        figure.add_trace(go.Box(x=part["overlap"], name=comparison, marker_color=color, showlegend=False,
                                legendgroup=comparison), row=1, col=2)
    figure.add_vline(x=chance, line_dash="dot", annotation_text="chance", row=1, col=2)
    figure.update_yaxes(automargin=True, showticklabels=False)
    figure.update_layout(height=320, margin=dict(l=10, r=10, t=60, b=10), legend=dict(orientation="h", y=-0.2))
    return figure


@readable
def adversarial_figure(max_tv: np.ndarray, epsilon: float) -> go.Figure:
    """Histogram over rows of the largest total-variation distance of an attention that keeps ŷ within ε."""
    figure = go.Figure(go.Histogram(x=max_tv, xbins=dict(start=0, end=1.0001, size=0.05), marker_color="#d62728"))
    figure.update_layout(title=f"Farthest attention with the same prediction (within ε = {epsilon:.3g})",
                         xaxis_title="distance from the learned attention (TV; 1 = nothing shared)",
                         yaxis_title="rows", height=300, margin=dict(l=10, r=10, t=50, b=10), bargap=0.05)
    return figure


@readable
def erasure_figure(curves) -> go.Figure:
    """Erasure curves (`afm.analysis.erasure.ErasureCurves`): against k, the pairs erased from each
    row in a measure's order, the mean |ŷ_k - ŷ_0| (left) and the task's metric (right, when the
    rows had labels); random orders dashed. A faithful measure's curves rise fastest."""
    frame, metric = curves.frame(), curves.metric is not None
    figure = make_subplots(rows=1, cols=2 if metric else 1, subplot_titles=(
        "prediction moved, |ŷ_k − ŷ_0|", f"{curves.metric_name.upper()} of ŷ_k")[:1 + metric])  # short: 800 px
    for n, (measure, part) in enumerate(frame.groupby("measure", sort=False)):
        random = measure == "random"
        area = "" if random else f" (area {curves.area[measure]:+.2f})"
        line = dict(color="#7f7f7f" if random else px_color(n), dash="dash" if random else "solid")
        for col, column in enumerate(("change", "metric")[:1 + metric], start=1):
            figure.add_trace(go.Scatter(x=part["k"], y=part[column], mode="lines", name=measure + area, line=line,
                                        legendgroup=measure, showlegend=col == 1), row=1, col=col)
    figure.update_xaxes(title_text="top pairs erased per row (k)")
    figure.update_layout(height=420, margin=dict(l=10, r=10, t=50, b=10),
                         legend=dict(orientation="h", yanchor="top", y=-0.3))  # below the axis titles
    return figure


def px_color(n: int) -> str:
    """The n-th colour of Plotly's default sequence."""
    palette = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3")
    return palette[n % len(palette)]


@readable
def rank_range_figure(ranges: pd.DataFrame, measure: str, top: int = 15) -> go.Figure:
    """Each pair's best and worst rank across seeds under one measure (`SeedStability.rank_ranges`),
    the pairs with the best worst rank on top: a short bar is a rank another seed keeps."""
    low, high = ranges[f"{measure}_rank_min"], ranges[f"{measure}_rank_max"]
    shown = ranges.assign(low=low, high=high).sort_values(["high", "low"]).head(top).iloc[::-1]
    figure = go.Figure(go.Bar(x=shown["high"] - shown["low"] + 0.8, base=shown["low"] - 0.4, y=shown["pair"],
                              orientation="h", marker_color=px_color(0),
                              hovertemplate="%{y}: ranks %{customdata[0]} to %{customdata[1]}<extra></extra>",
                              customdata=shown[["low", "high"]].to_numpy()))
    figure.update_layout(title=f"Rank of each pair across seeds, by {measure} (1 = most important)",
                         xaxis_title="rank", height=max(300, 26 * len(shown) + 120), margin=dict(l=10))
    return figure
