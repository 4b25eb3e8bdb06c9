"""One training epoch at the paper's MovieLens-tag shape: samples/s, epoch time and peak memory
of this project's FM and AFM (through `afm train`, as a user runs it) against torchfm 0.7.0's
FM and AFM at the same settings.

    python -m afm synthesize ml-tag --dest data/synthetic                      # 2,006,859 rows
    python bench/mltag_scale.py --data data/synthetic/ml-tag --k 256 --batch 4096 --threads 2

`--data` is a directory of ml-tag libfm splits (the real one, or `afm synthesize ml-tag`) or
of memory-mapped arrays (`afm encode`: our trainer then streams). Each implementation runs in
a child process of its own, one after the other, so its peak memory (VmHWM: the whole
process, data included) is its own. torchfm is skipped with a note when it is not installed
(`pip install -r bench/requirements.txt`). Prints one JSON line per implementation, then a
markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMPLS = ("fm", "afm", "afm-plain", "torchfm-fm", "torchfm-afm")  # afm-plain: afm train --distinct-pairs off
LR = 0.05


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ours(impl: str, data: str, k: int, batch: int, epochs: int, compile_mode: str) -> dict:
    """`afm train` in this process, as a user runs it (evaluation time excluded from the epoch)."""
    import contextlib
    import io

    from afm.cli import main

    with tempfile.TemporaryDirectory() as folder:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = main(["train", "--data", data, "--model", impl.removesuffix("-plain"),
                           "--k", str(k), "--t", str(k),
                           "--distinct-pairs", "off" if impl.endswith("-plain") else "auto",
                           "--batch-size", str(batch), "--epochs", str(epochs), "--lr", str(LR),
                           "--compile", compile_mode, "--device", "cpu", "--quiet",
                           "--out", str(Path(folder) / "model.safetensors")])
        assert status == 0, f"afm train exited {status}"
        summary = json.loads(out.getvalue().strip().splitlines()[-1])
    return {"epoch_seconds": summary["seconds"] / max(1, summary["epochs_run"]),
            "samples_per_second": summary["samples_per_second"], "valid_rmse": summary["valid_rmse"],
            "compiled": summary["compiled"], "streamed": summary["streamed"],
            "distinct_pairs": summary["distinct_pairs"]}


def torchfm(model: str, data: str, k: int, batch: int, epochs: int) -> dict:
    """torchfm's FM or AFM on the same rows: the same Adagrad, summed squared loss and batches."""
    import numpy as np
    import torch

    np.long = np.int64  # torchfm 0.7.0 still uses np.long, gone in NumPy 2
    from torchfm.model.afm import AttentionalFactorizationMachineModel
    from torchfm.model.fm import FactorizationMachineModel

    from afm.data import load_dataset

    dataset = load_dataset(data)
    schema = dataset.schema
    sizes = [len(schema.field_values(f)) for f in range(schema.num_fields)]
    starts = torch.tensor([int(schema.field_values(f)[0]) for f in range(schema.num_fields)])
    local = torch.from_numpy(np.asarray(dataset.train.feature_ids)) - starts  # (N, F) per-field indices
    targets = torch.from_numpy(np.asarray(dataset.train.labels))
    torch.manual_seed(0)
    if model == "fm":
        net = FactorizationMachineModel(sizes, k)
    else:  # dropouts 0: torchfm applies them at evaluation too
        net = AttentionalFactorizationMachineModel(sizes, k, k, (0.0, 0.0))
    optimizer = torch.optim.Adagrad(net.parameters(), lr=LR, initial_accumulator_value=1e-8)
    seconds = 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(targets))
        for first in range(0, len(targets), batch):
            rows = order[first:first + batch]
            loss = 0.5 * (net(local[rows]) - targets[rows]).square().sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds += time.perf_counter() - start
    return {"epoch_seconds": seconds / epochs, "samples_per_second": epochs * len(targets) / seconds}


def child(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    impl = args.impls
    if impl.startswith("torchfm-"):
        measured = torchfm(impl.removeprefix("torchfm-"), args.data, args.k, args.batch, args.epochs)
    else:
        measured = ours(impl, args.data, args.k, args.batch, args.epochs, args.compile)
    return {"impl": impl, "k": args.k, "t": args.k, "batch": args.batch, "epochs": args.epochs,
            "threads": args.threads, **{key: round(v, 4) if isinstance(v, float) else v for key, v in measured.items()},
            "peak_rss_mb": round(peak_rss_mb(), 1), "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="ml-tag libfm directory or arrays directory")
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--k", type=int, default=256, help="embedding and attention size (paper: 256)")
    parser.add_argument("--batch", type=int, default=4096, help="paper: 4096 on MovieLens")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto", help="ours: afm train --compile")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    records = []
    for impl in args.impls.split(","):
        command = [sys.executable, __file__, "--child", "--impls", impl, "--data", args.data, "--k", str(args.k),
                   "--batch", str(args.batch), "--epochs", str(args.epochs), "--threads", str(args.threads),
                   "--compile", args.compile]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
            print(json.dumps({"impl": impl, "skipped": reason}), flush=True)
            continue
        records.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(records[-1]), flush=True)
    print("| implementation | samples/s | epoch time | peak memory (whole process) |")
    print("|---|---|---|---|")
    for r in records:
        print(f"| {r['impl']} | {r['samples_per_second']:,.0f} | {r['epoch_seconds']:.1f} s "
              f"| {r['peak_rss_mb']:,.0f} MB |")


if __name__ == "__main__":
    main()
