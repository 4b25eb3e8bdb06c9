"""Cost of `afm pairs --seeds N` against the trainings it makes: on a generated CSV of F categorical
fields (a planted pair, every other field noise), time `afm train` of one AFM (the Quick preset),
then `afm pairs --seeds N` of that checkpoint on 256 rows (N - 1 retrainings, N explanations, the
comparison), both as the user runs them (whole commands, one process each). Target (issue #28): at
F = 13 and N = 3 the pairs command finishes within 3x the time of its three trainings.

    python bench/stability_cost.py [--fields 13] [--rows 6000] [--seeds 3] [--epochs 10]

Prints one JSON line: the seconds of one training, of the pairs command, and their ratio to N
trainings.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd


def generated_csv(path: Path, fields: int, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"f{n}": rng.integers(0, 8, rows).astype(str) for n in range(fields)})
    frame["label"] = ((frame["f0"] == frame["f1"]) * 1.0 + 0.3 * rng.normal(size=rows)).round(4)
    frame.to_csv(path, index=False)


def timed(arguments: list[str]) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "afm", *arguments], capture_output=True, text=True, check=True)
    return time.perf_counter() - started, json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=13)
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data, model = Path(folder) / "data.csv", Path(folder) / "afm.safetensors"
        generated_csv(data, args.fields, args.rows)
        train_seconds, trained = timed(["train", "--data", str(data), "--model", "afm", "--preset", "quick",
                                        "--epochs", str(args.epochs), "--out", str(model), "--quiet"])
        pairs_seconds, pairs = timed(["pairs", "--checkpoint", str(model), "--data", str(data), "--rows", "256",
                                      "--seeds", str(args.seeds), "--out", str(Path(folder) / "pairs.csv")])
    print(json.dumps({
        "bench": "stability_cost", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(), "fields": args.fields, "rows": args.rows,
        "seeds": args.seeds, "epochs_run": trained["epochs_run"], "train_seconds": round(train_seconds, 1),
        "pairs_seconds": round(pairs_seconds, 1),
        "ratio_to_trainings": round(pairs_seconds / (args.seeds * train_seconds), 2),
        "stability": pairs["stability"]}))


if __name__ == "__main__":
    main()
