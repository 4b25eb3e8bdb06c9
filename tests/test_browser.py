"""End to end in a real browser: `streamlit run app.py` on a free loopback port, Debian's
Chromium driven by Playwright. Visits every page, checks that Plotly charts render and no
exception box shows, trains the sample model through the UI, and saves a screenshot of each
page to docs/screenshots/ (the README shows them). Skipped when Chromium or Playwright is
missing; CI installs both."""

from __future__ import annotations

from pathlib import Path

import pytest

from afm.app.loopback import CHROMIUM, CHROMIUM_ARGS, app_server

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
def page(server):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 2200})  # tall: whole pages
        tab = context.new_page()
        tab.set_default_timeout(60_000)
        yield tab
        browser.close()


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
    epochs = page.get_by_label("Epochs (at most)")
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
