"""The two bundled samples' RMSE table of the README: FM, FwFM and AFM with the Quick preset,
three seeds each (initial weights, batch order and dropout), best epoch on validation.

    python bench/sample_table.py [--seeds 0,1,2] [--threads 2]

Prints one JSON line per run and a markdown table (mean ± standard deviation over the seeds).
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from afm.data import load_dataset
from afm.data.registry import BUNDLED_SAMPLES
from afm.fitting import fit_recipe
from afm.models import MODEL_NAMES
from afm.recipe import preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for sample in BUNDLED_SAMPLES:
        data = load_dataset(sample)
        for name in MODEL_NAMES:
            for seed in seeds:
                result = fit_recipe(preset("quick", name, device="cpu", seed=seed), data).result
                best = result.best
                results.setdefault((sample, name), []).append((best["valid_rmse"], best["test_rmse"]))
                record = {"sample": sample, "model": name, "seed": seed, "best_epoch": result.best_epoch,
                          "valid_rmse": round(best["valid_rmse"], 4), "test_rmse": round(best["test_rmse"], 4)}
                print(json.dumps(record), flush=True)

    def cell(values: list[float]) -> str:
        return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0:.4f}"

    print(f"\n| sample | model | valid RMSE ({len(seeds)} seeds) | test RMSE |\n|---|---|---|---|")
    for (sample, name), runs in results.items():
        print(f"| {sample} | {name.upper()} | {cell([v for v, _ in runs])} | {cell([t for _, t in runs])} |")


if __name__ == "__main__":
    main()
