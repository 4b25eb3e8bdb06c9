"""Training pace as users get it: whole shuffled epochs of Frappe's full training file, each
preset's own recipe (dropouts, L2 on attention), steady state (median of epochs 2..N), ours
through `train_model` (eager, compiled, the path `--compile auto` picks, and the app's job
path) against torchfm 0.7.0 and DeepCTR-Torch 0.3.0 over the same epochs.

    python bench/epochs.py --settings 64:4096,256:1024,256:128 --epochs 3 --threads 2 [--device cuda]

Settings are k (= t):batch. Implementations (`--impls`):
  ours-eager, ours-compiled   afm.train.train_model with compile off / on (what `afm train` runs)
  ours-bf16                   ours-eager with the recipe's precision bfloat16 (`afm train --precision
                              bfloat16`: AFM's attention products in bfloat16; skipped where refused)
  ours-job                    afm.app.jobs.TrainingJob through the server's scheduler (the app's path)
  ours-keep-subnormals        ours-eager in a thread that keeps subnormal floats (the pace before
                              afm.numerics: on CPUs with slow subnormals, the difference)
  torchfm, deepctr            the peers, with the same recipe where they have the knob
Each runs in a child process of its own, back to back. The recipe is the paper's AFM (lr 0.015,
dropout 0 on a_ij and 0.2 on the pooled vector, L2 16 on attention), lr 0.08 at batch 1,024 as
the fast preset; the AFM starts from random weights (pace does not depend on the start). Prints
one JSON line per run and a table with ours / torchfm.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMPLS = ("ours-eager", "ours-bf16", "ours-compiled", "ours-job", "ours-keep-subnormals", "torchfm", "deepctr")


def recipe(k: int, batch: int, epochs: int, device: str = "cpu"):
    """(dataset, Recipe) of the AFM recipe at this setting (no FM pretraining: the AFM's epochs alone)."""
    from afm.data import load_dataset
    from afm.recipe import preset

    data = load_dataset("frappe")
    name = "fast" if batch == 1024 else "paper"
    return data, preset(name, "afm", embedding_dim=k, attention_dim=k, batch_size=batch, epochs=epochs,
                        patience=epochs + 1, device=device, pretrain=False)


class PathNote:
    """A training callback that keeps the path the trainer took (distinct pairs, sparse gradients, compiled)."""

    path: dict = {}

    def on_train_start(self, path: dict) -> None:
        self.path = path

    def on_batch_end(self, epoch: int, batch: int, batches: int) -> None:
        pass

    def on_epoch_end(self, record: dict) -> None:
        pass


def ours(impl: str, k: int, batch: int, epochs: int, device: str) -> dict:
    import dataclasses

    import afm.train
    from afm.models import build_model

    data, chosen = recipe(k, batch, epochs, device)
    model_config, train_config = chosen.model_config(data.schema), chosen.train_config()
    if impl == "ours-job":
        from afm.app.jobs import TrainingJob

        job = TrainingJob("bench", data, chosen).start()
        while not job.join(timeout=2.0):  # polled as the page polls it (every 2 s), or the server stops it
            job.snapshot()
        assert job.status == "done", job.error
        history, path = job.run.history, job.path
    else:
        compile_mode = {"ours-compiled": "on"}.get(impl, "off")
        precision = "bfloat16" if impl == "ours-bf16" else train_config.precision
        config = dataclasses.replace(train_config, compile=compile_mode, precision=precision)
        box = {}

        def train():
            if impl == "ours-keep-subnormals":  # the trainer as it was before afm.numerics
                import torch

                torch.set_flush_denormal(False)
                afm.train.full_speed_floats = contextlib.nullcontext
                afm.train.warn_if_workers_keep_subnormals = lambda: False
            model = build_model(model_config, seed=0)
            box["path"] = PathNote()
            box["result"] = afm.train.train_model(model, data, config, callbacks=[box["path"]])

        if impl == "ours-keep-subnormals":
            thread = threading.Thread(target=train)  # a fresh thread: its workers start in its mode
            thread.start()
            thread.join()
        else:  # the main thread, as `afm train` runs it
            train()
        result = box["result"]
        history, path = result.history, box["path"].path
    seconds = [r["seconds"] for r in history[1:]]
    return {"epoch_seconds": seconds, "rows": len(data.train), "path": path,
            "valid_rmse": [round(r["valid_rmse"], 5) for r in history[1:]]}


def torchfm(k: int, batch: int, epochs: int, device: str) -> dict:
    import numpy as np
    import torch

    np.long = np.int64  # torchfm 0.7.0 still uses np.long, gone in NumPy 2
    from torchfm.model.afm import AttentionalFactorizationMachineModel

    data, chosen = recipe(k, batch, epochs)
    model_config, train_config = chosen.model_config(data.schema), chosen.train_config()
    sizes = field_sizes(data)
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    x = torch.from_numpy(np.asarray(data.train.feature_ids) - offsets).to(device)  # torchfm offsets ids itself
    y = torch.from_numpy(np.asarray(data.train.labels, dtype=np.float32)).to(device)
    torch.manual_seed(0)
    model = AttentionalFactorizationMachineModel(sizes, k, k, (model_config.dropout_attention,
                                                               model_config.dropout_pooled)).to(device)
    optimizer = torch.optim.Adagrad(model.parameters(), lr=train_config.lr, initial_accumulator_value=1e-8)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(x), device=device)
        for i in range(0, len(x), batch):
            rows = order[i:i + batch]
            loss = 0.5 * (model(x[rows]) - y[rows]).square().sum() \
                + 0.5 * train_config.l2_attention * model.afm.attention.weight.square().sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return {"epoch_seconds": seconds, "rows": len(x)}


def deepctr(k: int, batch: int, epochs: int, device: str) -> dict:
    import numpy as np
    from deepctr_torch.inputs import SparseFeat
    from deepctr_torch.models import AFM

    data, chosen = recipe(k, batch, epochs)
    model_config, train_config = chosen.model_config(data.schema), chosen.train_config()
    sizes = field_sizes(data)
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    local = np.asarray(data.train.feature_ids) - offsets
    names = [f"f{i}" for i in range(len(sizes))]
    columns = [SparseFeat(n, int(size), embedding_dim=k) for n, size in zip(names, sizes)]
    model = AFM(columns, columns, attention_factor=k, afm_dropout=model_config.dropout_pooled,
                l2_reg_att=train_config.l2_attention, task="regression", device=device)
    model.compile("adagrad", "mse")
    for group in model.optim.param_groups:
        group["lr"] = train_config.lr
    inputs = {n: local[:, i] for i, n in enumerate(names)}
    labels = np.asarray(data.train.labels, dtype=np.float32)
    seconds = []
    for _ in range(epochs):  # its own fit loop, one epoch at a time (its per-batch overhead is what users get)
        start = time.perf_counter()
        model.fit(inputs, labels, batch_size=batch, epochs=1, verbose=0, shuffle=True)
        seconds.append(time.perf_counter() - start)
    return {"epoch_seconds": seconds, "rows": len(labels)}


def field_sizes(data) -> list[int]:
    import numpy as np

    return np.bincount(np.asarray(data.schema.feature_field)).tolist()


def child(impl: str, k: int, batch: int, epochs: int, threads: int, device: str) -> dict:
    import torch

    torch.set_num_threads(threads)
    measure = {"torchfm": torchfm, "deepctr": deepctr}.get(impl)
    record = measure(k, batch, epochs, device) if measure else ours(impl, k, batch, epochs, device)
    steady = statistics.median(record["epoch_seconds"][1:] or record["epoch_seconds"])
    return {"impl": impl, "k": k, "t": k, "batch": batch, "epochs": epochs, "threads": threads, "device": device,
            **({"gpu": torch.cuda.get_device_name(0)} if device.startswith("cuda") else {}),
            "samples_per_s": round(record["rows"] / steady, 1),
            "epoch_samples_per_s": [round(record["rows"] / s, 1) for s in record["epoch_seconds"]],
            "torch": torch.__version__, **{key: v for key, v in record.items() if key != "epoch_seconds"},
            "epoch_seconds": [round(s, 2) for s in record["epoch_seconds"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", default="64:4096,256:1024,256:128", help="k:batch,...")
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        impl, k, batch = args.child.split(":")
        box = {}

        def measure():
            box["record"] = child(impl, int(k), int(batch), args.epochs, args.threads, args.device)

        if impl == "ours-job":
            # As in the app's server, whose main thread never runs torch: torch and afm are imported, the
            # data loaded and the job started and polled from another thread (Streamlit's script threads).
            # An OpenMP team in the main thread too makes libgomp count more workers than cores and cut
            # every worker's spin to 1,000 (docs/benchmarks.md): the job then ran ~20 % slower than here.
            thread = threading.Thread(target=measure)
            thread.start()
            thread.join()
        else:
            measure()
        print(json.dumps(box["record"]))
        return
    records = []
    for setting in args.settings.split(","):
        for impl in args.impls.split(","):
            command = [sys.executable, __file__, "--child", f"{impl}:{setting}", "--epochs", str(args.epochs),
                       "--threads", str(args.threads), "--device", args.device]
            env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
                print(json.dumps({"impl": impl, "setting": setting, "skipped": reason}), flush=True)
                continue
            records.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(records[-1]), flush=True)
    print("\n| k = t | batch | " + " | ".join(args.impls.split(",")) + " | ours-eager / torchfm | best of ours / "
          "torchfm | ours-job / ours-eager |")
    for setting in args.settings.split(","):
        k, batch = (int(v) for v in setting.split(":"))
        pace = {r["impl"]: r["samples_per_s"] for r in records if (r["k"], r["batch"]) == (k, batch)}
        cells = [f"{pace[i]:,.0f}" if i in pace else "-" for i in args.impls.split(",")]
        ratio = lambda a, b, pace=pace: f"{pace[a] / pace[b]:.2f}x" if a in pace and b in pace else "-"  # noqa: E731
        best = max((i for i in pace if i.startswith("ours") and i != "ours-keep-subnormals"), key=pace.get,
                   default=None)
        print(f"| {k} | {batch} | " + " | ".join(cells) + f" | {ratio('ours-eager', 'torchfm')} | "
              f"{ratio(best, 'torchfm') if best else '-'} | {ratio('ours-job', 'ours-eager')} |")


if __name__ == "__main__":
    main()
