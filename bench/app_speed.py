"""App speed targets (issue: first page within 5 s of `streamlit run` on a 2-core CPU; the
attention heatmap over Frappe's 28,860 test rows within 1 s on CPU; switching pages recomputes
nothing that did not change).

    python bench/app_speed.py [--checkpoint runs/frappe/afm256.safetensors] [--skip-browser]

1. Starts `streamlit run app.py`, opens it in headless Chromium and times until the first page's
   title and metrics are visible (wall time from process start).
2. Times the attention analysis behind the heatmap (decompose every test row, summarise the
   pairs, build the figure) for the given checkpoint(s) on Frappe, cold.
3. In the browser, switches Attention -> Curves -> Attention and times the second visit, which
   must come from the cache.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from afm.analysis.attention import decompose_split, summarize_pairs
from afm.app.local_server import CHROMIUM, CHROMIUM_ARGS, app_server
from afm.checkpoint import load_checkpoint
from afm.data import load_dataset
from afm.figures import attention_heatmap

ROOT = Path(__file__).resolve().parent.parent


def heatmap_seconds(checkpoint: str, threads: int) -> dict:
    torch.set_num_threads(threads)
    data = load_dataset("frappe")
    model = load_checkpoint(checkpoint).model
    start = time.perf_counter()
    terms = decompose_split(model, data.test)
    summary = summarize_pairs(terms, data.schema)
    attention_heatmap(summary, data.schema.field_names)
    seconds = time.perf_counter() - start
    return {"measure": "attention heatmap, Frappe test", "rows": len(data.test), "checkpoint": checkpoint,
            "k": model.config.embedding_dim, "t": model.config.attention_dim, "threads": threads,
            "seconds": round(seconds, 3)}


def browser_timings() -> list[dict]:
    from playwright.sync_api import sync_playwright

    records = []
    start = time.perf_counter()
    with app_server() as (url, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(url)
        page.get_by_text("train rows").first.wait_for(timeout=60_000)
        records.append({"measure": "first page rendered after `streamlit run`",
                        "seconds": round(time.perf_counter() - start, 2)})
        nav = page.locator("[data-testid='stSidebarNav']")
        for visit in (1, 2):
            t0 = time.perf_counter()
            nav.get_by_text("Attention", exact=True).click()
            page.locator(".js-plotly-plot").nth(3).wait_for(timeout=60_000)
            records.append({"measure": f"Attention page, visit {visit} (sample)",
                            "seconds": round(time.perf_counter() - t0, 2)})
            nav.get_by_text("Curves", exact=True).click()
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        browser.close()
    return records


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", action="append", default=[])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-browser", action="store_true")
    args = parser.parse_args()
    records = [] if args.skip_browser else browser_timings()
    records += [heatmap_seconds(c, args.threads) for c in args.checkpoint]
    for record in records:
        print(json.dumps(record))


if __name__ == "__main__":
    main()
