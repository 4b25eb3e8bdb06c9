"""What the app's bounded loads cost (afm.data.bounded): a dataset read in a child process, as the
app reads Frappe, ml-tag and every upload, against the same `load_dataset` in the caller's
process, as the CLI reads it. Frappe when it is found, and a generated CSV of `--csv-rows` rows
(6 fields of words and numbers, the label last): a user's upload.

    python bench/bounded_load.py [--repeats 5] [--csv-rows 200000]

Each load is timed whole (the child's start, its parse, the pickled dataset's trip back), in
turn with the in-process load, best and median of `repeats`. Prints one JSON line per measure,
then a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from afm.data import load_dataset
from afm.data.bounded import load_bounded
from afm.errors import DataError


def user_csv(rows: int, folder: Path) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"city": rng.choice([f"city{i}" for i in range(200)], rows),
                          "device": rng.choice(["phone", "tablet", "laptop"], rows),
                          "hour": rng.integers(0, 24, rows).astype(str),
                          "price": rng.normal(20, 5, rows).round(2),
                          "member": rng.choice(["yes", "no"], rows),
                          "item": rng.integers(0, 5000, rows).astype(str),
                          "rating": rng.normal(size=rows).round(3)})
    path = folder / "upload.csv"
    frame.to_csv(path, index=False)
    return path


def timed(load, repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        load()
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--csv-rows", type=int, default=200_000)
    args = parser.parse_args()
    load = open("/proc/loadavg").read().split()[:3]
    results = []
    with tempfile.TemporaryDirectory() as folder:
        specs = {"upload.csv": str(user_csv(args.csv_rows, Path(folder)))}
        try:
            load_dataset("frappe")
            specs = {"frappe": "frappe", **specs}
        except DataError:
            pass
        for name, spec in specs.items():
            size = sum(p.stat().st_size for p in Path(spec).glob("*")) if Path(spec).is_dir() else (
                Path(spec).stat().st_size if Path(spec).exists() else None)
            for how, function in (("in process (CLI)", load_dataset), ("child process (app)", load_bounded)):
                function(spec)  # warm: the page cache holds the file, as on a second visit
                seconds = timed(lambda f=function, s=spec: f(s), args.repeats)
                results.append({"data": name, "bytes": size, "load": how, "best_s": round(min(seconds), 3),
                                "median_s": round(statistics.median(seconds), 3), "repeats": args.repeats})
                print(json.dumps(results[-1]), flush=True)
    print("\n| data | load | best s | median s |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['data']} | {r['load']} | {r['best_s']:.3f} | {r['median_s']:.3f} |")
    print(f"\nCommand: `python bench/bounded_load.py --repeats {args.repeats} --csv-rows {args.csv_rows}`; "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average {' '.join(load)} before.")


if __name__ == "__main__":
    main()
