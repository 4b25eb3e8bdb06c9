"""A class's trainings on one server: N app jobs at once share the cores (afm.cores).

    python bench/class_load.py --jobs 1,2,4 --seconds 60 [--data-dir ../shared/data]
    python bench/class_load.py --processes --jobs 2 --wait-policy default   # N separate processes

Jobs (the default): for each N of `--jobs`, N TrainingJobs of the fast preset's AFM step on
Frappe (k = t = 128, batch 1,024, lr 0.1; started from random weights instead of the FM: the
same work per batch) go through one TrainingScheduler with N slots, polled every `--poll`
seconds as the pages poll, for `--seconds`; then they are stopped. A job's steady-state pace is
its training samples per wall-clock second after the first `--warmup` share of the time
(evaluations at epoch ends included). The target: the sum with N jobs at least 0.85x one alone.
`--processes`: each of the N trainings in its own process instead (as command-line trainings
beside the app), each with `--threads` torch threads (default: every core) and OpenMP's
environment `--wait-policy`: afm (afm.cores' default: idle workers spin 3,000 times, then
sleep), passive (sleep at once), active (spin for minutes), default (libgomp's own: spin a few
ms) or spin10000. Prints one JSON line per setting; the last line is one JSON object,
{"jobs": {"1": {"sum_pace": ..., "paces": [...]}, ...}, ...}.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# OpenMP's environment in each `--processes` training: afm's own default (afm.cores), the two
# policies it replaced, and libgomp's untouched defaults.
POLICIES = {"afm": None, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "active": {"OMP_WAIT_POLICY": "ACTIVE"},
            "default": {}, "spin10000": {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "10000"}}


class BatchClock:
    """A training callback that notes when each batch ends."""

    def __init__(self):
        self.stamps: list[float] = []

    def on_train_start(self, path: dict) -> None:
        pass

    def on_batch_end(self, epoch: int, batch: int, num_batches: int) -> None:
        self.stamps.append(time.monotonic())

    def on_epoch_end(self, record: dict) -> None:
        pass


def steady_pace(stamps: list[float], start: float, end: float, batch_size: int) -> float:
    """Training samples per second over [start, end]."""
    done = sum(1 for stamp in stamps if start <= stamp <= end)
    return done * batch_size / (end - start)


def step_recipe():
    """The fast preset's AFM step, from random weights, long enough never to end by itself."""
    from afm.recipe import preset

    return preset("fast", "afm").replace(pretrain=False, epochs=1000, patience=1000)


def frappe(data_dir: str):
    from afm.data import load_dataset

    return load_dataset("frappe", data_dir=data_dir)


def run_jobs(dataset, count: int, seconds: float, warmup: float, poll: float) -> dict:
    """`count` app jobs through one scheduler (as many slots), polled as the pages poll."""
    from afm.app.jobs import TrainingJob
    from afm.cores import available_cores
    from afm.scheduler import ServerPolicy, TrainingScheduler

    recipe = step_recipe()
    scheduler = TrainingScheduler(ServerPolicy(slots=count, cores=available_cores()))
    clocks = [BatchClock() for _ in range(count)]
    jobs = [TrainingJob(f"job {i}", dataset, recipe, scheduler=scheduler, callbacks=[lambda model, c=clock: c])
            for i, clock in enumerate(clocks)]
    started = time.monotonic()
    for job in jobs:
        job.start()
    threads_seen = set()
    try:
        while time.monotonic() - started < seconds:
            time.sleep(poll)
            for job in jobs:
                snapshot = job.snapshot()
                if snapshot["status"] in ("failed", "done", "stopped"):
                    raise RuntimeError(f"{job.name} {snapshot['status']}: {snapshot['error']}")
            threads_seen.add(scheduler.threads_for(jobs[0]))
    finally:
        ended = time.monotonic()
        for job in jobs:
            job.request_stop()
        for job in jobs:
            job.join(120)
    paces = [steady_pace(c.stamps, started + warmup * seconds, ended, recipe.batch_size) for c in clocks]
    return {"paces": [round(p, 1) for p in paces], "sum_pace": round(sum(paces), 1),
            "threads_per_job": sorted(threads_seen)}


def child(seconds: float, threads: int, policy: str, data_dir: str) -> None:
    """One training process (`--processes`): its pace as one JSON line. OpenMP reads its wait policy
    when torch loads, so the environment is set, then torch imported, before afm (which would set
    its own default)."""
    # afm.cores alone, not the package (whose __init__ loads torch before the environment is set).
    spec = importlib.util.spec_from_file_location("afm_cores_alone", ROOT / "afm" / "cores.py")
    cores = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cores)
    for name in cores.OPENMP_DEFAULTS:
        os.environ.pop(name, None)
    os.environ.update(cores.OPENMP_DEFAULTS if POLICIES[policy] is None else POLICIES[policy])
    import torch  # OpenMP reads the environment set just above

    if threads:
        torch.set_num_threads(threads)
    from afm.fitting import fit_recipe

    dataset, recipe, clock = frappe(data_dir), step_recipe(), BatchClock()
    started = time.monotonic()
    fit_recipe(recipe, dataset, callbacks=[clock], should_stop=lambda: time.monotonic() - started > seconds,
               seed_process=False)
    warm = started + 0.25 * seconds
    print(json.dumps({"pace": steady_pace(clock.stamps, warm, max(clock.stamps), recipe.batch_size),
                      "threads": torch.get_num_threads(), "policy": policy}), flush=True)


def run_processes(count: int, args) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--seconds", str(args.seconds), "--threads",
               str(args.threads), "--wait-policy", args.wait_policy, "--data-dir", args.data_dir]
    children = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(count)]
    results = []
    for process in children:
        out, _ = process.communicate(timeout=args.seconds * 4 + 300)
        if process.returncode:
            raise RuntimeError(f"a training process failed ({process.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    paces = [r["pace"] for r in results]
    return {"paces": [round(p, 1) for p in paces], "sum_pace": round(sum(paces), 1),
            "threads_per_job": sorted({r["threads"] for r in results})}


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default="1,2,4", help="how many trainings at once, one setting after another")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long each setting runs")
    parser.add_argument("--warmup", type=float, default=0.25, help="share of the time left out of the pace")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between a page's polls of its job")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"), help="where frappe/ lies")
    parser.add_argument("--processes", action="store_true", help="each training in its own process")
    parser.add_argument("--threads", type=int, default=0, help="--processes: torch threads each (0: every core)")
    parser.add_argument("--wait-policy", choices=list(POLICIES), default="afm",
                        help="--processes: OpenMP's wait policy in each process")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.seconds, args.threads, args.wait_policy, args.data_dir)
        return
    counts = [int(n) for n in args.jobs.split(",")]
    dataset = None if args.processes else frappe(args.data_dir)
    from afm.cores import available_cores

    results = {}
    for count in counts:
        load = load_average()
        result = run_processes(count, args) if args.processes else run_jobs(dataset, count, args.seconds,
                                                                            args.warmup, args.poll)
        result.update(load_before=load, load_after=load_average())
        print(json.dumps({"jobs": count, **result}), flush=True)
        results[str(count)] = result
    base = results.get("1", {}).get("sum_pace")
    for result in results.values():
        result["vs_one"] = round(result["sum_pace"] / base, 3) if base else None
    print(json.dumps({"jobs": results, "mode": "processes" if args.processes else "app jobs",
                      "wait_policy": os.environ.get("OMP_WAIT_POLICY") if not args.processes else args.wait_policy,
                      "cores": available_cores(), "seconds": args.seconds,
                      "date": datetime.now(UTC).strftime("%Y-%m-%d")}))


if __name__ == "__main__":
    main()
