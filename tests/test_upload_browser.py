"""A practitioner's upload in Chromium: its label column found by name (never the last column in
silence), kept as the session's data across page switches, and a second session (another tab, as a
classmate's) starts on the bundled sample, not on someone else's upload. Skipped without Chromium."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from afm.app.local_server import CHROMIUM, CHROMIUM_ARGS, app_server
from afm.samples.click_log import click_log

playwright = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no Chromium (apt-get install chromium)")]

from tests.test_browser import assert_healthy, upload_on_the_data_page, wait_until_idle  # noqa: E402


def clicks_csv(path: Path, seed: int) -> Path:
    """A click log whose label, `clicked` (yes/no), sits before a numeric last column, `price`."""
    frame, _ = click_log(seed, rows=1_500, fields=5, task="binary")
    frame["clicked"] = np.where(frame.pop("label") == 1, "yes", "no")
    frame["price"] = np.round(np.random.default_rng(seed).lognormal(3, 0.8, len(frame)), 2)
    frame.to_csv(path, index=False)
    return path


def go(tab, title: str) -> None:
    if tab.locator("[data-testid='stSidebar']").get_attribute("data-collapsed") == "true":
        tab.get_by_test_id("stExpandSidebarButton").click()
    tab.locator("[data-testid='stSidebarNav']").get_by_text(title, exact=True).click()
    tab.get_by_role("heading", name=title).first.wait_for()
    wait_until_idle(tab)


def test_an_upload_keeps_its_label_and_stays_across_pages_and_a_second_session_starts_clean(tmp_path):
    path = clicks_csv(tmp_path / "my clicks.csv", seed=4)
    with app_server() as (url, _), playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        first = browser.new_context(viewport={"width": 1400, "height": 1400}).new_page()
        first.set_default_timeout(120_000)
        upload_on_the_data_page(first, url, path)
        first.get_by_text("train rows", exact=True).wait_for()
        wait_until_idle(first)
        assert_healthy(first)
        label = first.locator("[data-testid='stSelectbox']").filter(has_text="Label column").first
        assert label.locator("input").input_value() == "clicked"  # by its name, not price (the last column)
        assert first.get_by_text("no and yes (read as 0 and 1): the binary task", exact=False).count() == 1
        for title in ("Attention", "Curves", "Data & model"):
            go(first, title)
        assert first.get_by_text("my clicks.csv", exact=False).count() >= 1  # still the session's data
        first.get_by_text("train rows", exact=True).wait_for()
        assert first.get_by_text("Upload a file to use it", exact=False).count() == 0

        second = browser.new_context(viewport={"width": 1400, "height": 1400}).new_page()
        second.set_default_timeout(120_000)
        second.goto(url)
        second.get_by_role("heading", name="Data & model").first.wait_for()
        wait_until_idle(second)
        checked = second.get_by_role("radiogroup").first.locator("input:checked").first
        assert checked.evaluate("e => e.closest('label').innerText").strip() == "Bundled sample (synthetic)"
        assert second.get_by_text("my clicks.csv", exact=False).count() == 0
        assert_healthy(second)
        browser.close()
