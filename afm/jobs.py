"""Runs and background training jobs, for the app (no Streamlit in here).

A `Run` is a trained or loaded model with its configs and history. A `TrainingJob` trains one
in a background thread so the browser stays responsive: the page polls its progress, a stop
request ends it after the current batch, and the best epoch's weights are kept either way.
Each browser session owns its runs and jobs; nothing here is shared between sessions.
"""

from __future__ import annotations

import copy
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field

import pandas as pd
import torch

from afm.checkpoint import Checkpoint, checkpoint_bytes
from afm.data import Dataset, FieldSchema
from afm.errors import AFMError
from afm.models import ModelConfig, PairwiseModel, build_model
from afm.train import TrainConfig, TrainingDiverged, seed_everything, train_model

# Training saturates the CPU: on a shared server one job at a time keeps every session usable.
_TRAINING_SLOTS = threading.BoundedSemaphore(1)


@dataclass
class Run:
    name: str
    model: PairwiseModel  # on the CPU, eval mode
    model_config: ModelConfig
    train_config: dict
    history: list[dict]
    schema: FieldSchema
    dataset: dict  # name, fingerprint, label_range, source
    source: str  # "trained" or "loaded: <file>"
    key: str = field(default_factory=lambda: uuid.uuid4().hex)  # unique across sessions: cache keys use it

    @property
    def best_epoch(self) -> int | None:
        return self.train_config.get("best_epoch")

    @property
    def best(self) -> dict:
        best = self.best_epoch
        return next((r for r in self.history if r["epoch"] == best), self.history[-1] if self.history else {})

    @property
    def task(self) -> str:
        return self.train_config.get("task", "regression")

    def checkpoint_bytes(self) -> bytes:
        return checkpoint_bytes(self.model, train_config=self.train_config, history=self.history, schema=self.schema,
                                dataset=self.dataset)

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, name: str, source: str) -> Run:
        model = copy.deepcopy(checkpoint.model).cpu().eval()  # never share a cached model object
        return cls(name, model, checkpoint.model_config, checkpoint.train_config, checkpoint.history,
                   checkpoint.schema, checkpoint.dataset, source)


class TrainingJob:
    """Train in a thread; read `snapshot()` from the page, `request_stop()` from a button."""

    def __init__(self, name: str, dataset: Dataset, model_config: ModelConfig, train_config: TrainConfig,
                 init_from: PairwiseModel | None = None, callbacks=()):
        self.name = name
        self.dataset = dataset
        self.model_config = model_config
        self.train_config = train_config
        self.init_from = init_from
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
                seed_everything(self.train_config.seed)
                model = build_model(self.model_config)
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
        train_config = {**self.train_config.to_dict(), "best_epoch": result.best_epoch,
                        "stop_reason": result.stop_reason, "device_used": result.device,
                        "init_from": "a pretrained run" if self.init_from is not None else None}
        model = result.model.cpu().eval()
        self.run = Run(self.name, model, self.model_config, train_config, result.history, self.dataset.schema,
                       self.dataset.info(), "trained")

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
