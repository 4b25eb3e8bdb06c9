"""Where a steady-state training step's time goes: the fast preset's AFM step (k = t = 256, batch
1,024, dropouts and L2 as the recipe) on Frappe, after a warm-up of real steps, under
torch.profiler. A profile, not a speed figure (the profiler adds its own overhead): the speed
figures come from bench/epochs.py.

    python bench/profile_step.py --k 256 --batch 1024 --warmup 100 --steps 10 --threads 2
    python bench/profile_step.py --preset paper --k 256 --batch 128 --warmup 100 --steps 40 --threads 2
    python bench/profile_step.py --preset paper --k 256 --batch 128 --precision bfloat16 --steps 40
    python bench/profile_step.py --preset paper --k 256 --batch 128 --warmup 50 --steps 400 --timed

`--timed`: no profiler, the steps' wall time (ms a step and samples/s), for side-by-side variants;
a step's pace, not an epoch's (bench/epochs.py is the speed figure).
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
from torch.profiler import ProfilerActivity, profile

from afm.batches import ResidentBatches
from afm.data import load_dataset
from afm.models import build_model
from afm.numerics import full_speed_floats
from afm.recipe import preset
from afm.train import batch_objective, make_optimizer
from afm.training_plan import plan_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="fast", help="the recipe (afm.recipe presets): fast, paper, ...")
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=25, help="operators listed")
    parser.add_argument("--precision", default="float32", help="the recipe's precision: float32 or bfloat16")
    parser.add_argument("--timed", action="store_true", help="time the steps without the profiler")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("frappe")
    chosen = preset(args.preset, "afm", embedding_dim=args.k, attention_dim=args.k, batch_size=args.batch, device="cpu",
                     precision=args.precision)
    model_config, config = chosen.model_config(data.schema), chosen.train_config()
    model = build_model(model_config, seed=0)
    model.train()
    # The path the trainer takes (afm.training_plan): distinct pairs and, for Adagrad on a large
    # table, sparse embedding gradients (a profile of dense ones showed a full-table update per step).
    path = plan_training(model, data, config, torch.device("cpu"))
    distinct = path.distinct_pairs
    path.set_up(model)
    batches = ResidentBatches(data.train, range(len(data.train)), torch.device("cpu"), config.task, args.batch, 0)
    optimizer = make_optimizer(model, config)

    def step(ids, values, targets):
        loss = batch_objective(model, model(ids, values, distinct), targets, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    with full_speed_floats():
        stream = iter(batches.epoch())
        for _ in range(args.warmup):
            step(*next(stream))
        with contextlib.nullcontext() if args.timed else profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            for _ in range(args.steps):
                step(*next(stream))
            seconds = (time.perf_counter() - start) / args.steps
    print(f"k = t = {args.k}, batch {args.batch}, distinct pairs {distinct}, sparse gradients "
          f"{path.sparse_gradients}, bfloat16 attention {path.bfloat16_attention}, {args.steps} steps after "
          f"{args.warmup}, {args.threads} threads")
    if args.timed:
        print(f"{seconds * 1e3:.2f} ms a step, {args.batch / seconds:,.0f} samples/s")
    else:
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
