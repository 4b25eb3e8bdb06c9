"""Runs and background training jobs, for the app (no Streamlit in here).

A `Run` is a trained or loaded model with its configs and history. A `TrainingJob` trains one
in a background thread so the browser stays responsive: the page polls its progress, a stop
request ends it after the current batch, and the best epoch's weights are kept either way.
Each browser session owns its runs and jobs; nothing here is shared between sessions.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field

import pandas as pd
import torch

from afm.checkpoint import Checkpoint
from afm.data import Dataset
from afm.errors import AFMError
from afm.models import ModelConfig, PairwiseModel, build_model
from afm.train import TrainConfig, TrainingDiverged, train_model

# Training saturates the CPU: on a shared server one job at a time keeps every session usable.
_TRAINING_SLOTS = threading.BoundedSemaphore(1)


@dataclass
class Run(Checkpoint):
    """A checkpoint a session works with: trained here or loaded, with a name it is shown by."""

    name: str = ""
    source: str = ""  # "trained", "bundled" or "loaded: <file>"
    # Identifies the run's content for caches shared between sessions: the checkpoint's hash
    # for loaded ones (every session shares their analyses), a fresh id for trained ones.
    key: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, name: str, source: str, key: str | None = None,
                        fresh: bool = False) -> Run:
        """A session's own run. Unless the checkpoint is `fresh` (made for this run alone), it is
        copied: a cached checkpoint's model, history and configs are never shared."""
        own = checkpoint if fresh else checkpoint.copy()
        own.model.cpu().eval()
        fields_ = {f.name: getattr(own, f.name) for f in dataclasses.fields(Checkpoint)}
        return cls(**fields_, name=name, source=source, **({"key": key} if key else {}))


class TrainingJob:
    """Train in a thread; read `snapshot()` from the page, `request_stop()` from a button."""

    def __init__(self, name: str, dataset: Dataset, model_config: ModelConfig, train_config: TrainConfig,
                 init_from: PairwiseModel | None = None, init_from_name: str | None = None, callbacks=()):
        self.name = name
        self.dataset = dataset
        self.model_config = model_config
        self.train_config = train_config
        self.init_from = init_from
        self.init_from_name = init_from_name if init_from is not None else None
        self.extra_callbacks = list(callbacks)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.status = "queued"  # queued | running | done | stopped | failed
        self.error: str | None = None
        self.history: list[dict] = []
        self.progress = (0, 0, 0)  # epoch, batch, batches per epoch
        self.run: Run | None = None
        self.started = time.time()

    # -- the trainer's callback interface
    def on_batch_end(self, epoch: int, batch: int, num_batches: int) -> None:
        with self._lock:
            self.progress = (epoch, batch, num_batches)

    def on_epoch_end(self, record: dict) -> None:
        with self._lock:
            self.history.append(dict(record))

    # -- control
    def start(self) -> TrainingJob:
        self._thread = threading.Thread(target=self._work, name=f"train-{self.name}", daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def finished(self) -> bool:
        return self.status in ("done", "stopped", "failed")

    def snapshot(self) -> dict:
        with self._lock:
            return {"status": self.status, "error": self.error, "history": list(self.history),
                    "progress": self.progress, "elapsed": time.time() - self.started}

    def _work(self) -> None:
        with _TRAINING_SLOTS:
            if self._stop.is_set():
                self._finish("stopped")
                return
            with self._lock:
                self.status = "running"
            try:
                model = build_model(self.model_config, seed=self.train_config.seed)
                if self.init_from is not None:
                    model.init_from(self.init_from)
                callbacks = [self, *[make(model) for make in self.extra_callbacks]]
                result = train_model(model, self.dataset, self.train_config, callbacks=callbacks,
                                     should_stop=self._stop.is_set)
                self._keep(result)
                self._finish("stopped" if result.stop_reason == "stop_requested" else "done")
            except TrainingDiverged as exc:
                self._keep(exc.result)
                self._finish("failed", f"{exc} The best epoch so far ({exc.result.best_epoch}) was kept.")
            except AFMError as exc:
                self._finish("failed", str(exc))
            except torch.OutOfMemoryError:
                self._finish("failed", "out of memory: lower the batch size or the embedding size, or use the CPU")
            except Exception as exc:  # noqa: BLE001 - shown to the user instead of a dead thread
                traceback.print_exc()
                self._finish("failed", f"internal error: {type(exc).__name__}: {exc}")

    def _keep(self, result) -> None:
        checkpoint = Checkpoint.from_training(result, self.dataset, init_from=self.init_from_name)
        self.run = Run.from_checkpoint(checkpoint, self.name, "trained", fresh=True)

    def _finish(self, status: str, error: str | None = None) -> None:
        with self._lock:
            self.status, self.error = status, error


def runs_table(runs: dict[str, Run]) -> pd.DataFrame:
    """One row per run: its settings and its best epoch's metrics, for comparing runs."""
    rows = []
    for name, run in runs.items():
        best = run.best
        rows.append({"run": name, "model": run.model_config.model.upper(), "data": run.dataset.get("name"),
                     "k": run.model_config.embedding_dim, "task": run.task, "epochs": len(run.history) - 1,
                     "best_epoch": run.best_epoch,
                     **{key: best.get(key) for key in ("valid_rmse", "test_rmse", "valid_auc", "test_auc",
                                                        "valid_logloss", "test_logloss") if key in best},
                     "seconds": sum(r.get("seconds") or 0 for r in run.history),
                     "lr": run.train_config.get("lr"), "batch_size": run.train_config.get("batch_size")})
    return pd.DataFrame(rows)


def histories_frame(runs: dict[str, Run]) -> pd.DataFrame:
    """Every run's per-epoch history in one long table (coupling details left out)."""
    frames = [pd.DataFrame(run.history).drop(columns=["coupling"], errors="ignore").assign(run=name)
              for name, run in runs.items() if run.history]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


EPOCH_COLUMNS = ("epoch", "train_rmse", "valid_rmse", "test_rmse", "valid_auc", "test_auc", "valid_logloss",
                 "test_logloss", "seconds", "samples_per_second")


def epoch_table(history: list[dict]) -> pd.DataFrame:
    """The per-epoch numbers a person reads, in a sensible order, rounded; epoch 0 (before
    training) has no training numbers, shown as blanks."""
    table = pd.DataFrame(history)
    table = table[[c for c in EPOCH_COLUMNS if c in table.columns]].round(4)
    if "samples_per_second" in table:
        table["samples_per_second"] = table["samples_per_second"].round(0)
    return table
