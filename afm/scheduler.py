"""Training jobs on a shared server (a class on one machine): a queue in front of a few slots.

- As many jobs run at once as the policy's slots (default: the machine's cores); the torch
  threads of the cores are split between the running jobs and the pages' analyses (one
  afm.cores.CoreBudget for the server), re-split as they come and go.
- A queued job knows its position and an estimated wait (from the running jobs' measured
  epochs); stopping it in the queue takes effect at once.
- A job whose page stopped asking about it for `abandon_seconds` and is no longer connected (a closed
  tab) is stopped.
- A shared server may cap every job by epochs and by minutes; the best epoch is kept.
The policy comes from the environment, in one place (`ServerPolicy.from_env`).
"""

from __future__ import annotations

import heapq
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from afm.cores import CoreBudget, available_cores
from afm.errors import ConfigError


@dataclass(frozen=True)
class ServerPolicy:
    slots: int  # jobs that train at the same time
    cores: int  # torch threads shared among the running jobs and the pages' analyses
    max_epochs: int | None = None  # per job, on a shared server
    max_minutes: float | None = None  # per job
    abandon_seconds: float = 60.0  # stop a job nobody has looked at for this long

    @classmethod
    def from_env(cls) -> ServerPolicy:
        """AFM_TRAINING_SLOTS, AFM_TRAINING_THREADS, AFM_JOB_MAX_EPOCHS, AFM_JOB_MAX_MINUTES,
        AFM_JOB_ABANDON_SECONDS; unset means the default (slots = threads = the cores, no caps, 60 s)."""
        cores = _env_number("AFM_TRAINING_THREADS", int) or available_cores()
        return cls(slots=_env_number("AFM_TRAINING_SLOTS", int) or cores, cores=cores,
                   max_epochs=_env_number("AFM_JOB_MAX_EPOCHS", int),
                   max_minutes=_env_number("AFM_JOB_MAX_MINUTES", float),
                   abandon_seconds=_env_number("AFM_JOB_ABANDON_SECONDS", float) or 60.0)


def _env_number(name: str, kind):
    text = os.environ.get(name)
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {text}")
    return value


class SchedulableJob(Protocol):
    status: str
    last_seen: float
    page_open: Callable[[], bool] | None  # whether the page that started it is still connected, if known

    def run_now(self, scheduler: TrainingScheduler) -> None: ...  # trains; returns when finished

    def estimated_seconds(self, expected: bool = False) -> float | None: ...  # the whole job, None when unknown

    def elapsed_running(self) -> float: ...

    def pace(self) -> float | None: ...  # training samples per second so far

    def request_stop(self, cause: str = "you") -> None: ...

    def cancel_queued(self) -> None: ...


class TrainingScheduler:
    def __init__(self, policy: ServerPolicy, watch_every: float = 2.0, budget: CoreBudget | None = None):
        self.policy = policy
        self.budget = budget or CoreBudget(policy.cores)  # every CPU computation of the server takes its share
        self._lock = threading.Lock()
        self._queue: list[SchedulableJob] = []
        self._running: list[SchedulableJob] = []
        self._watch_every = watch_every
        self._watchdog: threading.Thread | None = None
        self._rates: deque[float] = deque(maxlen=20)  # samples/s of recent epochs on this server
        self._epoch_shares: deque[float] = deque(maxlen=20)  # epochs run / epochs asked, of recent trainings

    def record_rate(self, samples_per_second: float) -> None:
        self._rates.append(float(samples_per_second))

    def typical_rate(self) -> float | None:
        """The median training pace (samples/s) of recent epochs here, else of the running jobs
        so far: what a job that has not run yet is expected to go at."""
        rates = sorted(self._rates)
        if not rates:
            with self._lock:
                running = list(self._running)
            rates = sorted(r for r in (job.pace() for job in running) if r)
        return rates[len(rates) // 2] if rates else None

    def record_epoch_share(self, share: float) -> None:
        """A training that ended by itself ran this share of the epochs it asked for (early
        stopping usually ends one well before its last epoch)."""
        self._epoch_shares.append(min(max(float(share), 0.0), 1.0))

    def typical_epoch_share(self) -> float | None:
        """The median share of their epochs that recent trainings here ran; None before any ended."""
        shares = sorted(self._epoch_shares)
        return shares[len(shares) // 2] if shares else None

    # ------------------------------------------------------------------ queue
    def submit(self, job: SchedulableJob) -> None:
        with self._lock:
            self._queue.append(job)
            self._start_watchdog()
        self._dispatch()

    def cancel(self, job: SchedulableJob) -> bool:
        """Take a queued job out of the queue; False when it already runs (or ran)."""
        with self._lock:
            if job not in self._queue:
                return False
            self._queue.remove(job)
        job.cancel_queued()
        return True

    def _dispatch(self) -> None:
        with self._lock:
            starting = []
            while self._queue and len(self._running) < self.policy.slots:
                job = self._queue.pop(0)
                self._running.append(job)
                starting.append(job)
        for job in starting:
            threading.Thread(target=self._run, args=(job,), name="afm-training", daemon=True).start()

    def _run(self, job: SchedulableJob) -> None:
        try:
            job.run_now(self)
        finally:
            with self._lock:
                self._running.remove(job)
            self._dispatch()

    # ------------------------------------------------------------------ what a page shows
    def threads_for(self, job: SchedulableJob) -> int:
        """A running job's share of the cores, given how many computations (jobs, analyses) run now."""
        return self.budget.share()

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return len(self._running), len(self._queue)

    def position(self, job: SchedulableJob, expected: bool = False) -> tuple[int, float | None] | None:
        """(1-based place in the queue, estimated seconds until it starts or None), or None when
        the job is not queued. The estimate plays the queue forward on the free slots: at most
        this long when every job ahead runs all its epochs, or (`expected`) this long when they
        run the share of their epochs that recent trainings here ran."""
        with self._lock:
            if job not in self._queue:
                return None
            place = self._queue.index(job)
            ahead = self._queue[:place]
            running = list(self._running)
        free_at = [0.0] * max(0, self.policy.slots - len(running))
        for other in running:
            total = other.estimated_seconds(expected)
            if total is None:
                return place + 1, None
            free_at.append(max(0.0, total - other.elapsed_running()))
        heapq.heapify(free_at)
        for other in ahead:
            total = other.estimated_seconds(expected)
            if total is None:
                return place + 1, None
            heapq.heappush(free_at, heapq.heappop(free_at) + total)
        return place + 1, free_at[0] if free_at else 0.0

    # ------------------------------------------------------------------ abandoned jobs
    def _start_watchdog(self) -> None:
        if self._watchdog is None or not self._watchdog.is_alive():
            self._watchdog = threading.Thread(target=self._watch, name="afm-job-watchdog", daemon=True)
            self._watchdog.start()

    def _watch(self) -> None:
        while True:
            time.sleep(self._watch_every)
            self.stop_abandoned()
            with self._lock:
                if not self._queue and not self._running:
                    self._watchdog = None
                    return

    def stop_abandoned(self, now: float | None = None) -> list[SchedulableJob]:
        now = time.monotonic() if now is None else now
        with self._lock:
            jobs = self._queue + self._running
        # Not polled for a while *and* its page gone: a page on a starved browser polls late but stays
        # connected, and a job stopped under it would end with nobody having asked (bench/soak.py).
        stale = [job for job in jobs if now - job.last_seen > self.policy.abandon_seconds
                 and not (job.page_open is not None and job.page_open())]
        for job in stale:
            job.request_stop("abandoned")  # a queued job leaves the queue, and its page says why
        return stale


_default: TrainingScheduler | None = None
_default_lock = threading.Lock()


def default_scheduler() -> TrainingScheduler:
    """The process's scheduler (one per server), made on first use from the environment."""
    global _default
    with _default_lock:
        if _default is None:
            _default = TrainingScheduler(ServerPolicy.from_env())
        return _default
