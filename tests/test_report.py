"""The shareable report: one self-contained HTML file that opens offline, with its charts drawn
and no network request, in headless Chromium."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from afm.app.local_server import CHROMIUM, CHROMIUM_ARGS
from afm.checkpoint import Checkpoint, TrainedOn, load_checkpoint
from afm.cli import main
from afm.data import load_csv
from afm.models import ModelConfig, build_model
from afm.report import build_report, report_dataset, write_report
from afm.samples.checkpoints import sample_checkpoint_path

pytestmark = pytest.mark.slow  # each report decomposes a split and embeds 4.8 MB of plotly.js
HOSTILE = "</script><img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory) -> tuple[Path, dict]:
    checkpoint = load_checkpoint(sample_checkpoint_path("afm"))
    dataset, note = report_dataset(checkpoint)  # found from the checkpoint's own record: the sample
    assert note is None and dataset.name == "sample"
    path = tmp_path_factory.mktemp("report") / "report.html"
    return path, write_report(path, checkpoint, dataset, coupling=True)


def test_the_report_holds_the_model_card_and_every_analysis(sample_report):
    path, summary = sample_report
    page = path.read_text()
    assert summary["figures"] == 7  # curves, attention, spread, contribution, top pairs, 2 coupling
    for heading in ("Model card", "Metrics", "Curves", "Attention", "Spread of the pair weight", "Signed contribution",
                    "Top pairs", "Gradient coupling"):
        assert heading in page, heading
    assert "valid_rmse" in page and "Measured now on the test rows of sample (1,500 rows)" in page
    assert "user=user_" in page and "device=phone" in page  # feature-value pairs are named
    # plotly.js is inside, once, and nothing is fetched from anywhere.
    assert page.count("<script type='text/javascript'>") == 1 and "<script src" not in page.lower()
    assert page.count('class="plotly-graph-div"') == 7


def test_hostile_names_are_escaped(tmp_path):
    frame = pd.DataFrame({HOSTILE: np.tile(["a", "b", "c"], 20), "plan": np.repeat(["x", "y"], 30),
                          "label": np.arange(60) % 3})
    frame.to_csv(tmp_path / "rows.csv", index=False)
    dataset = load_csv(tmp_path / "rows.csv", min_count=1)
    config = ModelConfig(model="afm", num_features=dataset.schema.num_features, num_fields=2, embedding_dim=4,
                         attention_dim=4)
    checkpoint = Checkpoint(build_model(config, seed=0), config, {"task": "regression"}, [], dataset.schema,
                            TrainedOn.of(dataset))
    page = build_report(checkpoint, dataset)
    assert HOSTILE not in page and "&lt;/script&gt;&lt;img" in page


def test_without_data_the_report_is_the_model_card(tmp_path, capsys):
    checkpoint = load_checkpoint(sample_checkpoint_path("fm"))
    checkpoint.trained_on = TrainedOn(name="gone", location=str(tmp_path / "nowhere"))
    dataset, note = report_dataset(checkpoint)
    assert dataset is None and "--data" in note
    page = build_report(checkpoint, dataset)
    assert "Model card" in page and "No data was given" in page and page.count('class="plotly-graph-div"') == 1


def test_cli_report(tmp_path, capsys):
    out = tmp_path / "fm.html"
    code = main(["report", "--checkpoint", str(sample_checkpoint_path("fm")), "--data", "sample", "--split", "valid",
                 "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["figures"] == 5 and summary["split"] == "valid" and out.stat().st_size == summary["bytes"]
    three = tmp_path / "three.libfm"
    three.write_text("".join(f"{i % 2} {i % 4}:1 {4 + i % 3}:1 {7 + i % 2}:1\n" for i in range(60)))
    code = main(["report", "--checkpoint", str(sample_checkpoint_path("fm")), "--data", str(three), "--out",
                 str(tmp_path / "bad.html")])
    captured = capsys.readouterr()
    assert code == 2 and "fields" in captured.err and not (tmp_path / "bad.html").exists()


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no Chromium (apt-get install chromium)")
def test_the_report_opens_offline_in_chromium_with_its_charts_drawn(sample_report, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
    path, summary = sample_report
    hostile = tmp_path / "hostile.html"
    frame = pd.DataFrame({HOSTILE: np.tile(["a", "b"], 30), "plan": np.repeat(["x", "y", "z"], 20),
                          "label": np.arange(60) % 2})
    frame.to_csv(tmp_path / "rows.csv", index=False)
    dataset = load_csv(tmp_path / "rows.csv", min_count=1)
    config = ModelConfig(model="fm", num_features=dataset.schema.num_features, num_fields=2, embedding_dim=4)
    write_report(hostile, Checkpoint(build_model(config, seed=0), config, {"task": "regression"}, [],
                                     dataset.schema, TrainedOn.of(dataset)), dataset)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1300, "height": 900})
        outside, dialogs, errors = [], [], []

        def only_files(route):  # every request that is not the file itself fails, and is counted
            if route.request.url.startswith("file://"):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        context.route("**/*", only_files)
        tab = context.new_page()
        tab.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        tab.on("pageerror", lambda error: errors.append(str(error)))
        for report, figures in ((path, summary["figures"]), (hostile, 4)):
            tab.goto(report.as_uri())
            tab.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {2 * figures}",
                                  timeout=60_000)
            drawn = tab.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(plot => ({
                svg: plot.querySelectorAll('.main-svg').length,
                marks: plot.querySelectorAll('.heatmaplayer image, .bars path, .scatterlayer path.js-line').length,
                width: plot.getBoundingClientRect().width}))""")
            assert len(drawn) == figures
            assert all(chart["svg"] >= 2 and chart["marks"] > 0 and chart["width"] > 300 for chart in drawn), drawn
        browser.close()
    assert outside == [] and dialogs == [] and errors == []
