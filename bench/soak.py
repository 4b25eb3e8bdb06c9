"""Soak: N browser sessions at once against one app server on loopback, for several rounds.

    python bench/soak.py --sessions 20 --rounds 3 [--epochs 2] [--round-timeout 900]

Starts `streamlit run app.py` on a free 127.0.0.1 port (it is stopped at the end, whatever
happens) and headless Chromium. In each round every session, in its own browser context (its
own Streamlit session), at the same time:
  1. opens the app (the Data & model page on the bundled sample),
  2. trains a quick AFM (the Quick preset, `--epochs` epochs) and waits until it is collected,
  3. opens Attention, Gradient coupling and Curves through the sidebar, waiting for each page's
     charts.
Counted as errors: an exception box, an error box, a timeout, a training that was stopped
instead of finishing (each with what the page showed, and a screenshot in the folder the summary
names). Page time: click to the page's content being drawn. Queue wait: click on Train to the
first progress bar of that training, or its outcome if it ends first (queued time included).
Server memory (RSS) is read after each round, once the round's sessions are closed and the
server has dropped them (`--server.disconnectedSessionTTL` is set to 60 s for this, and the
script waits for it). The browsers run at a lower priority (`nice`): they stand in for the
students' own machines. Prints one JSON line per round and a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

from afm.app.local_server import CHROMIUM, CHROMIUM_ARGS, app_server, rss_bytes

# title, charts to wait for (drawn: a chart in a tab that is not open is drawn but hidden), and a
# text the page shows until it is complete (Attention's answer says "computing…" until its checks
# of attention and the reference are in)
PAGES = [("Attention", 4, "computing…"), ("Gradient coupling", 1, None), ("Curves", 1, None)]
# Seconds a disconnected session lingers on the server: long enough that a starved browser which
# reconnects finds its session (5 s here once made such a page start over, its job abandoned),
# short enough to read the memory after a round without Streamlit's default 2 minutes.
SESSION_TTL = 60
FINISHED = "It is now the active model"  # the outcome of a training that ran to its end (or early stop)


def watch_the_tab(page, events: list[str]) -> None:
    """Note what happens to the tab that its content cannot say afterwards: a crash, a script error,
    a reload, the app's websocket opening and closing (a blank page has one of these behind it)."""
    started = time.perf_counter()

    def note(what: str) -> None:
        events.append(f"{time.perf_counter() - started:.0f} s {what}")

    def on_websocket(socket) -> None:
        note("websocket opened")
        socket.on("close", lambda _: note("websocket closed"))

    page.on("crash", lambda _: note("the tab crashed"))
    page.on("pageerror", lambda error: note(f"script error: {str(error)[:160]}"))
    page.on("framenavigated", lambda frame: note("loaded") if frame == page.main_frame else None)
    page.on("websocket", on_websocket)


async def what_the_page_shows(page, shots: Path, name: str, events: list[str]) -> str:
    """What a page that failed a step shows: its messages and exceptions, its progress bar twice 10 s
    apart (a bar that does not move: the page stopped redrawing), whether it looks like a fresh
    session (Train enabled, no job), and a screenshot."""
    try:
        texts = {kind: " | ".join(t[:160] for t in await page.locator(f"[data-testid='{kind}']").all_inner_texts())
                 for kind in ("stAlert", "stException", "stProgress")}
        await asyncio.sleep(10)
        bar_later = " | ".join(await page.locator("[data-testid='stProgress']").all_inner_texts())
        train = page.get_by_role("button", name="Train", exact=True)
        fresh = await train.count() > 0 and await train.first.is_enabled()
        await page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        return (f"the page's messages: {texts['stAlert'][:400] or 'none'}; exceptions: "
                f"{texts['stException'][:200] or 'none'}; bar: {texts['stProgress'][:160] or 'none'} -> "
                f"{bar_later[:160] or 'none'} 10 s later; Train enabled: {fresh}; screenshot {shots / name}.png; "
                f"the tab's events: {' / '.join(events[-10:])}")
    except Exception as exc:  # noqa: BLE001 - the page may be gone
        return f"the page could not be read ({type(exc).__name__}); the tab's events: {' / '.join(events[-10:])}"


async def session(browser, url: str, epochs: int, timeout_ms: int, result: dict, shots: Path) -> dict:
    """One student; `result` fills as it goes (where it is now, each step's seconds), so that a
    round that runs out of time still says where each unfinished session was."""
    result.update(errors=[], page_seconds=[], queue_wait=None, at="opening", steps={})
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(timeout_ms)
    watch_the_tab(page, result.setdefault("events", []))

    async def check(where: str) -> None:
        for selector, kind in (("[data-testid='stException']", "exception"), ("[data-testid='stAlertContentError']",
                                                                               "error")):
            boxes = page.locator(selector)
            if await boxes.count():
                result["errors"].append(f"{where}: {kind}: {(await boxes.first.inner_text())[:200]}")

    try:
        start = time.perf_counter()
        await page.goto(url)
        await page.get_by_text("train rows").first.wait_for()
        result["page_seconds"].append(time.perf_counter() - start)
        await check("Data & model")
        epochs_box = page.get_by_role("spinbutton", name="Epochs (at most)")
        await epochs_box.fill(str(epochs))
        await epochs_box.press("Tab")
        clicked = time.perf_counter()
        await page.get_by_role("button", name="Train", exact=True).click()
        result["at"] = "training"
        # The bar, or the outcome: a training that got a free slot can end before a slow browser
        # draws its bar (waiting for the bar alone then timed out after the job had finished).
        outcome = page.get_by_text(FINISHED, exact=False)
        await page.locator("[data-testid='stProgress']").or_(outcome).first.wait_for()
        result["queue_wait"] = time.perf_counter() - clicked
        await outcome.wait_for()
        result["steps"]["training"] = time.perf_counter() - clicked
        said = await page.locator("[data-testid='stAlert']").filter(has_text=FINISHED).first.inner_text()
        if " finished: " not in said:  # stopped (abandoned, a time limit) is not a finished training
            result["errors"].append(f"training: not finished: {said[:200]}")
        await check("training")
        nav = page.locator("[data-testid='stSidebarNav']")
        for title, charts, pending in PAGES:
            result["at"] = title
            start = time.perf_counter()
            await nav.get_by_text(title, exact=True).click()
            await page.get_by_role("heading", name=title).first.wait_for()
            await page.locator(".js-plotly-plot").nth(charts - 1).wait_for(state="attached")
            if pending:
                await page.get_by_text(pending).first.wait_for(state="detached")
            result["page_seconds"].append(time.perf_counter() - start)
            result["steps"][title] = result["page_seconds"][-1]
            await check(title)
        result["at"] = "done"
    except Exception as exc:  # noqa: BLE001 - a timeout or a crash is what this benchmark counts
        result["errors"].append(f"at {result['at']}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}; "
                                f"{await what_the_page_shows(page, shots, result['name'], result['events'])}")
    finally:
        await context.close()
    return result


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def step_summary(results: list[dict]) -> dict:
    """Each step's p50 and max seconds over the sessions that finished it, and how many did."""
    names = dict.fromkeys(name for r in results for name in r.get("steps", {}))
    summary = {}
    for name in names:
        times = [r["steps"][name] for r in results if name in r.get("steps", {})]
        summary[name] = {"done": len(times), "p50": round(percentile(times, 0.5), 1), "max": round(max(times), 1)}
    return summary


def niced_chromium(folder: Path, niceness: int) -> str:
    """A wrapper that starts Chromium at a lower priority: the browsers stand in for the class's
    own machines, so on one shared box they must not starve the server being measured."""
    wrapper = folder / "chromium-niced"
    wrapper.write_text(f'#!/bin/sh\nexec nice -n {niceness} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


async def soak(args) -> list[dict]:
    import tempfile

    from playwright.async_api import async_playwright

    rounds = []
    log = Path(args.log)
    folder = Path(tempfile.mkdtemp(prefix="afm-soak-"))
    with app_server("--server.disconnectedSessionTTL", str(SESSION_TTL), log=log) as (url, server):
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=niced_chromium(folder, args.browser_nice),
                                              args=CHROMIUM_ARGS)
            for number in range(1, args.rounds + 1):
                started = time.perf_counter()
                results = [{"name": f"round{number}-session{i + 1}"} for i in range(args.sessions)]
                tasks = [asyncio.create_task(session(browser, url, args.epochs, args.page_timeout * 1000, result,
                                                     folder)) for result in results]
                _, unfinished = await asyncio.wait(tasks, timeout=args.round_timeout)
                for task in unfinished:
                    task.cancel()
                await asyncio.gather(*unfinished, return_exceptions=True)
                for result in results:
                    if result.get("at") != "done" and not result.get("errors"):
                        result["errors"].append(f"round timeout while at {result.get('at')}")
                seconds = time.perf_counter() - started
                await asyncio.sleep(SESSION_TTL + 10)  # the server drops the closed sessions
                pages = [s for r in results for s in r["page_seconds"]]
                waits = [r["queue_wait"] for r in results if r["queue_wait"] is not None]
                record = {"round": number, "sessions": args.sessions, "seconds": round(seconds, 1),
                          "errors": sum(len(r["errors"]) for r in results),
                          "page_p50": round(percentile(pages, 0.5) or 0, 2),
                          "page_p95": round(percentile(pages, 0.95) or 0, 2),
                          "longest_queue_wait": round(max(waits), 1) if waits else None,
                          "server_rss_mb": round(rss_bytes(server.pid) / 2**20, 1),
                          "first_errors": [f"{r['name']}: {e}" for r in results for e in r["errors"]][:5],
                          "steps": step_summary(results), "screenshots": str(folder)}
                print(json.dumps(record), flush=True)
                rounds.append(record)
            await browser.close()
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--page-timeout", type=int, default=600, help="seconds one step may take")
    parser.add_argument("--round-timeout", type=int, default=1800, help="seconds one round may take")
    parser.add_argument("--log", default="/tmp/afm-soak-server.log", help="the server's output")
    parser.add_argument("--browser-nice", type=int, default=10, help="niceness of the browsers (0: same as server)")
    args = parser.parse_args()
    rounds = asyncio.run(soak(args))
    growth = rounds[-1]["server_rss_mb"] - rounds[-2]["server_rss_mb"] if len(rounds) > 1 else None
    print(json.dumps({"summary": True, "sessions": args.sessions, "rounds": args.rounds,
                      "errors": sum(r["errors"] for r in rounds),
                      "page_p50": statistics.median(r["page_p50"] for r in rounds),
                      "page_p95": max(r["page_p95"] for r in rounds),
                      "longest_queue_wait": max((r["longest_queue_wait"] or 0) for r in rounds),
                      "rss_mb_by_round": [r["server_rss_mb"] for r in rounds],
                      "growth_last_round_mb": growth, "screenshots": rounds[-1]["screenshots"]}))


if __name__ == "__main__":
    main()
