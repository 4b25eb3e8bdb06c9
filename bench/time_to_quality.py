"""Wall time until a run first reaches a validation RMSE.

From checkpoints: the per-epoch history every checkpoint carries (training seconds + evaluation
seconds of each epoch, summed):

    python bench/time_to_quality.py --threshold 0.34 runs/ttq/fm256_clean.safetensors
    python bench/time_to_quality.py --threshold 0.32 runs/ttq/fm256_clean.safetensors \
        runs/frappe/afm256_lr03.safetensors

With several checkpoints (a pipeline such as FM pretraining then AFM), every one but the last
counts in full (its whole run was needed to start the next) and the last one until the threshold.

From a cold start, a preset's recipe (the FM, then the AFM started from it, both with the
preset's settings and the trainer's defaults, as the app runs them), stopping the AFM at the
first epoch that reaches the threshold:

    python bench/time_to_quality.py --threshold 0.32 --preset fast --data frappe --threads 2

"Cold" means no trained model and an empty torch.compile cache (a fresh temporary one). Prints
the same JSON as from checkpoints, plus the wall time of the whole command after the data is loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def seconds_until(history: list[dict], threshold: float | None) -> tuple[float, int | None]:
    total = 0.0
    for record in history:
        total += (record.get("seconds") or 0.0) + (record.get("eval_seconds") or 0.0)
        value = record.get("valid_rmse")
        if threshold is not None and value is not None and value <= threshold:
            return total, record["epoch"]
    return total, None


def report(threshold: float, parts: list[dict], **extra) -> dict:
    reached = parts[-1]["reached_at_epoch"] is not None
    return {"threshold": threshold, "reached": reached, "seconds": round(sum(p["seconds"] for p in parts), 1),
            "parts": parts, **extra}


def from_checkpoints(paths: list[str], threshold: float) -> dict:
    from afm.checkpoint import load_checkpoint

    parts = []
    for index, path in enumerate(paths):
        last = index == len(paths) - 1
        seconds, epoch = seconds_until(load_checkpoint(path).history, threshold if last else None)
        parts.append({"checkpoint": path, "seconds": round(seconds, 1), "reached_at_epoch": epoch if last else None})
    return report(threshold, parts)


class StopAtThreshold:
    """Callback + stop request: end the training after the first epoch at or below the threshold."""

    def __init__(self, threshold: float):
        self.threshold, self.reached = threshold, False

    def on_batch_end(self, epoch, batch, num_batches) -> None:
        pass

    def on_epoch_end(self, record: dict) -> None:
        self.reached = self.reached or record.get("valid_rmse", float("inf")) <= self.threshold

    def __call__(self) -> bool:
        return self.reached


def from_preset(name: str, data: str, threshold: float, seed: int) -> dict:
    from afm.data import load_dataset
    from afm.fitting import fit_recipe
    from afm.recipe import preset

    dataset = load_dataset(data)
    start = time.perf_counter()
    parts, previous = [], None
    for model_name in ("fm", "afm"):
        recipe = preset(name, model_name, seed=seed, pretrain=False, init_from="fm" if previous else None)
        stop = StopAtThreshold(threshold) if model_name == "afm" else None
        # As the app's "Start from": the authors' p = 1.
        fitted = fit_recipe(recipe, dataset, init_from=previous, callbacks=[stop] if stop else (), should_stop=stop)
        result = fitted.result
        last = model_name == "afm"
        seconds, epoch = seconds_until(result.history, threshold if last else None)
        parts.append({"model": model_name, "seconds": round(seconds, 1), "reached_at_epoch": epoch if last else None,
                      "epochs": result.epochs_run, "best_valid_rmse": round(result.best["valid_rmse"], 4),
                      "test_rmse_at_best": round(result.best["test_rmse"], 4), "compiled": result.compiled,
                      "distinct_pairs": result.distinct_pairs,
                      "valid_rmse": [round(r["valid_rmse"], 4) for r in result.history]})
        previous = result.model
    return report(threshold, parts, preset=name, wall_seconds=round(time.perf_counter() - start, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threshold", type=float, required=True)
    parser.add_argument("--preset", default=None, help="run this preset's FM -> AFM recipe from a cold start")
    parser.add_argument("--data", default="frappe")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("checkpoints", nargs="*")
    args = parser.parse_args()
    if bool(args.preset) == bool(args.checkpoints):
        parser.error("give either checkpoints or --preset")
    if args.checkpoints:
        print(json.dumps(from_checkpoints(args.checkpoints, args.threshold)))
        return
    with tempfile.TemporaryDirectory(prefix="ttq-inductor-") as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # before torch compiles anything: a cold cache
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(from_preset(args.preset, args.data, args.threshold, args.seed)))


if __name__ == "__main__":
    main()
