"""Figure builders are pure: check what they draw without a browser."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch

from afm import figures
from afm.analysis.attention import PairSummary, decompose_split, row_decomposition, top_feature_pairs
from afm.data import load_dataset
from afm.models import ModelConfig, build_model

NAMES = ["a", "b", "c"]


def summary():
    return PairSummary(pair_names=["a x b", "a x c", "b x c"], attention_mean=np.array([0.5, 0.3, 0.2]),
                       attention_std=np.array([0.1, 0.1, 0.05]), contribution_mean=np.array([0.4, -0.2, 0.0]),
                       contribution_abs_mean=np.array([0.5, 0.25, 0.1]), rows=100)


def test_attention_heatmap_modes_and_hover():
    for mode in ("attention", "contribution", "magnitude"):
        figure = figures.attention_heatmap(summary(), NAMES, mode)
        heat = figure.data[0]
        assert isinstance(heat, go.Heatmap) and np.asarray(heat.z).shape == (3, 3)
        assert np.isnan(np.asarray(heat.z, dtype=float)[0, 0])
    figure = figures.attention_heatmap(summary(), NAMES, "contribution")
    z = np.asarray(figure.data[0].z, dtype=float)
    assert z[0, 2] == z[2, 0] == -0.2 and figure.data[0].zmid == 0  # signed: diverging around 0
    assert "a x c" in figure.data[0].text[0][2] and "0.3000 ± 0.1000" in figure.data[0].text[0][2]


def test_planted_heatmap_marks_only_planted_pairs():
    from afm.samples.planted import PlantedPair

    figure = figures.planted_heatmap([PlantedPair("a", "c", 0.7, when=("b", ("on",)))], NAMES)
    z = np.asarray(figure.data[0].z, dtype=float)
    assert z[0, 2] == z[2, 0] == 0.7 and z[0, 1] == 0
    assert "only where b is on" in figure.data[0].text[0][2]


def test_decomposition_waterfall_ends_at_the_prediction():
    data = load_dataset("sample")
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="afm", num_features=data.schema.num_features, num_fields=10,
                                    embedding_dim=4, attention_dim=4)).eval()
    terms = decompose_split(model, data.test, rows=np.arange(3))
    table = row_decomposition(terms, 0, data.schema, data.test.feature_ids[0])
    figure = figures.decomposition_figure(table, float(terms.prediction[0]), label=1.0, max_terms=8)
    waterfall = figure.data[0]
    assert waterfall.measure[-1] == "total" and len(waterfall.x) == 1 + 8 + 1 + 1
    assert np.isclose(sum(waterfall.x[:-1]), waterfall.x[-1], atol=1e-5)
    # The colours say what a bar does, in the subtitle: a waterfall has no legend of its own.
    key = figure.layout.title.subtitle.text
    assert all(color in key and meaning in key for meaning, color in figures.WATERFALL_COLORS.items())
    assert waterfall.increasing.marker.color == figures.WATERFALL_COLORS["raises"]
    top = top_feature_pairs(terms, data.test, data.schema, rows=np.arange(3), min_support=1, top=4)
    assert len(figures.top_pairs_figure(top).data[0].y) == 4


def test_heatmaps_per_model_bars_and_curves():
    matrices = {"fm": np.eye(3), "afm": np.ones((3, 3))}
    heatmaps = figures.field_pair_heatmaps(matrices, NAMES, "share", colorbar="share")
    assert list(heatmaps) == ["fm", "afm"]
    assert heatmaps["fm"].data[0].zmax == heatmaps["afm"].data[0].zmax == 1.0  # one colour scale
    assert heatmaps["afm"].data[0].colorbar.title.text == "share"
    assert heatmaps["afm"].layout.xaxis.title.text == "partner g"
    bars = figures.per_field_bars({"fm": [0.1, 0.2, 0.3], "afm": [0.3, 0.2, 0.1]}, NAMES, "t", "y",
                                  baselines={"fm": [0.5, 0.5, 0.5]}, baseline_label="chance")
    assert [b.name for b in bars.data] == ["FM", "AFM", "FM chance"]
    history = [{"epoch": 0, "valid_rmse": 1.0, "test_rmse": 1.0},
               {"epoch": 1, "train_rmse": 0.5, "valid_rmse": 0.4, "test_rmse": 0.41, "coupling": {"x": 2.0}}]
    curves = figures.learning_curves({"afm": history, "fm": history}, references={"paper AFM": 0.3102})
    # One legend entry per run (its valid line); the line style tells the split, said in the subtitle.
    assert [(t.name, t.line.dash, t.showlegend) for t in curves.data[:3]] == [
        ("afm", "solid", True), ("afm", "dash", False), ("afm", "dot", False)]
    assert "solid = valid" in curves.layout.title.subtitle.text
    assert curves.layout.xaxis.dtick == 1  # whole epochs, never 0.5
    assert curves.layout.shapes[0].y0 == 0.3102
    # The paper's two references, 0.03 apart, label one above its line and one below.
    both = figures.learning_curves({"afm": history}, references={"paper AFM": 0.3102, "paper FM": 0.3385})
    assert [(a.text, a.yanchor) for a in both.layout.annotations] == [("paper FM", "bottom"), ("paper AFM", "top")]
    over = figures.metric_over_epochs({"afm": history}, "x", "t", "y")
    assert list(over.data[0].x) == [1] and list(over.data[0].y) == [2.0]
    scale = figures.seed_error_by_scale_figure([0.1, 1], [1e-3, 0.5])
    assert scale.layout.xaxis.type == "log" and list(scale.data[0].y) == [1e-3, 0.5]
