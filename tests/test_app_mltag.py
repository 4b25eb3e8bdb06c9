"""The app on an ml-tag-shaped dataset (`afm synthesize ml-tag`): 3 fields, 3 pairs, 90,445
features. Trained from the Data page; the Attention and Coupling pages answer."""

from __future__ import annotations

import json
from pathlib import Path

import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

from afm.samples.mltag_shape import MlTagConfig, write_ml_tag
from tests.test_app import TIMEOUT, no_errors, train_and_collect

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_an_ml_tag_shaped_dataset_trains_and_every_page_answers(tmp_path, monkeypatch):
    write_ml_tag(tmp_path, MlTagConfig(num_rows=6000))
    monkeypatch.setenv("AFM_DATA_DIR", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    at.radio(key="dataset_source").set_value("ml-tag").run()
    at.text_input(key="data_dir").set_value(str(tmp_path)).run()
    no_errors(at)
    assert at.metric[0].value == "4,200"  # training rows
    at.selectbox[0].set_value("afm")  # model
    at.selectbox[1].set_value("quick").run()  # preset: k = t = 16
    at.number_input(key="recipe_epochs_quick_afm").set_value(2)
    train_and_collect(at)
    assert at.session_state["active_run"].startswith("AFM k=16")

    at.switch_page("pages/attention.py").run()
    no_errors(at)
    heatmap = go.Figure(json.loads(at.get("plotly_chart")[0].proto.spec))
    assert list(heatmap.data[0].x) == ["user", "movie", "tag"]  # 3 fields, so 3 pairs
    for view in ("contribution", "shapley"):  # 3 fields: 8 coalitions a row, exact
        at.radio(key="attention_view").set_value(view).run()
        no_errors(at)
    no_errors(at)

    at.switch_page("pages/coupling.py").run()
    no_errors(at)
    assert at.get("plotly_chart")
