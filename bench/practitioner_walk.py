"""The practitioner's path, timed as they live it: the app in Chromium, their own CSV (a generated
click log: `clicked` yes/no, 12 categorical fields with heavy-tailed ids, a numeric price), every
widget at its default. Upload it, press Train, open Attention until its answer is whole, score the
file on Predict & share. Prints each step's seconds and what the page said, then one JSON line.

    python bench/practitioner_walk.py [--rows 30000] [--seed 0]

Needs Chromium and Playwright (as tests/test_browser.py). Starts its own server on 127.0.0.1 and
stops it; the CSV goes to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from afm.app.local_server import CHROMIUM, CHROMIUM_ARGS, app_server
from afm.samples.click_log import click_log

IDLE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
PAGE_HEIGHT = """() => document.querySelector('[data-testid="stMainBlockContainer"]').getBoundingClientRect().bottom
  - document.body.getBoundingClientRect().top"""


def practitioner_csv(path: Path, rows: int, seed: int) -> None:
    """A click log as a practitioner has it: a yes/no `clicked`, 12 fields, a price in the middle."""
    frame, _ = click_log(seed, rows=rows, fields=12, task="binary")
    rng = np.random.default_rng(seed)
    frame.insert(5, "price", np.round(rng.lognormal(3, 0.8, rows), 2))
    frame["clicked"] = np.where(frame.pop("label") == 1, "yes", "no")
    frame.to_csv(path, index=False)


def idle(tab, timeout_s: float = 1800) -> None:
    tab.wait_for_timeout(500)
    tab.wait_for_function(IDLE, timeout=timeout_s * 1000)


def walk(url: str, csv: Path, browser) -> dict:
    tab = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    tab.set_default_timeout(1_800_000)
    times, said = {}, {}
    tab.goto(url)
    tab.get_by_role("heading", name="Data & model").first.wait_for()
    idle(tab)
    start = time.perf_counter()
    tab.get_by_role("radiogroup").first.get_by_text("Upload a file", exact=True).click()
    idle(tab)
    tab.locator("[data-testid='stFileUploader'] input[type=file]").set_input_files(str(csv))
    tab.get_by_text("train rows", exact=True).wait_for()
    idle(tab)
    times["upload_to_preview"] = time.perf_counter() - start
    said["preset"] = tab.locator("[data-testid='stSelectbox']").filter(has_text="Preset").first.locator(
        "input").input_value()
    start = time.perf_counter()
    tab.get_by_role("button", name="Train", exact=True).click()
    tab.get_by_text("It is now the active model", exact=False).wait_for()
    times["train_click_to_model"] = time.perf_counter() - start
    said["trained"] = tab.get_by_text("It is now the active model", exact=False).first.inner_text()
    start = time.perf_counter()
    tab.locator("[data-testid='stSidebarNav']").get_by_text("Attention", exact=True).click()
    tab.get_by_role("heading", name="In short").first.wait_for()
    tab.get_by_text("gradient boosting's on the same split", exact=False).first.wait_for()  # the answer's last part
    idle(tab)
    times["attention_to_whole_answer"] = time.perf_counter() - start
    said["attention_height_px"] = tab.evaluate(PAGE_HEIGHT)
    page = tab.locator("[data-testid='stMainBlockContainer']").inner_text()
    said["in_short"] = page.split("In short", 1)[-1].split("\nShow\n", 1)[0].strip()
    start = time.perf_counter()
    tab.locator("[data-testid='stSidebarNav']").get_by_text("Predict & share", exact=True).click()
    tab.locator("[data-testid='stFileUploader'] input[type=file]").first.set_input_files(str(csv))
    tab.get_by_role("button", name="Score the rows").click()
    tab.get_by_role("button", name="Download the scored rows (CSV)").wait_for()
    times["predict_score_file"] = time.perf_counter() - start
    tab.context.close()
    return {"times_s": {k: round(v, 1) for k, v in times.items()}, "said": said}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder, app_server() as (url, _), sync_playwright() as p:
        csv = Path(folder) / "clicks.csv"
        practitioner_csv(csv, args.rows, args.seed)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        result = {"rows": args.rows, "seed": args.seed, **walk(url, csv, browser)}
        browser.close()
    for step, seconds in result["times_s"].items():
        print(f"{step:28s} {seconds:8.1f} s")
    for what, text in result["said"].items():
        print(f"--- {what}:\n{text}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
