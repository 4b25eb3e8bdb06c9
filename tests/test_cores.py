"""One budget of the cores (afm.cores): every computation of a server takes its share in its own
thread, a training follows the share as others start and end, OpenMP's workers sleep when idle,
and the command line uses the cores it may use and says so."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from afm.app.jobs import TrainingJob
from afm.cores import CoreBudget, command_line_threads, set_openmp_defaults
from afm.recipe import Recipe
from afm.scheduler import ServerPolicy, TrainingScheduler
from tests.conftest import random_dataset

ROOT = Path(__file__).resolve().parents[1]


def test_openmp_defaults_fill_only_what_the_environment_leaves_unset():
    assert set_openmp_defaults({}) == {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "3000", "KMP_BLOCKTIME": "1"}
    # A user's policy or spin count keeps ours out of both: PASSIVE with our count would spin again.
    assert set_openmp_defaults({"OMP_WAIT_POLICY": "passive"}) == {"OMP_WAIT_POLICY": "passive", "KMP_BLOCKTIME": "1"}
    assert set_openmp_defaults({"GOMP_SPINCOUNT": "5"}) == {"GOMP_SPINCOUNT": "5", "KMP_BLOCKTIME": "1"}
    assert set_openmp_defaults({"KMP_BLOCKTIME": "0"})["KMP_BLOCKTIME"] == "0"


def test_importing_afm_makes_openmp_workers_spin_briefly_when_idle():
    """libgomp's own report (OMP_DISPLAY_ENV): without afm it spins 300,000 times before sleeping."""
    code = "import afm, torch; torch.ones(100_000).sum()"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["OMP_DISPLAY_ENV"] = "VERBOSE"

    def spin_count(program: str, **extra) -> str:
        out = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env={**env, **extra}, capture_output=True,
                             text=True, check=True)
        return next(line.split("=")[1].strip(" '") for line in out.stderr.splitlines() if "GOMP_SPINCOUNT" in line)

    assert spin_count(code.replace("import afm, ", "import ")) == "300000"  # torch alone: libgomp's default
    assert spin_count(code) == "3000"  # afm first: ~30 us
    assert spin_count(code, OMP_WAIT_POLICY="PASSIVE") == "0"  # a value of one's own is kept


def test_command_line_threads_are_the_cores_this_process_may_use():
    cores = len(os.sched_getaffinity(0))
    assert command_line_threads({})[0] == cores
    assert command_line_threads({"OMP_NUM_THREADS": "1"}) == (1, "OMP_NUM_THREADS")
    threads, why = command_line_threads({"LOCAL_WORLD_SIZE": "2"})  # torchrun: two processes on this machine
    assert threads == max(1, cores // 2) and "2 processes" in why


def test_the_train_command_says_how_many_threads_it_uses(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-m", "afm", "train", "--data", "sample", "--model", "fm", "--preset",
                          "quick", "--epochs", "1", "--no-reference", "--out", str(tmp_path / "fm.safetensors")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    cores = len(os.sched_getaffinity(0))
    assert f"; {cores} thread{'s' if cores != 1 else ''} (the cores this process may use" in out.stderr


def _hold(budget: CoreBudget, kind: str, seen: dict, entered: threading.Event, leave: threading.Event):
    with budget.use(kind) as lease:
        seen[kind] = (lease.threads, torch.get_num_threads())
        entered.set()
        leave.wait(30)


def test_computations_share_the_budget_each_in_its_own_thread():
    budget = CoreBudget(4)
    previous = torch.get_num_threads()
    with budget.use("training") as lease:
        assert lease.threads == torch.get_num_threads() == 4  # alone: every core
        seen, entered, leave = {}, threading.Event(), threading.Event()
        other = threading.Thread(target=_hold, args=(budget, "analysis", seen, entered, leave))
        other.start()
        assert entered.wait(30)
        assert seen["analysis"] == (2, 2) and budget.running() == {"training": 1, "analysis": 1}
        assert lease.refresh() == 2 and torch.get_num_threads() == 2  # this thread's share follows
        with budget.use("analysis") as inner:  # nested in the same thread: the same lease, not a third share
            assert inner is lease and budget.share() == 2
        leave.set()
        other.join(30)
        assert lease.refresh() == 4 and torch.get_num_threads() == 4
    assert torch.get_num_threads() == previous and budget.running() == {}
    assert lease.refresh() == 4 and torch.get_num_threads() == previous  # an ended lease changes nothing


def test_a_training_job_follows_its_share_as_analyses_start_and_end():
    """Two cores: alone the job trains on two threads; while a page's analysis runs, on one."""
    scheduler = TrainingScheduler(ServerPolicy(slots=1, cores=2))
    threads: list[int] = []

    class Watch:
        def on_train_start(self, path):
            pass

        def on_batch_end(self, epoch, batch, batches):
            threads.append(torch.get_num_threads())  # the training thread's own

        def on_epoch_end(self, record):
            pass

    recipe = Recipe.of(model="fm", embedding_dim=4, dropout_pooled=0.0, epochs=200, batch_size=8, lr=0.05)
    job = TrainingJob("watched", random_dataset(num_rows=4000), recipe, scheduler=scheduler,
                      callbacks=[lambda model: Watch()]).start()
    try:
        deadline = time.monotonic() + 60
        while len(threads) < 20:
            assert time.monotonic() < deadline and job.status in ("queued", "running"), job.error
            time.sleep(0.01)
        assert threads[-1] == 2 and scheduler.threads_for(job) == 2
        with scheduler.budget.use("analysis"):
            count = len(threads)
            while len(threads) < count + 20:
                time.sleep(0.01)
            assert threads[-1] == 1 and scheduler.threads_for(job) == 1
        count = len(threads)
        while len(threads) < count + 20:
            time.sleep(0.01)
        assert threads[-1] == 2
    finally:
        job.request_stop()
        assert job.join(60)
    assert scheduler.budget.running() == {}
