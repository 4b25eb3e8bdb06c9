"""Runs and background training jobs, for the app (no Streamlit in here).

A `Run` is a trained or loaded model with its configs and history. A `TrainingJob` trains one
in a background thread so the browser stays responsive: the page polls its progress, a stop
request ends it after the current batch, and the best epoch's weights are kept either way.
A `TuningJob` runs a whole Optuna study (afm.tune) the same way, in one training slot.
Each browser session owns its runs and jobs; nothing here is shared between sessions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from afm.app.pace import time_left
from afm.app.page_watch import current_page_open
from afm.checkpoint import Checkpoint, history_frame
from afm.data import Dataset
from afm.errors import AFMError, is_out_of_memory
from afm.fitting import fit_recipe
from afm.models import PairwiseModel
from afm.numerics import flush_subnormals
from afm.recipe import Recipe
from afm.scheduler import TrainingScheduler, default_scheduler
from afm.train import StopReason
from afm.training_plan import preflight


@dataclass
class Run(Checkpoint):
    """A checkpoint a session works with: trained here or loaded, with a name it is shown by."""

    name: str = ""
    origin: str = ""  # "trained", "bundled" or "loaded: <file>"
    # Identifies the run's content for caches shared between sessions: the checkpoint's hash for
    # loaded ones, a hash of the weights and what scores them for trained ones (`weights_key`):
    # sessions that trained bit-identical models share their analyses.
    key: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, name: str, origin: str, key: str | None = None,
                        fresh: bool = False) -> Run:
        """A session's own run. Unless the checkpoint is `fresh` (made for this run alone), it is
        copied: a cached checkpoint's model, history and configs are never shared."""
        own = checkpoint if fresh else checkpoint.copy()
        own.model.cpu().eval()
        fields_ = {f.name: getattr(own, f.name) for f in dataclasses.fields(Checkpoint)}
        return cls(**fields_, name=name, origin=origin, key=key or weights_key(own))


def weights_key(checkpoint: Checkpoint) -> str:
    """What the analyses of a model depend on, hashed: its weights bit for bit, its configuration,
    task and label range (the key of its analyses in the caches every session shares)."""
    digest = hashlib.sha256(repr((checkpoint.model_config, checkpoint.task, checkpoint.label_range,
                                  checkpoint.schema.to_json())).encode())
    for name, tensor in sorted(checkpoint.model.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


class TrainingJob:
    """Train in a background thread through the server's scheduler; read `snapshot()` from the
    page (which also tells the scheduler someone is still looking), `request_stop()` from a button."""

    def __init__(self, name: str, dataset: Dataset, recipe: Recipe, init_from: PairwiseModel | None = None,
                 callbacks=(), scheduler: TrainingScheduler | None = None):
        """`recipe` says what to train; `init_from` is the model its `init_from` names (a run of
        the session) when it has one."""
        self.name = name
        self.dataset = dataset
        self.set_recipe(recipe)
        self.init_from = init_from
        self.extra_callbacks = list(callbacks)
        self.scheduler = scheduler or default_scheduler()
        self.notes: list[str] = []  # what the server's policy changed, for the page to say
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self.status = "queued"  # queued | running | done | stopped | failed
        self.stop_cause: str | None = None  # "you" | "abandoned" | "time budget"
        self.error: str | None = None
        self.history: list[dict] = []
        self.progress = (0, 0, 0)  # epoch, batch, batches per epoch
        self.run: Run | None = None
        self.path: dict = {}  # the training path, once train_model has chosen it (on_train_start)
        self.started = time.time()
        self.last_seen = time.monotonic()
        self.page_open: Callable[[], bool] | None = None  # its page still connected (afm.app.page_watch)
        self._running_since: float | None = None
        self._batches_done = 0
        self._epoch_started: float | None = None  # when the running epoch's first batch began
        self._lease = None  # afm.cores.Lease: the job's share of the server's cores while it runs

    def set_recipe(self, recipe: Recipe) -> None:
        """What the job trains now (a study's trial changes it), and its configs for the page."""
        self.recipe = recipe
        self.model_config, self.train_config = recipe.model_config(self.dataset.schema), recipe.train_config()

    @property
    def init_from_name(self) -> str | None:
        return self.recipe.init_from or ("FM pretraining" if self.recipe.pretrain else None)

    @property
    def match_fm(self) -> bool:
        return self.recipe.match_fm

    # -- the trainer's callback interface
    def on_batch_end(self, epoch: int, batch: int, num_batches: int) -> None:
        with self._lock:
            self.progress = (epoch, batch, num_batches)
            self._batches_done += 1
        if self._lease is not None:
            self._lease.refresh()  # this thread's share of the cores, as computations come and go

    def on_train_start(self, path: dict) -> None:
        self.path = dict(path)  # compiled, distinct_pairs, sparse_gradients, bfloat16_attention
        self._epoch_started = time.monotonic()  # epoch 0's evaluation and trackers start now

    def on_epoch_end(self, record: dict) -> None:
        with self._lock:  # the trackers ran before this callback: their time is in the epoch's tail
            now, started = time.monotonic(), self._epoch_started
            tail = {"tail_seconds": now - started - record.get("seconds", 0.0)} if started is not None else {}
            self.history.append({**record, **tail})
            self._epoch_started = now  # the next epoch starts now (epoch 0: training starts)
        if record.get("samples_per_second"):
            self.scheduler.record_rate(record["samples_per_second"])

    # -- control
    def start(self) -> TrainingJob:
        """Check the plan against memory (fails at once, with what to change), apply the server's
        caps, and queue the job."""
        preflight(self.model_config, self.train_config, self.dataset)  # the trainer's own checks, before the queue
        self.page_open = current_page_open()
        policy = self.scheduler.policy
        if policy.max_epochs and self.recipe.epochs > policy.max_epochs:
            self.set_recipe(self.recipe.replace(epochs=policy.max_epochs))
            self.notes.append(f"this server trains at most {policy.max_epochs} epochs per job")
        if policy.max_minutes:
            self.notes.append(f"this server stops a training after {policy.max_minutes:g} minutes (the best "
                              "epoch is kept)")
        self.scheduler.submit(self)
        return self

    def request_stop(self, cause: str = "you") -> None:
        with self._lock:
            self.stop_cause = self.stop_cause or cause
        self._stop.set()
        if self.status == "queued":
            self.scheduler.cancel(self)

    def cancel_queued(self) -> None:
        with self._lock:
            self.stop_cause = self.stop_cause or "you"
        self._finish("stopped")

    def join(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def finished(self) -> bool:
        return self.status in ("done", "stopped", "failed")

    def snapshot(self) -> dict:
        """What the page shows; asking counts as someone still looking at this job."""
        self.last_seen = time.monotonic()
        queue = None
        if self.status == "queued":
            at_most, expected = self.scheduler.position(self), self.scheduler.position(self, expected=True)
            queue = (*at_most, expected[1]) if at_most and expected else None
        running, queued = self.scheduler.counts()
        with self._lock:
            return {"status": self.status, "error": self.error, "history": list(self.history),
                    "progress": self.progress, "elapsed": time.time() - self.started, "queue": queue,
                    "stop_cause": self.stop_cause, "running_jobs": running, "queued_jobs": queued,
                    "slots": self.scheduler.policy.slots, "path": dict(self.path),
                    "time_left": self._time_left()}

    def _time_left(self) -> tuple[float, float] | None:
        """(seconds left in the running epoch, at most that many left in the run) from the pace so
        far; None before the first batch has finished. Call with the lock held."""
        epoch, batch, batches = self.progress
        if self.status != "running" or self._epoch_started is None or not batch or not epoch:
            return None
        return time_left(epoch, batch, batches, self.train_config.epochs,
                         time.monotonic() - self._epoch_started, self.history)

    # -- what the scheduler asks
    def elapsed_running(self) -> float:
        return time.monotonic() - self._running_since if self._running_since is not None else 0.0

    def pace(self) -> float | None:
        elapsed = self.elapsed_running()
        with self._lock:
            done = self._batches_done
        return done * self.train_config.batch_size / elapsed if done >= 5 and elapsed > 0 else None

    def estimated_seconds(self, expected: bool = False) -> float | None:
        """The whole job's duration if it runs all its epochs (an upper bound, as early stopping
        may end it sooner), or (`expected`) if it runs the share of its epochs that recent
        trainings on this server ran: from its own pace once it has run some batches, else from
        the pace of this server's recent jobs; None when nothing is known yet."""
        epochs = float(self.train_config.epochs)
        share = self.scheduler.typical_epoch_share() if expected else None
        with self._lock:
            _, _, per_epoch = self.progress
            done = self._batches_done
            epochs_done = max(len(self.history) - 1, 0)  # the history starts with epoch 0
        if share is not None:
            epochs = max(epochs * share, min(epochs_done + 1.0, epochs))
        if done >= 5 and per_epoch:
            estimate = self.elapsed_running() / done * per_epoch * epochs
        else:
            rate = self.scheduler.typical_rate()
            if rate is None:
                return None
            estimate = len(self.dataset.train) * epochs / rate
        limit = self.scheduler.policy.max_minutes
        return min(estimate, limit * 60) if limit else estimate

    def run_now(self, scheduler: TrainingScheduler) -> None:
        """Train (in the scheduler's thread); returns when finished, whatever happened."""
        try:
            if self._stop.is_set():
                self._finish("stopped")
                return
            with self._lock:
                self.status = "running"
                self._running_since = time.monotonic()
            flush_subnormals()  # this thread's own (afm.numerics); before its workers start
            with scheduler.budget.use("training") as self._lease:
                self._train(scheduler)
        except AFMError as exc:
            self._finish("failed", str(exc))
        except Exception as exc:  # noqa: BLE001 - shown to the user instead of a dead thread
            if is_out_of_memory(exc):
                self._finish("failed", "out of memory: lower the batch size or the embedding size, or use the CPU")
            else:
                traceback.print_exc()
                self._finish("failed", f"internal error: {type(exc).__name__}: {str(exc)[:300]}")

    def _train(self, scheduler: TrainingScheduler) -> None:
        limit = scheduler.policy.max_minutes
        deadline = time.monotonic() + limit * 60 if limit else None

        def should_stop() -> bool:
            if deadline is not None and time.monotonic() > deadline and not self._stop.is_set():
                self.request_stop("time budget")
            return self._stop.is_set()

        fitted = fit_recipe(self.recipe, self.dataset, init_from=self.init_from, callbacks=[self],
                            trackers=self.extra_callbacks, should_stop=should_stop, seed_process=False)
        self.run = Run.from_checkpoint(fitted.checkpoint, self.name, "trained", fresh=True)
        result = fitted.result
        if result.stop_reason in (StopReason.COMPLETED, StopReason.EARLY_STOPPING) and self.train_config.epochs:
            self.scheduler.record_epoch_share(result.epochs_run / self.train_config.epochs)
        if result.stop_reason is StopReason.DIVERGED:
            self._finish("failed", f"{result.problem}. The best epoch so far ({result.best_epoch}) was kept.")
        else:  # an untrained result is kept but said to be one (`error` carries the advice)
            self._finish("stopped" if result.stop_reason is StopReason.STOPPED else "done",
                         result.problem if result.untrained else None)

    def _finish(self, status: str, error: str | None = None) -> None:
        with self._lock:
            self.status, self.error = status, error
        self._done.set()


@dataclass
class FollowUp:
    """A training to start from a job's run once that job has finished as planned: the second step
    of a two-step recipe (the FM, then the AFM started from it), so the app runs both on one click."""

    name: str
    recipe: Recipe  # the second step's, without its start (the first step's run, named when it exists)
    callbacks: tuple = ()

    def start_after(self, job: TrainingJob) -> TrainingJob | None:
        """The started second job, or None when the first did not finish as planned (stopped, failed
        or taken out of the queue): a user who stopped step 1 did not ask for step 2."""
        if job.status != "done" or job.run is None:
            return None
        recipe = self.recipe.replace(pretrain=False, init_from=job.run.name)
        return TrainingJob(self.name, job.dataset, recipe, init_from=job.run.model, callbacks=self.callbacks,
                           scheduler=job.scheduler).start()


class TuningJob(TrainingJob):
    """An Optuna study (afm.tune) as one job: it takes one of the scheduler's slots for the whole
    study, the server's epoch cap bounds every trial and its minute cap the study. `model_config`
    and `train_config` follow the trial now training (its FM pretraining first, when it has one),
    `history` its epochs; `snapshot()["tuning"]` says the trial, the best so far and the time left.
    When it is done, `run` is the best trial's model and `tuned` the study (afm.tune.Tuned)."""

    def __init__(self, name: str, dataset: Dataset, model: str, trials: int, minutes: float, task: str = "regression",
                 seed: int = 0, device: str = "auto", k: int | None = None, epochs: int = 40,
                 scheduler: TrainingScheduler | None = None):
        from afm.tune import base_recipe

        self.base, self.fixed = base_recipe(model, task, seed, device, k, epochs)
        super().__init__(name, dataset, self.base, scheduler=scheduler)
        self.model, self.trials, self.minutes, self.k, self.epochs = model, trials, minutes, k, epochs
        self.tuned = None  # afm.tune.Tuned, once done
        self.trial_records: list[dict] = []
        self._tuning: tuple | None = None  # (the latest TuneProgress, when it came)

    def start(self) -> TuningJob:
        """Apply the server's caps (each trial's epochs, the study's minutes) and queue the job; the
        sizes a study tries vary: this checks the smallest, a larger trial that does not fit fails alone)."""
        from afm.tune import check_study

        check_study(self.dataset, self.base, self.fixed)
        policy = self.scheduler.policy
        if policy.max_epochs and self.epochs > policy.max_epochs:
            self.epochs = policy.max_epochs
            self.base = self.base.replace(epochs=self.epochs)
            self.set_recipe(self.base)
            self.notes.append(f"this server trains at most {policy.max_epochs} epochs per trial")
        if policy.max_minutes and self.minutes > policy.max_minutes:
            self.minutes = policy.max_minutes
            self.notes.append(f"this server gives a study at most {policy.max_minutes:g} minutes (the best trial "
                              "is kept)")
        self.scheduler.submit(self)
        return self

    def estimated_seconds(self, expected: bool = False) -> float | None:
        return self.minutes * 60.0  # the budget: what a study takes (it uses its time; trials that end start others)

    def on_trial(self, progress) -> None:
        """afm.tune's progress: a trial (or its FM pretraining) starts, or a trial has ended."""
        from afm.recipe import pretraining
        from afm.tune import trial_recipe

        with self._lock:
            self._tuning = (progress, time.monotonic())
            if progress.event == "trial_end":
                self.trial_records.append(dict(progress.record))
                return
            recipe = trial_recipe(progress.params, self.base)
            self.set_recipe(pretraining(recipe) if progress.event == "pretrain_start" else recipe)
            self.history, self.progress, self._epoch_started = [], (0, 0, 0), None

    def snapshot(self) -> dict:
        snapshot = super().snapshot()
        with self._lock:
            snapshot["tuning"] = self._tuning_state()
            snapshot["trial_records"] = list(self.trial_records)
        return snapshot

    def _tuning_state(self) -> dict | None:
        """The latest progress with its time left counted down to now. Call with the lock held."""
        if self._tuning is None:
            return None
        progress, when = self._tuning
        return {"trial": progress.trial, "trials": progress.trials, "best_value": progress.best_value,
                "best_trial": progress.best_trial, "event": progress.event,
                "seconds_left": max(0.0, progress.seconds_left - (time.monotonic() - when))}

    def _time_left(self) -> tuple[float, float] | None:
        """(seconds left in the running trial's epoch, at most that many left in the study)."""
        state = self._tuning_state()
        epoch = super()._time_left()
        if state is None or epoch is None:
            return None
        return epoch[0], state["seconds_left"]

    def _train(self, scheduler: TrainingScheduler) -> None:
        from afm.tune import tune

        train = self.train_config
        self.tuned = tune(self.dataset, self.model, self.trials, self.minutes, seed=train.seed, task=train.task,
                          device=train.device, k=self.k, epochs=self.epochs, callbacks=[self], progress=self.on_trial,
                          should_stop=self._stop.is_set, seed_process=False)
        self.run = Run.from_checkpoint(self.tuned.checkpoint, self.name, "tuned", fresh=True)
        self._finish("stopped" if self.tuned.stop_reason == "stopped" else "done")


def runs_table(runs: dict[str, Run]) -> pd.DataFrame:
    """One row per run: its settings and its best epoch's metrics, for comparing runs."""
    rows = []
    for name, run in runs.items():
        best = run.best
        rows.append({"run": name, "model": run.model_config.model.upper(), "data": run.trained_on.name,
                     "k": run.model_config.embedding_dim, "task": run.task, "epochs": max(len(run.history) - 1, 0),
                     "best_epoch": run.best_epoch,
                     **{key: best.get(key) for key in ("valid_rmse", "test_rmse", "valid_auc", "test_auc",
                                                        "valid_logloss", "test_logloss") if key in best},
                     "seconds": round(sum(r.get("seconds") or 0 for r in run.history), 1),
                     "lr": run.train_config.get("lr"), "batch_size": run.train_config.get("batch_size"),
                     "origin": run.origin})
    return pd.DataFrame(rows)


# The Data & model page's short list of the session's models (runs_table has the rest).
SESSION_COLUMNS = ("run", "model", "k", "data", "best_epoch", "valid_rmse", "test_rmse", "valid_auc", "test_auc",
                   "origin")


def session_table(runs: dict[str, Run]) -> pd.DataFrame:
    table = runs_table(runs)
    return table[[c for c in SESSION_COLUMNS if c in table.columns]]


def histories_frame(runs: dict[str, Run]) -> pd.DataFrame:
    """Every run's per-epoch history in one long table (coupling and replay details left out)."""
    frames = [history_frame(run.history).assign(run=name)
              for name, run in runs.items() if run.history]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


EPOCH_COLUMNS = ("epoch", "train_rmse", "valid_rmse", "test_rmse", "valid_auc", "test_auc", "valid_logloss",
                 "test_logloss", "seconds", "samples_per_second")


def epoch_table(history: list[dict]) -> pd.DataFrame:
    """The per-epoch numbers a person reads, in a sensible order, rounded; epoch 0 (before
    training) has no training numbers, shown as blanks."""
    table = pd.DataFrame(history)
    table = table[[c for c in EPOCH_COLUMNS if c in table.columns]].astype("float64").round(4)  # None -> blank
    if "samples_per_second" in table:
        table["samples_per_second"] = table["samples_per_second"].round(0)
    return table


def epoch_zero_note(model: str, init_from: str | None, match_fm: bool, num_pairs: int) -> str | None:
    """Why an AFM started from an FM begins worse than that FM (shown where its epoch 0 is)."""
    if model != "afm" or not init_from or match_fm:
        return None
    return (f"Epoch 0 is the FM's embeddings inside an AFM with near-uniform attention (a_ij ≈ 1/{num_pairs}) and, as "
            f"the authors start it, p = 1: the FM's pair sum is divided by P = {num_pairs}, so epoch 0 is worse than "
            "the FM it came from (and than a random start, whose pair terms are near zero). Training recovers the "
            f"scale within an epoch or two; *Start as the FM* (p = P = {num_pairs}) starts at the FM's own RMSE.")
