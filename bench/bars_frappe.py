"""FM, FwFM and AFM on Frappe as a binary task in the BARS setting (the open CTR benchmark's
frappe_x1: embedding 10, batch 4,096, Adam lr 1e-3, an embedding regulariser, early stopping on
validation AUC with patience 2), test AUC and log loss beside BARS' published figures (issue #29
item 5). Our split is the AFM authors' (validation and test their own rows; the training file is a
rebuild, see the data's README), so the figures compare, they do not reproduce.

    python bench/bars_frappe.py [--models fm,fwfm,afm] [--epochs 100] [--max-minutes 10]
        [--regularizer 0.01] [--t 64] [--device cpu] [--data-dir DIR]

The regulariser: FuxiCTR (BARS' code) adds `regularizer` times the squared norm of the embedding
tables (halved or not by version) to the mean loss of a batch; our objective is a sum over the
batch with 1/2 x l2_embedding x ||E_touched||^2 on the features the batch touches, so l2_embedding
= batch x regularizer (the same pull on a touched row; untouched rows are left alone: weaker). The default 0.01 is
our choice, not BARS' per-model tuned value. AFM's attention size t: 64 (docs/REPRODUCTION.md).
`--max-minutes` stops a model's training there (its best epoch counts), so a 2-core run ends.
Prints one JSON line per model, then the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

import torch

from afm.data import load_dataset
from afm.fitting import fit_recipe
from afm.recipe import Recipe

# BARS frappe_x1 test figures (AUC, log loss), as issue #29 and docs/REPRODUCTION.md quote them.
PUBLISHED = {"fm": (0.9671, 0.2065), "afm": (0.9697, 0.2264), "fwfm": (0.9776, None)}
BATCH, LR, K, PATIENCE = 4096, 1e-3, 10, 2


def bars_recipe(model: str, args) -> Recipe:
    afm_only = {"attention_dim": args.t, "l2_attention": 0.0, "dropout_attention": 0.0} if model == "afm" else {}
    return Recipe.of(model=model, task="binary", embedding_dim=K, batch_size=BATCH, optimizer="adam", lr=LR,
                     dropout_pooled=0.0, l2_embedding=BATCH * args.regularizer, epochs=args.epochs,
                     patience=PATIENCE, device=args.device, preset=None, **afm_only)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="fm,fwfm,afm")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--max-minutes", type=float, default=10.0, help="per model; its best epoch counts")
    parser.add_argument("--regularizer", type=float, default=0.01, help="BARS' embedding regularizer")
    parser.add_argument("--t", type=int, default=64, help="AFM's attention size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", default=None, help="where frappe/ lives (default: afm.paths' roots)")
    args = parser.parse_args()
    dataset = load_dataset("frappe", data_dir=args.data_dir)
    rows = []
    for model in args.models.split(","):
        recipe = bars_recipe(model, args)
        deadline = time.monotonic() + 60 * args.max_minutes
        started = time.perf_counter()
        fitted = fit_recipe(recipe, dataset, should_stop=lambda deadline=deadline: time.monotonic() > deadline)
        result = fitted.result
        auc, logloss = PUBLISHED[model]
        rows.append({"model": model, "test_auc": round(result.best["test_auc"], 4),
                     "test_logloss": round(result.best["test_logloss"], 4),
                     "valid_auc": round(result.best["valid_auc"], 4), "best_epoch": result.best_epoch,
                     "epochs_run": result.epochs_run, "stop_reason": str(result.stop_reason),
                     "seconds": round(time.perf_counter() - started, 1), "bars_test_auc": auc,
                     "bars_test_logloss": logloss, "l2_embedding": recipe.l2_embedding, "device": result.device})
        print(json.dumps(rows[-1]), flush=True)
    print("\n| model | best epoch / run | stop | valid AUC | test AUC | test log loss | BARS AUC / log loss | "
          "minutes |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        bars = f"{r['bars_test_auc']:.4f} / " + (f"{r['bars_test_logloss']:.4f}" if r["bars_test_logloss"] else "-")
        print(f"| {r['model']} | {r['best_epoch']} / {r['epochs_run']} | {r['stop_reason']} | {r['valid_auc']:.4f} | "
              f"{r['test_auc']:.4f} | {r['test_logloss']:.4f} | {bars} | {r['seconds'] / 60:.1f} |")
    print(f"\n{datetime.now(UTC):%Y-%m-%d}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"regularizer {args.regularizer} (l2_embedding {BATCH * args.regularizer:g}), AFM t = {args.t}")


if __name__ == "__main__":
    main()
