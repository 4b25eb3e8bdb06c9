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
    # curves, attention, spread, contribution, top pairs, Shapley, rank agreement, adversarial, erasure, 2 coupling
    assert summary["figures"] == 11
    for heading in ("Model card", "Metrics", "Curves", "Attention", "Spread of the pair weight", "Signed contribution",
                    "Top pairs", "Which pairs matter", "Gradient coupling"):
        assert heading in page, heading
    assert "valid_rmse" in page and "Measured now on the test rows of sample (1,500 rows)" in page
    assert "user=user_" in page and "device=phone" in page  # feature-value pairs are named
    # plotly.js is inside, once, and nothing is fetched from anywhere.
    assert page.count("<script type='text/javascript'>") == 1 and "<script src" not in page.lower()
    assert page.count('class="plotly-graph-div"') == 11
    assert "user x item x device: one effect, seen as user x item (gated by device)" in page


def test_the_report_says_which_pairs_matter_and_whether_attention_explains(sample_report):
    page = sample_report[0].read_text()
    section = page[page.index("<h2>Which pairs matter</h2>"):page.index("<h2>Gradient coupling</h2>")]
    assert "Exact Shapley values of 256 test rows" in section and "Mean |Shapley interaction index|" in section
    assert "Field pairs by mean |Shapley interaction| (top 10)" in section
    assert section.count("<td>user x item</td>") == 1 and section.count("<tr>") >= 10 + 3  # 10 pairs, 3 baselines
    assert "The user x item interaction changes with device" in section  # the planted gate, found
    assert "Kendall tau" in section and "frozen mean attention (FwFM)" in section
    assert ("On the 1,500 test rows, this AFM uses per-row attention: fixing each pair&#x27;s weight at its mean "
            "raises rmse") in section
    assert "Attention as different as TV" in section
    assert "Can I trust this pair?" in section and "Erasing each row&#x27;s pairs in the order of" in section
    assert section.count('class="plotly-graph-div"') == 4  # Shapley, rank agreement, adversarial, erasure


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
    assert summary["figures"] == 8 and summary["split"] == "valid" and out.stat().st_size == summary["bytes"]
    page = out.read_text()
    assert "Which pairs matter" in page and "no per-row attention to test" in page and "this AFM" not in page
    assert "All of this model&#x27;s prediction is carried by pairs" in page  # an FM: nothing beyond pairs
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
        for report, figures in ((path, summary["figures"]), (hostile, 5)):  # 5: + the Shapley heatmap
            tab.goto(report.as_uri())
            tab.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {2 * figures}",
                                  timeout=60_000)
            drawn = tab.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(plot => ({
                svg: plot.querySelectorAll('.main-svg').length,
                marks: plot.querySelectorAll(
                    '.heatmaplayer image, .bars path, .scatterlayer path.js-line, .boxlayer path').length,
                width: plot.getBoundingClientRect().width}))""")
            assert len(drawn) == figures
            assert all(chart["svg"] >= 2 and chart["marks"] > 0 and chart["width"] > 300 for chart in drawn), drawn
        browser.close()
    assert outside == [] and dialogs == [] and errors == []


def test_the_pairs_section_says_what_it_cannot_compute(tmp_path):
    """17 fields are more than exact Shapley values allow: the section says so, the report stands."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"f{f}": rng.choice(["a", "b"], 80) for f in range(17)} | {"label": rng.normal(size=80)})
    frame.to_csv(tmp_path / "wide.csv", index=False)
    dataset = load_csv(tmp_path / "wide.csv", min_count=1)
    config = ModelConfig(model="afm", num_features=dataset.schema.num_features, num_fields=17, embedding_dim=2,
                         attention_dim=2)
    checkpoint = Checkpoint(build_model(config, seed=0), config, {"task": "regression"}, [], dataset.schema,
                            TrainedOn.of(dataset))
    page = build_report(checkpoint, dataset)
    section = page[page.index("<h2>Which pairs matter</h2>"):]
    assert "Not computed: exact Shapley values need 2^F model evaluations per row; 17 fields" in section


def test_the_app_and_the_report_give_one_verdict_on_the_same_rows(sample_report):
    """The Attention page with every widget at its default opens on its answer ("In short"), and
    the report of the same model says the same sentences, word for word, on the same (test) rows:
    the top pairs, the effect, the gate, the attention verdict and the gradient-boosting reference."""
    import html

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=180)
    at.switch_page("pages/attention.py").run()
    assert not at.exception and at.subheader[0].value == "In short"
    answer = [m.value for m in at.markdown if m.value.startswith("- On 256 test rows")][0]
    said = [line[2:] for line in answer.splitlines()]
    assert len(said) == 5 and "this AFM" in said[3] and "gradient boosting" in said[4], said
    page = sample_report[0].read_text()
    for sentence in said:
        assert "test rows" in sentence and f"<li>{html.escape(sentence)}</li>" in page, sentence
