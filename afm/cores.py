"""One budget of the machine's cores for every CPU computation of a process, and OpenMP set so
that idle workers spin only briefly before they sleep.

Why (docs/benchmarks.md, "Sharing the cores"): torch's CPU kernels run on OpenMP (libgomp), whose
workers, left to its defaults, spin for a few milliseconds (GOMP_SPINCOUNT 300,000) after each
parallel region waiting for the next. Two trainings in two processes on two cores, each with two
threads, then spin against each other's working threads: each went at a tenth of its pace alone.
Sleeping at once (OMP_WAIT_POLICY=PASSIVE) cured that but made every small operator pay a wake-up:
an elementwise op on a (2,400, 256) tensor took 183 us instead of 53 us, and a batch-128 AFM step
ran ~30 % slower. So idle workers spin 3,000 times (tens of microseconds: long enough to catch the
next operator of the same step, short enough not to hold a core another training needs), then
sleep; libgomp spins at most 1,000 times while its threads outnumber the cores. Two trainings in
two processes then summed 1.16x one alone, which ran at 0.92x libgomp's default
(`bench/class_load.py --processes --wait-policy ...`, docs/benchmarks.md).

In one process (the app's server) torch's thread count is per thread (`torch.set_num_threads` sets
the calling thread's OpenMP team size; a new thread starts from the last value set anywhere). So
each computation (a training job, a tuning study, a page's analysis) takes a `Lease` of the
process's `CoreBudget` in its own thread, and its thread count is the budget's share: the cores
divided by the computations now running, re-read as they come and go (`Lease.refresh`).
Nothing here imports torch at module level: `set_openmp_defaults` must run before torch loads.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from contextlib import contextmanager

# Set before torch or scikit-learn load OpenMP: libgomp's workers spin 3,000 times when idle, then
# sleep (ACTIVE is what lets a GOMP_SPINCOUNT of our own apply while threads outnumber the cores:
# 1,000 spins then, against 100 under libgomp's default policy); Intel OpenMP's (for builds that use
# it) spin 1 ms (KMP_BLOCKTIME, its smallest step above 0; not measured here: this CPU build is libgomp's).
OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "3000", "KMP_BLOCKTIME": "1"}
# Settings that decide libgomp's spinning together: a user's value for either keeps ours out of both.
LIBGOMP_SPIN = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def set_openmp_defaults(environ=None) -> dict[str, str]:
    """Put OPENMP_DEFAULTS into the environment where the user set nothing of their own (libgomp's
    policy and spin count as one); returns what the environment says now. Only takes effect when
    called before OpenMP is loaded."""
    environ = os.environ if environ is None else environ
    users_spin = any(name in environ for name in LIBGOMP_SPIN)
    for name, value in OPENMP_DEFAULTS.items():
        if not (users_spin and name in LIBGOMP_SPIN):
            environ.setdefault(name, value)
    return {name: environ[name] for name in OPENMP_DEFAULTS if name in environ}


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's or taskset's limit),
    not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def command_line_threads(environ=None) -> tuple[int, str]:
    """The threads a command-line training uses and why, in words: OMP_NUM_THREADS when set, else
    the cores it may use, shared by the processes of a torchrun training on this machine."""
    environ = os.environ if environ is None else environ
    given = environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given), "OMP_NUM_THREADS"
    cores = available_cores()
    local = environ.get("LOCAL_WORLD_SIZE", "").strip()
    processes = int(local) if local.isdigit() and int(local) > 0 else 1
    if processes > 1:
        return max(1, cores // processes), f"the {cores} cores this process may use, shared by {processes} processes"
    return cores, "the cores this process may use; OMP_NUM_THREADS=N for fewer"


def use_command_line_threads() -> str:
    """Set the calling thread's torch threads to `command_line_threads()`; the words to say it."""
    import torch

    threads, why = command_line_threads()
    torch.set_num_threads(threads)
    return f"{threads} thread{'s' if threads != 1 else ''} ({why})"


class CoreBudget:
    """The cores of one process, shared by the computations that run now: each gets
    max(1, cores // running) torch threads."""

    def __init__(self, cores: int | None = None):
        self.cores = max(1, int(cores or available_cores()))
        self._lock = threading.Lock()
        self._users: dict[int, str] = {}  # id of a lease -> its kind ("training", "analysis", ...)
        self._local = threading.local()  # the lease the current thread holds, if any

    def share(self) -> int:
        with self._lock:
            running = max(1, len(self._users))
        return max(1, self.cores // running)

    def running(self) -> Counter:
        """How many computations of each kind hold a lease now."""
        with self._lock:
            return Counter(self._users.values())

    @contextmanager
    def use(self, kind: str = "analysis"):
        """Run the block as one of the budget's computations, with its share of the threads (set
        in this thread, restored after). A block inside another of the same thread shares its lease."""
        held = getattr(self._local, "lease", None)
        if held is not None:
            held.refresh()
            yield held
            return
        import torch

        lease = Lease(self, kind)
        previous = torch.get_num_threads()
        with self._lock:
            self._users[id(lease)] = kind
        self._local.lease = lease
        try:
            lease.refresh()
            yield lease
        finally:
            lease.active = False
            self._local.lease = None
            with self._lock:
                self._users.pop(id(lease), None)
            torch.set_num_threads(previous)


class Lease:
    """One computation's hold on a CoreBudget; `refresh()` from its own thread (a training: after
    each batch) follows the share as other computations start and end."""

    def __init__(self, budget: CoreBudget, kind: str):
        self.budget, self.kind = budget, kind
        self.threads = 0
        self.active = True  # False once its block has ended: refresh() then changes nothing

    def refresh(self) -> int:
        if not self.active:
            return self.threads
        share = self.budget.share()
        if share != self.threads:  # setting it clears oneDNN's caches: only when it changes
            import torch

            torch.set_num_threads(share)
            self.threads = share
        return share


def limit_other_openmp(threads: int):
    """A context in which OpenMP libraries other than torch's (scikit-learn's) use at most
    `threads` threads in the calling thread (threadpoolctl); a no-op without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(limits=threads, user_api="openmp")
