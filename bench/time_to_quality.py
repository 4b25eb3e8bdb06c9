"""Wall time until a run first reaches a validation RMSE, from the per-epoch history that every
checkpoint carries (training seconds + evaluation seconds of each epoch, summed).

    python bench/time_to_quality.py --threshold 0.34 runs/ttq/fm256_clean.safetensors
    python bench/time_to_quality.py --threshold 0.32 runs/ttq/fm256_clean.safetensors \
        runs/frappe/afm256_lr03.safetensors

With several checkpoints (a pipeline such as FM pretraining then AFM), every one but the last
counts in full (its whole run was needed to start the next) and the last one until the threshold.
"""

from __future__ import annotations

import argparse
import json

from afm.checkpoint import load_checkpoint


def seconds_until(history: list[dict], threshold: float | None) -> tuple[float, int | None]:
    total = 0.0
    for record in history:
        total += (record.get("seconds") or 0.0) + (record.get("eval_seconds") or 0.0)
        value = record.get("valid_rmse")
        if threshold is not None and value is not None and value <= threshold:
            return total, record["epoch"]
    return total, None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threshold", type=float, required=True)
    parser.add_argument("checkpoints", nargs="+")
    args = parser.parse_args()
    total, parts = 0.0, []
    for index, path in enumerate(args.checkpoints):
        last = index == len(args.checkpoints) - 1
        history = load_checkpoint(path).history
        seconds, epoch = seconds_until(history, args.threshold if last else None)
        total += seconds
        parts.append({"checkpoint": path, "seconds": round(seconds, 1), "reached_at_epoch": epoch if last else None})
    reached = parts[-1]["reached_at_epoch"] is not None
    print(json.dumps({"threshold": args.threshold, "reached": reached, "seconds": round(total, 1), "parts": parts}))


if __name__ == "__main__":
    main()
