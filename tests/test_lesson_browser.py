"""The Lesson as a class sees it, in Chromium at 1400 x 900: every step fits one screen, draws its
figure whole and shows no exception, Next and Back walk it, the replay plays, the presenter's type
is larger, and a live training replays its own attention. Saves a screenshot of each step to
docs/screenshots/lesson_step<N>.png (the README shows some). Skipped without Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

from afm.app.local_server import CHROMIUM, CHROMIUM_ARGS, app_server
from afm.lesson import STEPS

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "docs" / "screenshots"
SCREEN = {"width": 1400, "height": 900}

playwright = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no Chromium (apt-get install chromium)")]

from tests.test_browser import CLIPPED_TEXT, PAGE_HEIGHT, assert_healthy, wait_until_idle  # noqa: E402


@pytest.fixture(scope="module")
def browser_at():
    with app_server() as (url, _), playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser, url
        browser.close()


def open_lesson(browser_at, viewport: dict):
    browser, url = browser_at
    page = browser.new_context(viewport=viewport).new_page()
    page.set_default_timeout(120_000)
    page.goto(url)
    page.get_by_role("heading", name="Data & model").first.wait_for()
    wait_until_idle(page)
    if viewport["width"] < 1000:  # the sidebar starts collapsed on a narrow screen: open it
        page.locator("[data-testid='stExpandSidebarButton']").click()
    page.locator("[data-testid='stSidebarNav']").get_by_text("Lesson", exact=True).click()
    page.get_by_role("heading", name=f"1. {STEPS[0].title}").wait_for()
    wait_until_idle(page)
    return page


@pytest.fixture(scope="module")
def tab(browser_at):
    page = open_lesson(browser_at, SCREEN)
    yield page
    page.context.close()


def step_heading(tab, number: int):
    return tab.get_by_role("heading", name=f"{number + 1}. {STEPS[number].title}")


def test_every_step_fits_one_screen_and_next_and_back_walk_the_lesson(tab):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for number in range(len(STEPS)):
        step_heading(tab, number).wait_for()
        wait_until_idle(tab)
        tab.locator(".js-plotly-plot").first.wait_for()
        assert_healthy(tab)
        assert tab.evaluate(PAGE_HEIGHT) <= SCREEN["height"], (number, tab.evaluate(PAGE_HEIGHT))
        assert tab.evaluate(CLIPPED_TEXT) == [], number
        assert tab.get_by_text(STEPS[number].see, exact=False).count() == 1
        tab.screenshot(path=str(SCREENSHOTS / f"lesson_step{number + 1}.png"))
        if number < len(STEPS) - 1:
            tab.get_by_role("button", name="Next →").click()
    assert tab.get_by_role("button", name="Next →").is_disabled()
    tab.get_by_role("button", name="← Back").click()
    step_heading(tab, len(STEPS) - 2).wait_for()


def go_to(tab, key: str) -> None:
    target = next(n for n, step in enumerate(STEPS) if step.key == key)
    for _ in range(len(STEPS)):
        current = next(n for n in range(len(STEPS)) if step_heading(tab, n).count())
        if current == target:
            break
        tab.get_by_role("button", name="Next →" if current < target else "← Back").click()
        step_heading(tab, current + (1 if current < target else -1)).wait_for()
    wait_until_idle(tab)


def test_the_replay_plays_epoch_by_epoch(tab):
    go_to(tab, "replay")
    label = "() => document.querySelector('.slider-container .slider-label').textContent.trim()"
    assert tab.evaluate(label) == "epoch 0"
    tab.get_by_text("▶ Play", exact=True).click()
    tab.wait_for_function(f"() => ({label})() !== 'epoch 0'", timeout=10_000)


def test_the_presenter_toggle_enlarges_the_type(tab):
    go_to(tab, "fwfm")
    see = tab.get_by_text(next(s.see for s in STEPS if s.key == "fwfm"), exact=False).first
    before = see.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
    assert tab.locator("[data-testid='stPlotlyChart']").count() == 2
    tab.get_by_text("Presenter", exact=True).click()
    wait_until_idle(tab)
    assert see.evaluate("e => parseFloat(getComputedStyle(e).fontSize)") > 1.3 * before
    assert tab.locator("[data-testid='stPlotlyChart']").count() == 1  # one figure per screen
    tab.screenshot(path=str(SCREENSHOTS / "lesson_presenter.png"))
    tab.get_by_text("Presenter", exact=True).click()
    wait_until_idle(tab)


def test_train_it_live_replays_the_new_models_attention(tab):
    go_to(tab, "replay")
    tab.get_by_role("button", name="Train it live").click()
    tab.get_by_text("This AFM's mean attention, epoch by epoch", exact=False).first.wait_for(timeout=120_000)
    tab.get_by_text("on sample: done", exact=False).first.wait_for(timeout=300_000)
    assert_healthy(tab)
    tab.get_by_role("button", name="Back to the bundled AFM").click()
    tab.get_by_text("The bundled AFM's mean attention", exact=False).first.wait_for()


def test_every_step_reads_whole_at_800_px(browser_at):
    """On a narrow screen the columns stack: every figure keeps the content's width, nothing is cut."""
    tab = open_lesson(browser_at, {"width": 800, "height": 1000})
    content = tab.locator("[data-testid='stMainBlockContainer']").first
    for number in range(len(STEPS)):
        step_heading(tab, number).wait_for()
        wait_until_idle(tab)
        tab.locator(".js-plotly-plot").first.wait_for()
        assert_healthy(tab)
        assert tab.evaluate(CLIPPED_TEXT) == [], number
        width = content.bounding_box()["width"]
        for plot in tab.locator(".js-plotly-plot").all():
            box = plot.bounding_box()
            assert box and box["x"] + box["width"] <= 800 and box["width"] > 0.8 * width, (number, box, width)
        if number == 3:
            tab.screenshot(path=str(SCREENSHOTS / "lesson_step4_800px.png"), full_page=True)
        if number < len(STEPS) - 1:
            tab.get_by_role("button", name="Next →").click()
    tab.context.close()
