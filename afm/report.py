"""A report to share: one self-contained HTML file about a checkpoint (`afm report`, and the
download button on the app's Predict & share page).

It opens offline, with nothing beside it: plotly.js is written into the page once and every
chart is drawn from data inside the file, so it can be mailed to a class. It holds a model card
(data, model and training settings, metrics, curves), the attention heatmap with its spread
across rows, the top pairs, the signed contribution view, which pairs matter (exact Shapley
interactions of a sample of rows, the strongest gate, and whether attention explains:
afm.analysis.pairs) and, on request, the gradient coupling summary. The charts come from the
same builders as the app's (`afm.figures`). Every text that comes from data or files (field
names, values, paths) is HTML-escaped; plotly writes its figure data with `</` escaped, so a
field named `</script>` cannot end a script.
"""

from __future__ import annotations

import html
import os
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from afm.analysis.answer import answer_sentences, reference_sentence
from afm.analysis.attention import decompose_split, pair_matrix, summarize_pairs, top_feature_pairs
from afm.analysis.coupling import coupling_summary
from afm.analysis.erasure import ErasureCurves
from afm.analysis.higher_order import describe_effect, non_pairwise_sentence
from afm.analysis.pairs import AttentionChecks, PairExplanation, check_attention, erasure_of, explain_pairs
from afm.analysis.reference import gradient_boosting_reference
from afm.checkpoint import Checkpoint
from afm.data import REGISTRY, Dataset, load_dataset
from afm.errors import AFMError, ConfigError
from afm.figures import (
    adversarial_figure,
    attention_heatmap,
    erasure_figure,
    field_pair_heatmap,
    field_pair_heatmaps,
    learning_curves,
    pair_value_heatmap,
    per_field_bars,
    rank_agreement_figure,
    top_pairs_figure,
)
from afm.files import write_atomic
from afm.models import parameter_count

COUPLING_ROWS = 1024  # validation rows the coupling summary measures (as the app's default)
TOP_PAIRS = 20
PAIR_ROWS = 256  # rows of the split the "Which pairs matter" section explains exactly (seeded sample)
RANKED_PAIRS = 10  # lines of its ranked table
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1f2937; line-height: 1.45; }
h1 { margin-bottom: 0.1em; } h2 { border-bottom: 1px solid #d1d5db; padding-bottom: 0.2em; margin-top: 2em; }
.subtitle, .note { color: #6b7280; } .note { font-size: 0.92em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.92em; }
th, td { border: 1px solid #e5e7eb; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f4f6; }
.cards { display: flex; flex-wrap: wrap; gap: 1.5em; } .cards > div { flex: 1 1 320px; }
.figure { margin: 0.8em 0 1.6em; } .wide { overflow-x: auto; max-width: 100%; }
"""


def report_dataset(checkpoint: Checkpoint, data: str | os.PathLike | None = None, data_dir=None, label=None,
                   seed: int = 0) -> tuple[Dataset | None, str | None]:
    """The rows a report analyses, read with the checkpoint's encoding: `data` when given (its
    errors are the user's to see), else the checkpoint's own dataset when it can be found, else
    none, with a note saying what the report will lack."""
    if data is not None:
        dataset = load_dataset(data, data_dir=data_dir, seed=seed, label=label, schema=checkpoint.schema)
        checkpoint.check_fits(dataset)
        return dataset, None
    recorded = checkpoint.trained_on
    candidates = [recorded.name] if recorded.name in REGISTRY else []
    if recorded.location and Path(recorded.location).exists():
        candidates.append(recorded.location)
    for spec in candidates:
        try:
            dataset = load_dataset(spec, data_dir=data_dir, seed=seed, label=label, schema=checkpoint.schema)
            checkpoint.check_fits(dataset)
            return dataset, None
        except AFMError:
            continue
    return None, ("no data to analyse (the checkpoint's own was not found): the report has the model card only; "
                  "give --data for the attention analysis")


def write_report(path: str | os.PathLike, checkpoint: Checkpoint, dataset: Dataset | None = None,
                 split: str = "test", coupling: bool = False, title: str | None = None) -> dict:
    """Build the report and write it atomically to `path`; returns a summary for the CLI."""
    page = build_report(checkpoint, dataset, split=split, coupling=coupling, title=title)
    data = page.encode("utf-8")
    write_atomic(path, data, lambda problem: ConfigError(f"{path}: {problem}"))
    return {"out": str(path), "bytes": len(data), "figures": page.count('class="plotly-graph-div"'),
            "data": dataset.name if dataset is not None else None, "split": split if dataset is not None else None,
            "coupling": bool(coupling and dataset is not None)}


def build_report(checkpoint: Checkpoint, dataset: Dataset | None = None, split: str = "test",
                 coupling: bool = False, title: str | None = None) -> str:
    """The report as one HTML document (see the module docstring)."""
    config = checkpoint.model_config
    name = config.model.upper()
    title = title or f"{name} on {checkpoint.trained_on.name or 'unknown data'}"
    sections = [_model_card(checkpoint, dataset, split)]
    if dataset is not None:
        sections.append(_attention_sections(checkpoint, dataset, split))
        sections.append(_pairs_section(checkpoint, dataset, split))
        if coupling:
            sections.append(_coupling_section(checkpoint, dataset))
    else:
        sections.append("<h2>Attention</h2><p class='note'>No data was given, so the attention analysis (which needs "
                        "rows) is left out. Make the report again with data to include it.</p>")
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{_text(title)} · AFM Inspector report</title><style>{STYLE}</style>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            f"<h1>{_text(title)}</h1><p class='subtitle'>AFM Inspector {_text(_version())} report, made {made}. "
            "Self-contained: it opens offline, with nothing beside it.</p>"
            + "".join(sections) + "</body></html>\n")


# --------------------------------------------------------------------------- sections


def _model_card(checkpoint: Checkpoint, dataset: Dataset | None, split: str) -> str:
    config, train = checkpoint.model_config, checkpoint.train_config
    recorded = checkpoint.trained_on
    data_card = {"name": recorded.name, "read from": recorded.location,
                 "rows (train / valid / test)": " / ".join(f"{n:,}" for n in recorded.rows.values()),
                 "fields": checkpoint.schema.num_fields, "features": f"{checkpoint.schema.num_features:,}",
                 "field names": ", ".join(checkpoint.schema.field_names), "label range": recorded.label_range,
                 "fingerprint": recorded.fingerprint}
    model_card = {"model": config.model.upper(), "embedding size k": config.embedding_dim,
                  **({"attention size t": config.attention_dim} if config.model == "afm" else {}),
                  "parameters": f"{parameter_count(config):,}", "task": checkpoint.task,
                  "dropout (attention, pooled)": f"{config.dropout_attention:g}, {config.dropout_pooled:g}",
                  "checkpoint created": checkpoint.created}
    training = {key: value for key, value in sorted(train.items()) if key != "task"}
    parts = ["<h2>Model card</h2><div class='cards'>",
             f"<div><h3>Data</h3>{_definitions(data_card)}</div>",
             f"<div><h3>Model</h3>{_definitions(model_card)}</div>",
             f"<div><h3>Training</h3>{_definitions(training)}</div></div>"]
    best = checkpoint.best
    recorded_metrics = {k: v for k, v in best.items() if k.startswith(("train_", "valid_", "test_"))}
    parts.append("<h3>Metrics</h3>")
    if recorded_metrics:
        parts.append(f"<p>At the best epoch ({_text(checkpoint.best_epoch)}), as recorded in training:</p>"
                     + _definitions(recorded_metrics))
    else:
        parts.append("<p class='note'>No training history: this model was imported or made by hand.</p>")
    if dataset is not None:
        try:
            measured = checkpoint.evaluate(dataset, split, next(checkpoint.model.parameters()).device)
        except AFMError as exc:
            parts.append(f"<p class='note'>Not measured on {_text(dataset.name)}: {_text(exc)}</p>")
        else:
            rows = measured.pop("rows")
            parts.append(f"<p>Measured now on the {_text(split)} rows of {_text(dataset.name)} ({rows:,} rows):</p>"
                         + _definitions(measured))
    parts.append("<h3>Curves</h3>")
    if len(checkpoint.history) > 1:
        metrics = ["rmse"] + (["auc", "logloss"] if checkpoint.task == "binary" else [])
        for metric in metrics:
            figure = learning_curves({config.model.upper(): checkpoint.history}, metric,
                                     models={config.model.upper(): config.model})
            parts.append(_figure(figure))
    else:
        parts.append("<p class='note'>No per-epoch history to draw.</p>")
    return "".join(parts)


def _attention_sections(checkpoint: Checkpoint, dataset: Dataset, split: str) -> str:
    model, schema = checkpoint.model, dataset.schema
    rows = dataset.rows(split)
    terms = decompose_split(model, rows)
    summary = summarize_pairs(terms, schema)
    names = list(schema.field_names)
    model_name = checkpoint.model_config.model
    spread = field_pair_heatmap(pair_matrix(summary.attention_std, len(names)), names,
                                f"Spread of the pair weight across rows (standard deviation), {summary.rows:,} rows",
                                colorbar="std")
    parts = [f"<h2>Attention</h2><p class='note'>Over the {summary.rows:,} {_text(split)} rows of "
             f"{_text(dataset.name)}. Attention is a weight, not a cause: a pair with a high a_ij can push the "
             "prediction down, or barely move it when pᵀ(e_i⊙e_j) is small; the contribution view shows what each "
             "pair adds. Hover a cell for its mean, spread and contribution.</p>",
             _figure(attention_heatmap(summary, names, "attention", model_name)), _figure(spread),
             "<h2>Signed contribution</h2><p class='note'>The mean of a_ij·pᵀ(e_i⊙e_j): what each field pair adds "
             "to the prediction, with its sign.</p>",
             _figure(attention_heatmap(summary, names, "contribution", model_name)),
             "<h2>Top pairs</h2><h3>Field pairs by mean |contribution|</h3>"]
    ranked = summary.frame().sort_values("contribution_abs_mean", ascending=False, kind="stable").head(TOP_PAIRS)
    parts.append(_table(ranked))
    support = max(1, min(20, len(rows) // 100))
    table = top_feature_pairs(terms, rows, schema, top=TOP_PAIRS, min_support=support, by="contribution_abs_mean")
    parts.append(f"<h3>Feature-value pairs by mean |contribution| (seen in at least {support} rows)</h3>")
    if table.empty:
        parts.append("<p class='note'>No feature-value pair is that frequent in these rows.</p>")
    else:
        parts.append(_figure(top_pairs_figure(table, "contribution_abs_mean")))
        parts.append(_table(table.drop(columns=["first", "second"])))
    return "".join(parts)


def _pairs_section(checkpoint: Checkpoint, dataset: Dataset, split: str) -> str:
    """Which pairs matter: exact Shapley interactions of PAIR_ROWS rows (fields outside a coalition
    absent), the ranked table, the strongest gate and the panel of three checks of attention. What
    cannot be computed here (more fields than exact values allow) is a note, not a failed report."""

    model, schema, rows = checkpoint.model, dataset.schema, dataset.rows(split)
    parts = ["<h2>Which pairs matter</h2>"]
    try:
        explanation = explain_pairs(model, rows, schema, dataset.train, rows=PAIR_ROWS, coalitions="absent",
                                    split_name=split)
    except AFMError as exc:
        return parts[0] + f"<p class='note'>Not computed: {_text(exc)}</p>"
    names = list(schema.field_names)
    heatmap = pair_value_heatmap(explanation.table, names, "shapley_abs_mean",
                                 f"Mean |Shapley interaction index| over {len(explanation.rows):,} rows",
                                 colorbar="|SII|")
    gate = explanation.gate_sentence()
    parts += [f"<p class='note'>What a pair is worth to the prediction. {_text(explanation.describe())} The Shapley "
              "interaction index (SII) counts a pair's effect with every other field known or not; the Shapley-Taylor "
              "term (taylor) is the pair's share of ŷ, and a row's shares add up to it.</p>", _figure(heatmap),
              f"<h3>Field pairs by mean |Shapley interaction| (top {RANKED_PAIRS})</h3>",
              _table(explanation.table.head(RANKED_PAIRS)), "<h3>Strongest gate</h3>",
              f"<p>{_text(gate)}</p>" if gate else
              "<p class='note'>No value of another field has enough rows to measure a gate.</p>",
              "<h3>Is attention an explanation?</h3>"]
    if checkpoint.model_config.num_pairs < 2:
        return "".join(parts) + "<p class='note'>One field pair: there is no order of pairs to compare.</p>"
    try:
        checks = check_attention(model, explanation, rows, dataset.train, checkpoint.task,
                                 checkpoint.label_range or dataset.label_range)
    except AFMError as exc:
        return "".join(parts) + f"<p class='note'>Not computed: {_text(exc)}</p>"
    parts.insert(1, _in_short(checkpoint, dataset, split, explanation, checks))
    return "".join(parts) + _attention_checks(checks, checkpoint.model_config.model, explanation) + _trust(
        erasure_of(model, explanation, rows, checkpoint.task), explanation)


def _in_short(checkpoint: Checkpoint, dataset: Dataset, split: str, explanation: PairExplanation,
              checks: AttentionChecks) -> str:
    """The answer first, the sentences the Attention page opens on for the same rows, with the
    gradient-boosting reference on the test split."""
    reference = None
    if split == "test" and len(dataset.test):
        reference = reference_sentence(gradient_boosting_reference(dataset, checkpoint.task),
                                       checkpoint.evaluate(dataset, "test"), checkpoint.task)
    said = answer_sentences(explanation, checks, checkpoint.model_config.model, reference)
    return "<h3>In short</h3><ul>" + "".join(f"<li>{_text(sentence)}</li>" for sentence in said) + "</ul>"


def _trust(curves: ErasureCurves, explanation: PairExplanation) -> str:
    """Can I trust this pair? The same sentences and erasure curves as the Attention page."""
    effects = [f"<p><b>{_text(describe_effect(line))}.</b> Its pairs are parts of one effect, not effects of their "
               "own.</p>" for _, line in explanation.effects.iterrows()]
    return "".join(["<h3>Can I trust this pair?</h3>", *effects, "<p class='note'>"
                    + _text(non_pairwise_sentence(explanation.non_pairwise_share, explanation.coalitions)) + "</p>",
                    _figure(erasure_figure(curves)), f"<p>{_text(curves.meaning())}</p>"])


def _attention_checks(checks: AttentionChecks, model_name: str, explanation: PairExplanation) -> str:
    """The panel of three, each with its sentence: rank agreement, and for AFM the baselines and
    the farthest attention with the same prediction."""

    agreement = checks.agreement
    parts = ["<p class='note'>Do the views rank a row's pairs alike? Kendall's "
             f"tau per row between each two views, and how many of each row's top {agreement.top} pairs they share, "
             f"over the {len(explanation.rows):,} explained rows.</p>",
             _figure(rank_agreement_figure(agreement.frame(), agreement.chance_overlap, agreement.top)),
             f"<p>{_text(checks.agreement_sentence(model_name))}</p>"]
    if checks.baselines is None:
        parts.append("<p class='note'>FM and FwFM weigh each pair the same in every row: there is no per-row "
                     "attention to test.</p>")
        return "".join(parts)
    parts += [f"<p class='note'>Does the model need per-row attention? The same AFM with every weight 1/P, and with "
              f"each pair's mean training attention as a fixed weight (an FwFM), on {checks.baselines.rows_label}."
              "</p>", _table(checks.baselines.frame()), f"<p>{_text(checks.baselines.verdict())}</p>",
              _figure(adversarial_figure(checks.adversarial.max_tv, checks.adversarial.epsilon)),
              f"<p>{_text(checks.adversarial.meaning())}</p>"]
    return "".join(parts)


def _coupling_section(checkpoint: Checkpoint, dataset: Dataset) -> str:
    rows = dataset.valid if len(dataset.valid) else dataset.rows("all")
    picked = np.random.default_rng(0).permutation(len(rows))[:COUPLING_ROWS]
    ids, values, targets = rows.tensors(picked)
    model_name = checkpoint.model_config.model
    summary = coupling_summary(checkpoint.model, ids, values, targets, checkpoint.task)
    names = list(dataset.schema.field_names)
    return ("<h2>Gradient coupling</h2><p class='note'>How much of each embedding's gradient comes from each partner "
            f"(C[f, g], rows sum to 1), and how much the partners' pulls cancel, on {summary.rows:,} validation "
            "rows (docs/gradient_coupling.md).</p>"
            + _figure(field_pair_heatmaps({model_name: summary.share}, names, "share of ∂L/∂v_f from partner g",
                                          colorbar="share")[model_name])
            + _figure(per_field_bars({model_name: summary.cancellation}, names, "Cancellation index per field",
                                     "1 − ‖Σ G‖ / Σ ‖G‖", baselines={model_name: summary.cancellation_baseline},
                                     baseline_label="if pulls were random")))


# --------------------------------------------------------------------------- pieces


def _figure(figure: go.Figure) -> str:
    """A chart drawn by the plotly.js already in the page's head."""
    return "<div class='figure'>" + pio.to_html(figure, full_html=False, include_plotlyjs=False,
                                                config=PLOTLY_CONFIG) + "</div>"


def _text(value) -> str:
    return html.escape(str(value), quote=True)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1e5 else f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_cell(v)}" for k, v in value.items())
    return str(value)


def _definitions(values: dict) -> str:
    rows = "".join(f"<tr><th>{_text(k)}</th><td>{_text(_cell(v))}</td></tr>" for k, v in values.items())
    return f"<table>{rows}</table>"


def _table(frame: pd.DataFrame) -> str:
    """A table that scrolls sideways inside the page when it is wider than the screen."""
    return "<div class='wide'>" + frame.to_html(index=False, escape=True, border=0, float_format=lambda v: f"{v:.4g}",
                                                na_rep="–") + "</div>"


def _version() -> str:
    try:
        return version("afm-inspector")
    except PackageNotFoundError:
        return "(not installed)"
