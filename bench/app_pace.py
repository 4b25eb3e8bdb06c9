"""Training pace as the app's user gets it, with the page open: a fresh server, headless Chromium on
Data & model, Frappe, the preset the page opens on (the paper's AFM, batch 128) and Train; the
pace is read from the training panel's own progress line (epoch e/N, batch b/B) twice, `--seconds`
apart, after `--settle` seconds; then Stop. The panel redraws every 2 s (its curve resent each
time), so this is the pace a class sees, to hold against `bench/epochs.py`'s on the same machine.

    python bench/app_pace.py --settle 35 --seconds 40
"""

from __future__ import annotations

import argparse
import json
import re
import time

from afm.app.local_server import CHROMIUM, CHROMIUM_ARGS, app_server

PROGRESS = re.compile(r"epoch (\d+)/(\d+), batch (\d+)/(\d+)")


def progress(tab) -> tuple[float, int, int, int]:
    """(when, epoch, batch, batches per epoch) from the panel's progress line."""
    text = tab.locator("[data-testid='stProgress']").first.inner_text()
    epoch, _, batch, batches = (int(g) for g in PROGRESS.search(text).groups())
    return time.monotonic(), epoch, batch, batches


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settle", type=float, default=35.0, help="seconds after the bar shows (loading, epoch 1)")
    parser.add_argument("--seconds", type=float, default=40.0, help="seconds between the two readings")
    args = parser.parse_args()
    with app_server() as (url, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_context(viewport={"width": 1400, "height": 1400}).new_page()
        tab.set_default_timeout(300_000)
        tab.goto(url)
        tab.get_by_role("heading", name="Data & model").first.wait_for()
        tab.get_by_role("radiogroup").first.get_by_text("Frappe", exact=True).click()
        tab.get_by_text("train rows", exact=True).wait_for()
        tab.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")
        tab.get_by_role("button", name="Train", exact=True).first.click()
        tab.locator("[data-testid='stProgress']").first.wait_for()
        time.sleep(args.settle)
        start, epoch0, batch0, batches = progress(tab)
        time.sleep(args.seconds)
        end, epoch1, batch1, _ = progress(tab)
        tab.get_by_role("button", name="Stop training").click()
        browser.close()
    steps = (epoch1 - epoch0) * batches + batch1 - batch0
    rows_per_batch = round(202_027 / batches)  # Frappe's training rows over the batches of an epoch
    print(json.dumps({"samples_per_s": round(steps * rows_per_batch / (end - start)), "batches": steps,
                      "seconds": round(end - start, 1), "from": [epoch0, batch0], "to": [epoch1, batch1]}))


if __name__ == "__main__":
    main()
