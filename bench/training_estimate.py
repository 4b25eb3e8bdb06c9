"""The app's "at most ... more" training estimate against the time the training takes (issue #27).

The app's own path: a TrainingJob of a preset's AFM on the bundled sample, with the coupling
tracker the Data page turns on for k <= 64 (`track`) or without it, every epoch run (patience =
epochs, so "at most" is the actual bound). The estimate is read as the page reads it
(afm.app.pace.time_left) in epoch 2 and at half the run, and by the formula before #27 ("old":
the latest epoch's pace and its evaluation alone, no tracker time).

    python bench/training_estimate.py [--preset quick] [--epochs 40] [--track]

Prints one JSON line: actual seconds, training, evaluation and tail seconds, the estimated total
(elapsed + at most left) now and by the old formula in epoch 2 and at half the run, and the range
of actual / estimated total over every reading (4 a second).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from afm.analysis.coupling import CouplingTracker
from afm.app.jobs import TrainingJob
from afm.app.pace import time_left
from afm.app.training import TRACKED_ROWS
from afm.data import load_dataset
from afm.recipe import preset


def old_time_left(epoch: int, batch: int, batches: int, epochs: int, seconds_in_epoch: float,
                  history: list[dict]) -> float:
    """The estimate before #27, for comparison."""
    done = [r for r in history if r.get("epoch", 0) > 0 and r.get("seconds")]
    own = seconds_in_epoch / batch
    per_batch = own if not done or 2 * batch >= batches else done[-1]["seconds"] / batches
    evaluation = history[-1].get("eval_seconds", 0.0) if history else 0.0
    this_epoch = (batches - batch) * per_batch
    return this_epoch + evaluation + (epochs - epoch) * (batches * per_batch + evaluation)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--track", action="store_true")
    args = parser.parse_args()
    dataset = load_dataset("sample")
    recipe = preset(args.preset, "afm", device="cpu").replace(epochs=args.epochs, patience=args.epochs,
                                                               pretrain=False)
    probe = dataset.valid.tensors(np.arange(min(TRACKED_ROWS, len(dataset.valid))))
    trackers = [lambda m: CouplingTracker(m, *probe, task=recipe.task)] if args.track else []
    job = TrainingJob("estimate", dataset, recipe, callbacks=trackers).start()
    start, seen = time.monotonic(), []
    while not job.join(0.25):
        with job._lock:
            epoch, batch, batches = job.progress
            if job.status == "running" and job._epoch_started and batch and epoch:
                spent = time.monotonic() - job._epoch_started
                seen.append((time.monotonic() - start, epoch,
                             time_left(epoch, batch, batches, args.epochs, spent, job.history)[1],
                             old_time_left(epoch, batch, batches, args.epochs, spent, job.history)))
    actual = time.monotonic() - start

    def at(epoch: int) -> dict:
        elapsed, shown, new, old = next(s for s in seen if s[1] >= epoch)
        return {"epoch": shown, "elapsed": round(elapsed, 1), "estimate": round(elapsed + new, 1),
                "old_estimate": round(elapsed + old, 1)}

    ratios = {name: [round(actual / (s[0] + s[index]), 2) for s in seen] for name, index in (("new", 2), ("old", 3))}

    history = job.history
    total = {key: round(sum(r.get(key, 0.0) for r in history), 1) for key in ("seconds", "eval_seconds",
                                                                               "tail_seconds")}
    print(json.dumps({"preset": args.preset, "track": args.track, "epochs": len(history) - 1,
                      "actual_s": round(actual, 1), **total, "epoch_2": at(2), "half": at(args.epochs // 2),
                      "actual_over_estimate_range": {k: [min(v), max(v)] for k, v in ratios.items()}}))


if __name__ == "__main__":
    main()
