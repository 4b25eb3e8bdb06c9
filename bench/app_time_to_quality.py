"""Time to quality in the app, as a user gets it: `streamlit run app.py`, Frappe picked, the *Fast*
preset with *Train the FM first* (its default), one click on Train, in headless Chromium.

    python bench/app_time_to_quality.py --threshold 0.32

The FM step is timed by the browser (from the click until the AFM's progress bar shows); the AFM
step until its first epoch at or below the threshold, from the history of the checkpoint the
page's download button gives (its training and evaluation seconds, as bench/time_to_quality.py
counts them). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from time_to_quality import seconds_until  # noqa: E402

from afm.app.local_server import CHROMIUM, CHROMIUM_ARGS, app_server  # noqa: E402
from afm.checkpoint import load_checkpoint  # noqa: E402


def idle(page) -> None:
    """Until the script run has finished (Streamlit shows a status widget while it runs)."""
    page.wait_for_timeout(500)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threshold", type=float, default=0.32)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as runs, app_server(env={"AFM_RUNS_DIR": runs}) as (url, _), \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 2200}, accept_downloads=True).new_page()
        page.set_default_timeout(60_000)
        page.goto(url)
        page.get_by_role("radiogroup").first.get_by_text("Frappe", exact=True).click()
        page.get_by_text("5,382", exact=True).wait_for()  # Frappe's features: its data is loaded
        idle(page)
        page.locator("[data-testid='stSelectbox']").nth(1).click()  # Model, then Preset
        page.get_by_text("Fast (k = 128, FM then AFM)").last.click()
        page.get_by_text("Train the FM first", exact=False).first.wait_for()
        idle(page)
        start = time.monotonic()
        page.get_by_role("button", name="Train", exact=True).click()
        page.get_by_text("epoch 1/10, batch", exact=False).first.wait_for(timeout=600_000)
        fm_seconds = time.monotonic() - start
        page.get_by_text("It is now the active model", exact=False).wait_for(timeout=900_000)
        whole = time.monotonic() - start
        with page.expect_download() as download:
            page.get_by_role("button", name="Download the active model's checkpoint").click()
        path = Path(runs) / "afm.safetensors"
        download.value.save_as(path)
        history = load_checkpoint(path).history
        browser.close()
    afm_seconds, epoch = seconds_until(history, args.threshold)
    print(json.dumps({"threshold": args.threshold, "reached_at_epoch": epoch,
                      "fm_seconds_browser": round(fm_seconds, 1), "afm_seconds_to_threshold": round(afm_seconds, 1),
                      "seconds": round(fm_seconds + afm_seconds, 1), "whole_run_browser_seconds": round(whole, 1),
                      "valid_rmse": [round(r["valid_rmse"], 4) for r in history]}))


if __name__ == "__main__":
    main()
