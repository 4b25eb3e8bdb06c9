"""End to end in a real browser: `streamlit run app.py` on a free loopback port, Debian's
Chromium driven by Playwright. Visits every page, checks that Plotly charts render and no
exception box shows, trains the sample model through the UI, and saves a screenshot of each
page to docs/screenshots/ (the README shows them). Skipped when Chromium or Playwright is
missing; CI installs both."""

from __future__ import annotations

from pathlib import Path

import pytest

from afm.app.local_server import CHROMIUM, CHROMIUM_ARGS, app_server

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "docs" / "screenshots"

playwright = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no Chromium (apt-get install chromium)")]

PAGES = [("data_model", "Data & model"), ("attention", "Attention"), ("coupling", "Gradient coupling"),
         ("curves", "Curves"), ("predict", "Predict & share")]
NO_CHARTS = ("data_model", "predict")


@pytest.fixture(scope="module")
def server():
    with app_server() as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def new_tab(browser, width: int, height: int):
    """A tab in a fresh context: its own Streamlit session."""
    tab = browser.new_context(viewport={"width": width, "height": height}).new_page()
    tab.set_default_timeout(60_000)
    return tab


@pytest.fixture(scope="module")
def page(server, browser):
    return new_tab(browser, 1400, 2200)  # tall: whole pages


def wait_until_idle(tab) -> None:
    """Streamlit shows a 'running' status widget while the script runs."""
    tab.wait_for_timeout(500)
    tab.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
    tab.wait_for_timeout(500)


def assert_healthy(tab) -> None:
    assert tab.locator("[data-testid='stException']").count() == 0, tab.locator(
        "[data-testid='stException']").first.inner_text()


def open_page(tab, server: str, slug: str, title: str) -> None:
    """Navigate as a user does, through the sidebar: a fresh URL load would start a new session."""
    if not tab.url.startswith(server):
        tab.goto(server)
        tab.get_by_role("heading", name="Data & model").first.wait_for()
    wait_until_idle(tab)
    if tab.locator("[data-testid='stSidebar']").get_attribute("data-collapsed") == "true":  # narrow: open it
        tab.get_by_test_id("stExpandSidebarButton").click()
    tab.locator("[data-testid='stSidebarNav']").get_by_text(title, exact=True).click()
    tab.get_by_role("heading", name=title).first.wait_for()
    wait_until_idle(tab)


def test_every_page_renders_charts_and_no_exception(server, page):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for slug, title in PAGES:
        open_page(page, server, slug, title)
        assert_healthy(page)
        if slug not in NO_CHARTS:
            page.locator(".js-plotly-plot").first.wait_for()
            assert page.locator(".js-plotly-plot").count() >= 1
        page.screenshot(path=str(SCREENSHOTS / f"{slug}.png"), full_page=True)


def test_train_the_sample_model_through_the_ui(server, page):
    open_page(page, server, "data_model", "Data & model")
    epochs = page.get_by_role("spinbutton", name="Epochs (at most)")
    epochs.fill("3")
    epochs.press("Tab")
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("It is now the active model", exact=False).wait_for(timeout=300_000)
    assert_healthy(page)
    page.locator(".js-plotly-plot").first.wait_for()
    page.screenshot(path=str(SCREENSHOTS / "training.png"), full_page=True)
    open_page(page, server, "curves", "Curves")
    assert page.get_by_text("AFM k=16 on sample", exact=False).count() >= 1
    assert_healthy(page)


@pytest.fixture(scope="module")
def narrow(server, browser):
    """A fresh session in an 800-px-wide window, as on a small laptop or a projector."""
    return new_tab(browser, 800, 1400)


SIDEBAR_COLLAPSED = "() => document.querySelector(\"[data-testid='stSidebar']\").dataset.collapsed === 'true'"
MAIN_WIDTH = "() => document.querySelector(\"[data-testid='stMain']\").getBoundingClientRect().width"


def test_the_sidebar_starts_collapsed_at_800_px_and_the_page_gets_the_width(server, browser):
    """#27: Streamlit's 'auto' collapses only at 768 px and below; at 800 the sidebar took a third of
    the screen. Now it starts collapsed below 1,000 px, closes after a page is picked from it, and a
    user who opens it keeps it open; at 1400 px it starts open."""
    tab = new_tab(browser, 800, 1000)
    tab.goto(server)
    tab.get_by_role("heading", name="Data & model").first.wait_for()
    tab.wait_for_function(SIDEBAR_COLLAPSED, timeout=10_000)
    wait_until_idle(tab)
    assert tab.evaluate(SIDEBAR_COLLAPSED) and tab.evaluate(MAIN_WIDTH) >= 790
    assert tab.get_by_role("heading", name="Data & model").first.bounding_box()["x"] < 100
    open_page(tab, server, "curves", "Curves")  # opens the sidebar, picks the page: it closes again
    tab.wait_for_function(SIDEBAR_COLLAPSED, timeout=10_000)
    assert tab.evaluate(MAIN_WIDTH) >= 790
    tab.get_by_test_id("stExpandSidebarButton").click()  # the user's own choice is kept, reloads too
    tab.wait_for_function(f"() => !({SIDEBAR_COLLAPSED})()")
    tab.goto(server)
    tab.get_by_role("heading", name="Data & model").first.wait_for()
    wait_until_idle(tab)
    assert not tab.evaluate(SIDEBAR_COLLAPSED)
    assert_healthy(tab)
    tab.context.close()
    wide = new_tab(browser, 1400, 1000)
    wide.goto(server)
    wide.get_by_role("heading", name="Data & model").first.wait_for()
    wait_until_idle(wide)
    assert not wide.evaluate(SIDEBAR_COLLAPSED) and wide.evaluate(MAIN_WIDTH) < 1200
    wide.context.close()


def test_the_dataset_radio_follows_every_click(server, narrow):
    """In a fresh session: Frappe, then the bundled sample, then Frappe: each click takes at once."""
    narrow.goto(server)
    narrow.get_by_role("heading", name="Data & model").first.wait_for()
    wait_until_idle(narrow)
    radio = narrow.get_by_role("radiogroup").first
    for label in ("Frappe", "Bundled sample (synthetic)", "Upload a file", "Bundled sample (synthetic)"):
        radio.get_by_text(label, exact=True).click()
        wait_until_idle(narrow)
        checked = radio.locator("input:checked").first.evaluate("e => e.closest('label').innerText")
        assert checked.strip() == label, (label, checked)
    assert_healthy(narrow)


def test_layouts_stack_on_an_800_px_screen(server, narrow):
    if not narrow.url.startswith(server):
        narrow.goto(server)
        narrow.get_by_role("heading", name="Data & model").first.wait_for()
    content = "[data-testid='stMainBlockContainer']"
    for slug, title in PAGES:
        open_page(narrow, server, slug, title)
        assert_healthy(narrow)
        # Numbers are shown whole, not cut to "10,…" by a column too narrow for them.
        cut = narrow.evaluate("""() => [...document.querySelectorAll("[data-testid='stMetricValue'] *")]
            .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1).map(e => e.innerText)""")
        assert cut == [], (title, cut)
        # Menus show their choice whole (the preset's name was cut to "Quick (k = 16, seconds on CPU").
        menus = "[data-testid='stSelectbox'] input"  # the menu shows its choice in a read-only input
        cut = narrow.evaluate(f"""() => [...document.querySelectorAll("{menus}")]
            .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1).map(e => e.value)""")
        assert cut == [], (title, cut)
        if slug not in NO_CHARTS:
            narrow.locator(".js-plotly-plot").first.wait_for()
        width = narrow.locator(content).first.bounding_box()["width"]
        for plot in narrow.locator(".js-plotly-plot").all():
            box = plot.bounding_box()
            if box:  # every chart gets the content's width, none is squeezed beside another
                assert box["width"] > 0.8 * width, (title, box["width"], width)
        # Nothing runs off the right edge: formulas and tab bars end inside the content column and
        # need no horizontal scrolling (a few pixels of KaTeX overhang aside).
        overflow = narrow.evaluate(f"""() => {{
            const right = document.querySelector("{content}").getBoundingClientRect().right;
            return [...document.querySelectorAll("{content} .katex-display, {content} [data-baseweb='tab-list']")]
                .filter(e => e.offsetParent !== null)
                .filter(e => e.getBoundingClientRect().right > right + 2 || e.scrollWidth > e.clientWidth + 4)
                .map(e => e.innerText.slice(0, 30)); }}""")
        assert overflow == [], (title, overflow)
        assert narrow.evaluate(CLIPPED_TEXT) == [], title  # every figure's titles and ticks whole
        if slug == "coupling":
            tab = narrow.get_by_role("tab", name="Verify")
            box = tab.bounding_box()
            assert box and box["x"] + box["width"] <= 800, box
        narrow.screenshot(path=str(SCREENSHOTS / f"{slug}_800px.png"), full_page=True)


def upload_files(tmp_path) -> dict[str, Path]:
    """A user's first files, of random content: a CSV of numeric labels, a libfm file, a CSV whose
    labels are yes/no."""
    import numpy as np
    import pandas as pd

    from tests.conftest import planted_csv

    rng = np.random.default_rng(11)
    files = {"csv": tmp_path / "my data.csv", "libfm": tmp_path / "rows.libfm", "yes-no": tmp_path / "bought.csv"}
    files["csv"].write_bytes(planted_csv(3))
    files["libfm"].write_text("".join(f"{rng.normal():.3f} {rng.integers(0, 4)}:1 {4 + rng.integers(0, 5)}:1 "
                                      f"{9 + rng.integers(0, 3)}:1\n" for _ in range(300)))
    frame = pd.DataFrame({f"f{n}": rng.integers(0, 4, 300).astype(str) for n in range(3)})
    frame["bought"] = np.where(frame["f0"] == frame["f1"], "yes", "no")
    frame.to_csv(files["yes-no"], index=False)
    return files


def upload_on_the_data_page(tab, server: str, path: Path) -> None:
    """A fresh session's first steps with a file: open the app, pick *Upload a file*, choose it."""
    tab.goto(server)
    tab.get_by_role("heading", name="Data & model").first.wait_for()
    wait_until_idle(tab)
    tab.get_by_role("radiogroup").first.get_by_text("Upload a file", exact=True).click()
    wait_until_idle(tab)
    tab.locator("[data-testid='stFileUploader'] input[type=file]").set_input_files(str(path))


@pytest.mark.parametrize("kind", ["csv", "libfm", "yes-no"])
def test_upload_a_file_and_train_with_every_widget_at_its_default(server, browser, tmp_path, kind):
    """A user's first file through the real page: pick Upload, choose the file, press Train."""
    path = upload_files(tmp_path)[kind]
    tab = new_tab(browser, 1400, 2200)
    upload_on_the_data_page(tab, server, path)
    label = {"csv": "score", "yes-no": "bought"}.get(kind)
    if label:  # no column is named like a label: the page asks, and the user picks it
        tab.get_by_text("Which column should the model predict?", exact=False).wait_for()
        tab.locator("[data-testid='stSelectbox']").filter(has_text="Label column").click()
        tab.get_by_role("option", name=label, exact=True).click()
    tab.get_by_text("train rows", exact=True).wait_for()
    wait_until_idle(tab)
    assert_healthy(tab)
    assert tab.locator("[data-testid='stAlertContentError']").count() == 0, \
        tab.locator("[data-testid='stAlertContentError']").first.inner_text()
    if kind == "yes-no":  # the binary task is proposed, with the mapping said
        tab.get_by_text("no and yes (read as 0 and 1): the binary task", exact=False).wait_for()
        task = tab.get_by_role("radiogroup", name="Task")
        assert task.get_by_role("radio", name="binary").is_checked()
    tab.get_by_role("button", name="Train", exact=True).click()
    tab.get_by_text("It is now the active model", exact=False).wait_for(timeout=300_000)
    assert_healthy(tab)
    if kind == "yes-no":
        assert tab.get_by_text("valid_auc", exact=False).count() > 0
    tab.screenshot(path=str(SCREENSHOTS / {"csv": "upload.png", "libfm": "upload_libfm.png",
                                           "yes-no": "upload_binary.png"}[kind]), full_page=True)
    tab.context.close()


ATTENTION_TABS = ("Ranked pairs", "Where a third field matters", "Is attention the explanation?",
                  "Can I trust this pair?", "Feature-value pairs", "One row", "What if")
# The height of what the page drew: its main block, from the top of the page to its last element.
PAGE_HEIGHT = """() => { const block = document.querySelector('[data-testid="stMainBlockContainer"]');
  return block.getBoundingClientRect().bottom - document.body.getBoundingClientRect().top; }"""


@pytest.mark.parametrize("width", [1400, 800])
def test_the_attention_page_opens_on_its_answer_and_every_tab_shows_its_figures(server, browser, width):
    """Every widget at its default: the page opens on "In short" (the verdict among its sentences),
    then the heatmap; at 1400 px it is at most 2,500 px tall. Each tab, opened in turn, draws its
    figures inside the page, no title, tick or label cut off, wide or narrow."""
    tab = new_tab(browser, width, 1400)
    open_page(tab, server, "attention", "Attention")
    assert_healthy(tab)
    tab.get_by_role("heading", name="In short").first.wait_for()
    tab.get_by_text("this AFM uses per-row attention").first.wait_for()
    tab.locator("[data-testid='stPlotlyChart']").first.wait_for()
    wait_until_idle(tab)
    height = tab.evaluate(PAGE_HEIGHT)
    if width == 1400:
        assert height <= 2500, height
    suffix = "" if width == 1400 else f"_{width}px"
    tab.screenshot(path=str(SCREENSHOTS / f"attention{suffix}_answer.png"), full_page=True)
    for number, name in enumerate(ATTENTION_TABS):
        tab.get_by_role("tab", name=name, exact=True).click()
        wait_until_idle(tab)
        assert_healthy(tab)
        charts = tab.locator("[data-testid='stPlotlyChart']")
        for n in range(charts.count()):
            box = charts.nth(n).bounding_box()  # None: in a tab not open
            assert box is None or box["x"] + box["width"] <= width, (name, n, box)
        assert tab.evaluate(CLIPPED_TEXT) == [], name
        tab.screenshot(path=str(SCREENSHOTS / f"attention{suffix}_tab{number + 1}.png"), full_page=True)
    tab.context.close()


# Every tick label and axis title of every figure lies inside its figure: none is cut off.
CLIPPED_TEXT = """() => [...document.querySelectorAll('.js-plotly-plot')].flatMap((plot, n) => {
  const box = plot.getBoundingClientRect();
  return [...plot.querySelectorAll('.xtick text, .ytick text, .g-xtitle text, .g-ytitle text, .gtitle, '
                                   + '.annotation-text')]
    .filter(t => t.textContent.trim())
    .map(t => [n, t.textContent, t.getBoundingClientRect()])
    .filter(([, , r]) => r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1
                         || r.bottom > box.bottom + 1)
    .map(([n, text]) => `figure ${n}: ${text}`);
})"""


@pytest.mark.parametrize("width", [1400, 800])
def test_the_reports_figures_show_every_field_name_and_tick(browser, tmp_path, width):
    """The offline report (and so *Figure as HTML*, same builders) at a wide and a narrow width."""
    import subprocess
    import sys

    report = tmp_path / "report.html"
    subprocess.run([sys.executable, "-m", "afm", "report", "--checkpoint",
                    str(ROOT / "sample_data" / "sample" / "sample_afm.safetensors"), "--data", "sample",
                    "--out", str(report)], check=True, capture_output=True, cwd=ROOT)
    tab = new_tab(browser, width, 1200)
    tab.goto(report.as_uri())
    tab.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .xtick').length > 0")
    assert tab.evaluate(CLIPPED_TEXT) == []
    assert tab.evaluate("() => document.documentElement.scrollWidth") <= width  # wide tables scroll in place
    names = tab.evaluate("() => [...document.querySelectorAll('.js-plotly-plot .ytick text')].map(t => t.textContent)")
    assert {"user", "item", "device"} <= set(names)
    tab.context.close()


def test_no_request_leaves_the_machine(server, browser):
    """Every request a fresh session makes while opening each page goes to the app's own server:
    no font, icon or script from elsewhere (the favicon came from fonts.gstatic.com)."""
    tab = new_tab(browser, 1400, 1400)
    requested: list[str] = []
    tab.on("request", lambda request: requested.append(request.url))
    for slug, title in PAGES:
        open_page(tab, server, slug, title)
        wait_until_idle(tab)
    elsewhere = [url for url in requested if not url.startswith((server, "data:", "blob:"))]
    assert requested and elsewhere == [], elsewhere
    tab.context.close()


@pytest.mark.parametrize("slug,heading", [("lesson", "1. The data and its planted gate"), ("attention", "Attention")])
def test_a_fresh_servers_first_visitor_at_a_page_address_gets_the_whole_app(browser, slug, heading):
    """A bookmarked page address opened first on a fresh server: Streamlit used to run that page's
    file alone (a pages/ folder app), without app.py: files' names for a menu, no sidebar status."""
    with app_server() as (url, _):
        tab = new_tab(browser, 1400, 900)
        tab.goto(f"{url}/{slug}")
        tab.get_by_role("heading", name=heading).first.wait_for()
        wait_until_idle(tab)
        assert_healthy(tab)
        menu = tab.locator("[data-testid='stSidebarNav']").inner_text()
        assert "Data & model" in menu and "Gradient coupling" in menu and "data model" not in menu, menu
        assert "Active model" in tab.locator("[data-testid='stSidebar']").inner_text()
        assert tab.url == f"{url}/{slug}"
        tab.context.close()
