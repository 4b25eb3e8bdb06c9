"""Training and inference throughput of this project's FM/AFM against torchfm 0.7.0 and
DeepCTR-Torch 0.3.0 on the same workload (Frappe's 10 fields and 5,382 features).

    python bench/train_throughput.py --k 64 --batches 4096,128 --threads 2 [--impls ...] [--device cpu]

Ours: `afm` is the training path the trainer takes on one-hot rows (each distinct feature pair of
a batch once), `afm-compiled` the same through torch.compile; `afm-plain` and `afm-plain-compiled`
the plain (B, P, k) path that real-valued rows take (and the default before the one-hot path).
A micro-benchmark (about 60,000 samples from a fresh model, dropouts 0): what `afm train` delivers
over whole epochs is bench/epochs.py's. Which of `afm` / `afm-compiled` the CLI and the app run is
`afm.training_plan.should_compile`'s choice;
the summary names it ("default").

Each (implementation, batch size) is measured in a child process of this one command, so peak
memory is its own and one library's state (threads, compile caches) cannot leak into another's;
the children run back to back on the same machine. Peers are skipped with a note when their
package is not installed (`pip install -r bench/requirements.txt`). Prints one JSON line per
measurement and a ratio table (ours / peer) at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FRAPPE_FIELD_SIZES = [957, 4082, 7, 7, 2, 3, 2, 9, 80, 233]
IMPLS = ("afm", "afm-compiled", "afm-plain", "afm-plain-compiled", "fm", "torchfm-afm", "deepctr-afm")
OURS = ("afm", "afm-compiled", "afm-plain", "afm-plain-compiled")
PEERS = ("torchfm-afm", "deepctr-afm")
FRAPPE_TRAIN_ROWS = 202_027


def workload(rows: int, seed: int = 0):
    """Frappe's training rows when the data is present, else random rows with its field sizes."""
    import numpy as np

    try:
        from afm.data import load_dataset

        data = load_dataset("frappe")
        ids, labels = data.train.feature_ids[:rows], data.train.labels[:rows]
        source = "frappe"
    except Exception:  # noqa: BLE001 - any reason the data is missing: use the synthetic stand-in
        rng = np.random.default_rng(seed)
        offsets = np.concatenate(([0], np.cumsum(FRAPPE_FIELD_SIZES)[:-1]))
        ids = np.stack([rng.integers(0, s, rows) for s in FRAPPE_FIELD_SIZES], axis=1) + offsets
        labels = np.where(rng.random(rows) < 0.33, 1.0, -1.0).astype("float32")
        source = "random"
    return ids.astype("int64"), labels.astype("float32"), source


def measure(impl: str, k: int, batch: int, steps: int, warmup: int, threads: int, device: str) -> dict:
    """Runs in the child process."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rows = max(batch * (steps + warmup), 20_000)
    ids, labels, source = workload(rows)
    offsets = np.concatenate(([0], np.cumsum(FRAPPE_FIELD_SIZES)[:-1]))
    dev = torch.device(device)
    x = torch.from_numpy(ids).to(dev)
    y = torch.from_numpy(labels).to(dev)
    ones = torch.ones_like(x, dtype=torch.float32)
    compile_seconds = 0.0
    baseline_mb = reset_peak_rss()  # the data is loaded: count only what training adds
    infer = None  # inference path when it differs from the training forward

    if impl == "deepctr-afm":
        return measure_deepctr(ids - offsets, labels, k, batch, steps, warmup, device, source)
    if impl.startswith("torchfm"):
        np.long = np.int64  # torchfm 0.7.0 still uses np.long, gone in NumPy 2
        from torchfm.model.afm import AttentionalFactorizationMachineModel

        # Dropouts at 0: torchfm applies them at eval time too.
        model = AttentionalFactorizationMachineModel(FRAPPE_FIELD_SIZES, k, k, (0.0, 0.0)).to(dev)
        local = x - torch.from_numpy(offsets).to(dev)

        def forward(rows_):
            return model(local[rows_])
    else:
        from afm.models import ModelConfig, build_model

        name = "fm" if impl == "fm" else "afm"
        model = build_model(ModelConfig(model=name, num_features=int(sum(FRAPPE_FIELD_SIZES)), num_fields=10,
                                        embedding_dim=k, attention_dim=k, dropout_pooled=0.0)).to(dev)
        one_hot = "plain" not in impl  # every x is 1 here: the distinct-pair path, unless asked not to
        call = model
        if impl.endswith("compiled"):
            call = torch.compile(model, dynamic=True if one_hot else None)  # as the trainer compiles it

        def forward(rows_):
            return call(x[rows_], ones[rows_], one_hot)

        if not impl.endswith("compiled"):
            # Inference as the project predicts: model.inference (AFM scores distinct pairs once).
            def infer(rows_):
                return model.inference(x[rows_], ones[rows_])

    optimizer = torch.optim.Adagrad(model.parameters(), lr=0.01, initial_accumulator_value=1e-8)
    infer = infer or forward

    def step(rows_):
        loss = 0.5 * (forward(rows_) - y[rows_]).square().sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    order = torch.randperm(x.shape[0], device=dev)
    start = time.perf_counter()
    for i in range(warmup):
        step(order[i * batch:(i + 1) * batch])
    sync()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(order[(i * batch) % (x.shape[0] - batch):][:batch])
    sync()
    train_seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        infer(order[:batch])
        sync()
        start = time.perf_counter()
        for i in range(steps):
            infer(order[(i * batch) % (x.shape[0] - batch):][:batch])
        sync()
        infer_seconds = time.perf_counter() - start
    return result(impl, k, batch, steps, threads, device, source, steps * batch / train_seconds,
                  steps * batch / infer_seconds, compile_seconds, baseline_mb)


def measure_deepctr(local_ids, labels, k, batch, steps, warmup, device, source) -> dict:
    from deepctr_torch.inputs import SparseFeat
    from deepctr_torch.models import AFM

    names = [f"f{i}" for i in range(10)]
    columns = [SparseFeat(n, size, embedding_dim=k) for n, size in zip(names, FRAPPE_FIELD_SIZES)]
    baseline_mb = reset_peak_rss()
    model = AFM(columns, columns, attention_factor=k, afm_dropout=0.0, task="regression", device=device)
    model.compile("adagrad", "mse")
    rows = batch * (steps + warmup)
    inputs = {n: local_ids[:rows, i] for i, n in enumerate(names)}
    warm = {n: v[:batch * warmup] for n, v in inputs.items()}
    model.fit(warm, labels[:batch * warmup], batch_size=batch, epochs=1, verbose=0)  # its own fit loop
    timed = {n: v[batch * warmup:] for n, v in inputs.items()}
    start = time.perf_counter()
    model.fit(timed, labels[batch * warmup:rows], batch_size=batch, epochs=1, verbose=0)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    model.predict(timed, batch_size=batch)
    infer_seconds = time.perf_counter() - start
    return result("deepctr-afm", k, batch, steps, torch_threads(), device, source, steps * batch / train_seconds,
                  steps * batch / infer_seconds, 0.0, baseline_mb)


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def reset_peak_rss() -> float:
    """Reset the kernel's peak-RSS counter (Linux: clear_refs 5) and return the current RSS in MB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def result(impl, k, batch, steps, threads, device, source, train_sps, infer_sps, compile_seconds,
           baseline_mb) -> dict:
    import torch

    record = {"impl": impl, "k": k, "t": k, "batch": batch, "steps": steps, "threads": threads, "device": device,
              "data": source, "train_samples_per_s": round(train_sps, 1), "infer_samples_per_s": round(infer_sps, 1),
              "warmup_seconds": round(compile_seconds, 2),
              "peak_rss_added_mb": round(peak_rss_mb() - baseline_mb, 1),
              "torch": torch.__version__}
    if device.startswith("cuda"):
        record["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        record["gpu"] = torch.cuda.get_device_name(0)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--batches", default="4096,128")
    parser.add_argument("--steps", type=int, default=0, help="timed steps (default: about 60k samples)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement (interleaved); medians")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        impl, batch = args.impls, int(args.batches)
        print(json.dumps(measure(impl, args.k, batch, args.steps, args.warmup, args.threads, args.device)))
        return
    records = []
    for repeat, batch, impl in ((r, int(b), i) for b in args.batches.split(",") for r in range(args.repeats)
                                for i in args.impls.split(",")):
        steps = args.steps or max(5, 60_000 // batch)
        command = [sys.executable, __file__, "--child", "--impls", impl, "--batches", str(batch), "--k",
                   str(args.k), "--steps", str(steps), "--warmup", str(args.warmup), "--threads",
                   str(args.threads), "--device", args.device]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
            print(json.dumps({"impl": impl, "batch": batch, "skipped": reason}), flush=True)
            continue
        record = {**json.loads(done.stdout.strip().splitlines()[-1]), "repeat": repeat}
        records.append(record)
        print(json.dumps(record), flush=True)
    summarize(records, args.k, args.device)


def summarize(records: list[dict], k: int, device: str) -> None:
    """Median of the repeats per (impl, batch), then ours / peer ratios of those medians."""
    import statistics

    medians = {}
    for key in {(r["impl"], r["batch"]) for r in records}:
        runs = [r for r in records if (r["impl"], r["batch"]) == key]
        medians[key] = {m: statistics.median(r[m] for r in runs) for m in ("train_samples_per_s",
                                                                            "infer_samples_per_s")}
        spread = [r["train_samples_per_s"] for r in runs]
        print(json.dumps({"impl": key[0], "batch": key[1], "k": k, "runs": len(runs), **medians[key],
                          "train_min": min(spread), "train_max": max(spread)}))
    for batch in sorted({b for _, b in medians}):
        default = default_impl(k, batch, device)
        for ours in OURS:
            for peer in PEERS:
                a, b = medians.get((ours, batch)), medians.get((peer, batch))
                if a and b:
                    print(f"k={k} batch={batch}: {ours}{' (default)' if ours == default else ''} / {peer} training "
                          f"{a['train_samples_per_s'] / b['train_samples_per_s']:.2f}x, inference "
                          f"{a['infer_samples_per_s'] / b['infer_samples_per_s']:.2f}x")


def default_impl(k: int, batch: int, device: str) -> str:
    """Which of ours the CLI and the app run for an AFM on Frappe, 20 epochs at this batch size."""
    import torch

    from afm.models import AFM, ModelConfig
    from afm.train import TrainConfig
    from afm.training_plan import should_compile

    model = ModelConfig(model="afm", num_features=sum(FRAPPE_FIELD_SIZES), num_fields=10, embedding_dim=k,
                        attention_dim=k)
    distinct = AFM.distinct_pairs_pay(model, batch)
    compiled = should_compile(TrainConfig(batch_size=batch, epochs=20), torch.device(device), FRAPPE_TRAIN_ROWS)
    return ("afm" if distinct else "afm-plain") + ("-compiled" if compiled else "")


if __name__ == "__main__":
    main()
