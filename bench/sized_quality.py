"""Is the recipe sized to the data (`--preset auto`, afm.sizing) a model worth explaining on a
user's data? Issue #29's target: on generated click logs (afm.samples.click_log: 13 fields, two of
them ids in the thousands with heavy-tailed counts, main effects, three planted pairs and a gated
one, random structure per seed), the best of FwFM and AFM within 0.01 of the gradient-boosting
reference (afm.analysis.reference) on average, and, after `afm tune`, at least as good.

    python bench/sized_quality.py [--seeds 1,2,3] [--tasks binary,regression] [--rows 30000]
        [--models fwfm,afm] [--tune-minutes 0] [--threads 0]

Per (seed, task): the reference and each model's sized recipe trained on the same 70/20/10 split
(the data read as its CSV file would be), scored on the same test rows; with --tune-minutes M also
`afm.tune.tune(..., minutes=M)` per model (warm-started from the sized recipe). The gap is the
model's test AUC minus the reference's (binary) or the reference's test RMSE minus the model's
(regression): positive is better than the reference. Prints one JSON line per run, the Markdown
table, then a JSON line with the mean gaps of the best model per dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime

import numpy as np
import torch

from afm.analysis.reference import gradient_boosting_reference
from afm.fitting import fit_recipe
from afm.samples.click_log import click_log_dataset
from afm.sizing import auto_recipe

METRIC = {"binary": "auc", "regression": "rmse"}


def gap(task: str, model: float, reference: float) -> float:
    """Positive: the model does better than the reference."""
    return model - reference if task == "binary" else reference - model


def one_dataset(seed: int, task: str, args) -> list[dict]:
    dataset = click_log_dataset(seed, args.rows, args.fields, task)
    metric = METRIC[task]
    reference = gradient_boosting_reference(dataset, task)
    rows = []
    base = {"seed": seed, "task": task, "features": dataset.schema.num_features, "train_rows": len(dataset.train),
            "reference": round(reference[f"test_{metric}"], 4), "reference_seconds": reference["seconds"]}
    for model in args.models:
        recipe, _ = auto_recipe(dataset, model, task, device="cpu")
        started = time.perf_counter()
        fitted = fit_recipe(recipe, dataset)
        seconds = time.perf_counter() - started
        value = fitted.result.best[f"test_{metric}"]
        rows.append({**base, "model": model, "how": "sized", "test": round(value, 4),
                     "gap": round(gap(task, value, reference[f"test_{metric}"]), 4), "seconds": round(seconds, 1),
                     "epochs": fitted.result.epochs_run, "k": recipe.embedding_dim})
        print(json.dumps(rows[-1]), flush=True)
        if args.tune_minutes > 0:
            from afm.tune import tune

            started = time.perf_counter()
            tuned = tune(dataset, model, trials=10_000, minutes=args.tune_minutes, task=task, device="cpu",
                         epochs=100, patience=3)
            value = tuned.checkpoint.best[f"test_{metric}"]
            rows.append({**base, "model": model, "how": f"tuned {args.tune_minutes:g} min", "test": round(value, 4),
                         "gap": round(gap(task, value, reference[f"test_{metric}"]), 4),
                         "seconds": round(time.perf_counter() - started, 1), "trials": len(tuned.history),
                         "pruned": sum(r["state"] == "PRUNED" for r in tuned.history)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def summary(rows: list[dict]) -> dict:
    """Mean gap of the best model per (seed, task), for each way of training."""
    result = {}
    for how in sorted({r["how"] for r in rows}):
        for task in sorted({r["task"] for r in rows}):
            best = {}
            for r in rows:
                if r["how"] == how and r["task"] == task:
                    best[r["seed"]] = max(best.get(r["seed"], -np.inf), r["gap"])
            if best:
                result[f"{how} {task}"] = {"mean_best_gap": round(float(np.mean(list(best.values()))), 4),
                                           "datasets": len(best)}
        result[f"{how} max_seconds"] = max(r["seconds"] for r in rows if r["how"] == how)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3", help="click-log seeds (each draws its own structure)")
    parser.add_argument("--tasks", default="binary,regression")
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--fields", type=int, default=13)
    parser.add_argument("--models", default="fwfm,afm")
    parser.add_argument("--tune-minutes", type=float, default=0.0, help="also tune each model this long (0: no)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    args.models = args.models.split(",")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for task in args.tasks.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            rows += one_dataset(seed, task, args)
    print("\n| seed | task | features | model | how | test | reference | gap | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['seed']} | {r['task']} | {r['features']:,} | {r['model']} | {r['how']} | {r['test']:.4f} | "
              f"{r['reference']:.4f} | {r['gap']:+.4f} | {r['seconds']:.0f} |")
    print(f"\n{datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(json.dumps(summary(rows)))


if __name__ == "__main__":
    main()
