"""Training loop: batches from the rows resident on the device or streamed from memory-mapped
arrays (afm.batches), per-epoch history, early stopping on validation, callbacks for live
progress and a stop request; under torchrun one model over several processes (afm.distributed).
What to train with (`TrainConfig`) and the path a training takes are `afm.training_plan`'s.

The objective per batch is the authors' (their TF code): 1/2 * sum_b (y_b - ŷ_b)^2 plus
1/2 * l2_attention * ||W||^2 on AFM's attention matrix. It is a sum over the batch, not a mean,
so `l2_attention` means exactly what their `lamda_attention` means; Adagrad and Adam are
invariant to the loss scale, so learning rates carry over too. The binary task sums
binary cross-entropy on logits instead. `l2_embedding` adds 1/2 * l2_embedding * (||v_i||^2 + w_i^2)
for each feature i the batch touches (once, however many rows hold it), as the authors' FM code and
BARS regularize embeddings: features a batch does not touch are left alone, so a step stays sparse.
Under torchrun it is scaled like the data term (a feature in two processes' halves counts twice).
"""

from __future__ import annotations

import copy
import enum
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from afm.batches import DeviceSplit, ResidentBatches, StreamedBatches
from afm.data import Dataset
from afm.distributed import OneProcess, ProcessGroup
from afm.inference import evaluate_split, split_outputs
from afm.metrics import SELECTION_METRIC, evaluate_predictions
from afm.models import PairwiseModel, regularized_parameters
from afm.numerics import full_speed_floats, warn_if_workers_keep_subnormals
from afm.row_adagrad import RowAdagrad
from afm.training_plan import OPTIMIZERS as OPTIMIZERS  # afm.train's names for the CLI and the app
from afm.training_plan import PRECISIONS as PRECISIONS
from afm.training_plan import TASKS as TASKS
from afm.training_plan import TrainConfig, TrainingPath, plan_training, resolve_device


def seed_everything(seed: int, deterministic: bool = False) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if deterministic:
        # cuBLAS needs this before its first use to be reproducible.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


class Callback(Protocol):
    """Hooks the trainer calls; the app uses them for live progress, the CLI for its log."""

    def on_batch_end(self, epoch: int, batch: int, num_batches: int) -> None: ...

    def on_epoch_end(self, record: dict) -> None: ...

    # Optional: `on_train_start(path)` with {"compiled", "distinct_pairs", "sparse_gradients"}, the
    # path this training takes, before its first step (which compiles, when compiled).


class StopReason(enum.StrEnum):
    """Why a training ended; the one vocabulary of results, checkpoints, the CLI and the app."""

    COMPLETED = "completed"  # every epoch asked for
    EARLY_STOPPING = "early_stopping"  # `patience` epochs without a better validation score
    STOPPED = "stopped"  # asked to stop: Ctrl-C, SIGTERM, the app's Stop button or its time limit
    DIVERGED = "diverged"  # the training loss became NaN or infinite

    @property
    def partial(self) -> bool:
        """Ended before its plan: the best epoch so far is what there is."""
        return self in (StopReason.STOPPED, StopReason.DIVERGED)


@dataclass
class TrainResult:
    model: PairwiseModel  # with the best epoch's weights restored
    history: list[dict]  # one record per epoch; epoch 0 is the model before training
    best_epoch: int
    stop_reason: StopReason
    device: str
    seconds: float  # wall time of the training epochs (evaluation excluded)
    samples_per_second: float  # training samples per second of training time
    config: TrainConfig = field(repr=False, default=None)
    compiled: bool = False  # whether the training forward ran through torch.compile
    distinct_pairs: bool = False  # whether training computed each distinct feature pair of a batch once
    world_size: int = 1  # processes that trained it together (torchrun)
    streamed: bool = False  # whether batches were streamed from the data (afm.batches)
    # What went wrong and what to change: with DIVERGED, and whenever no epoch did better than
    # epoch 0, the model before training (`untrained`), which is then the model returned.
    problem: str | None = None
    # Whether the starting point was itself a trained model (an AFM started as the FM it came from):
    # then an epoch 0 that no epoch beats is that model, kept as it is, not an untrained one.
    started_trained: bool = False

    @property
    def best(self) -> dict:
        return next(r for r in self.history if r["epoch"] == self.best_epoch)

    @property
    def untrained(self) -> bool:
        """Training ran one epoch or more and none did better than the starting point: the model
        returned (and saved) is the one training started from, never to be shown as trained."""
        return self.best_epoch == 0 and self.epochs_run >= 1 and not self.started_trained

    @property
    def epochs_run(self) -> int:
        return max(r["epoch"] for r in self.history)


DISTRIBUTED_STOP_CHECK_BATCHES = 16  # under DDP, a stop request is agreed on every this many batches


def make_optimizer(model: PairwiseModel, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adagrad":
        # TF's Adagrad as the authors used it starts its accumulator at 1e-8. RowAdagrad is torch's
        # Adagrad with a step that updates only the rows sparse embedding gradients name.
        return RowAdagrad(params, lr=config.lr, initial_accumulator_value=1e-8)
    return torch.optim.Adam(params, lr=config.lr)


def data_loss(predictions: torch.Tensor, targets: torch.Tensor, task: str) -> torch.Tensor:
    """The data term summed over rows: ½ Σ (ŷ - y)², or Σ binary cross-entropy on the logits."""
    if task == "binary":
        return F.binary_cross_entropy_with_logits(predictions, targets, reduction="sum")
    return 0.5 * (predictions - targets).square().sum()


def batch_objective(model: PairwiseModel, predictions: torch.Tensor, targets: torch.Tensor,
                    config: TrainConfig, data_weight: float = 1.0, ids: torch.Tensor | None = None) -> torch.Tensor:
    """The authors' per-batch objective (see the module docstring). `data_weight` scales the
    data term alone: N under DDP, whose gradient average over N processes then gives the sum
    over the global batch plus the regularizer's gradient once (afm.distributed). `ids`: the
    batch's feature ids (B, F), whose rows `l2_embedding` regularizes."""
    loss = data_loss(predictions, targets, config.task)
    if config.l2_embedding > 0 and ids is not None:
        touched = torch.unique(ids)  # (U,) each feature of the batch once
        penalty = model.embedding(touched).square().sum() + model.linear(touched).square().sum()
        loss = loss + 0.5 * config.l2_embedding * penalty
    if data_weight != 1.0:
        loss = data_weight * loss
    if config.l2_attention > 0:
        for weight in regularized_parameters(model):
            loss = loss + 0.5 * config.l2_attention * weight.square().sum()
    return loss


def train_model(model: PairwiseModel, dataset: Dataset, config: TrainConfig,
                callbacks: tuple[Callback, ...] | list[Callback] = (),
                should_stop: Callable[[], bool] | None = None, group: ProcessGroup | None = None) -> TrainResult:
    """Train `model` on `dataset.train`, select the epoch on `dataset.valid`, report `dataset.test`.

    The model's initial weights are whatever it was built with; seed before building it
    (`seed_everything`) for a reproducible run. With `group` (afm.distributed, under torchrun)
    this process trains its shard of the rows with `config.batch_size / world_size` rows a step,
    and all processes end with the same model. A training that diverges returns its best epoch
    with `stop_reason` DIVERGED and the `problem`. No step computes on subnormal floats (afm.numerics).
    """
    with full_speed_floats():
        warn_if_workers_keep_subnormals()
        group = group or OneProcess(resolve_device(config.device))
        path = plan_training(model, dataset, config, group.device, group.world_size, group.backend)
        return _Trainer(model, dataset, config, path, group, list(callbacks), should_stop).run()


class _Trainer:
    """One training: its batches, evaluation, best epoch and history (`train_model` runs it)."""

    def __init__(self, model: PairwiseModel, dataset: Dataset, config: TrainConfig, path: TrainingPath,
                 group: ProcessGroup, callbacks: list, should_stop: Callable[[], bool] | None):
        self.model, self.dataset, self.config, self.path, self.group = model, dataset, config, path, group
        self.callbacks, self.should_stop = callbacks, should_stop
        model.to(path.device)
        shard = group.training_shard(len(dataset.train))
        source = StreamedBatches if path.streamed else ResidentBatches
        self.batches = source(dataset.train, shard, path.device, config.task, path.batch_size, config.seed)
        # Resident single-process evaluation keeps each split on the device; otherwise rows are read
        # a chunk at a time, shared among the processes and the outputs gathered.
        self.resident = {name: DeviceSplit(dataset.splits[name], path.device, config.task)
                         for name in ("valid", "test")} if not path.streamed and group.world_size == 1 else None
        if path.sparse_gradients:
            torch.sparse.check_sparse_tensor_invariants.disable()  # the default, said explicitly: no warning
        path.set_up(model)
        wrapped = group.wrap(model)
        # The distinct-pair count U changes every batch: compile for any shape at once, not once per U.
        self.forward = torch.compile(wrapped, dynamic=True if path.distinct_pairs else None) if path.compiled \
            else wrapped
        self.optimizer = make_optimizer(model, config)
        self.metric, self.lower_is_better = SELECTION_METRIC[config.task]
        self.history: list[dict] = []
        self.best_epoch, self.best_value, self.best_state = 0, None, None
        self.train_seconds, self.samples_seen = 0.0, 0

    def run(self) -> TrainResult:
        for callback in self.callbacks:
            if hasattr(callback, "on_train_start"):
                callback.on_train_start(self.path.describe())
        self._keep(self._evaluate({"epoch": 0}))  # the starting point: live curves and trackers begin here
        for epoch in range(1, self.config.epochs + 1):
            record = self._epoch(epoch)
            if record is None:  # a partial epoch is not a comparable data point: the best full one stays
                return self._result(StopReason.STOPPED)
            if not math.isfinite(record["train_loss"]):
                self.history.append(record)
                return self._result(StopReason.DIVERGED, f"the training loss became {record['train_loss']} in "
                                    f"epoch {epoch}; lower the learning rate (now {self.config.lr}) or the "
                                    "embedding size")
            self._keep(self._evaluate(record))
            if epoch - self.best_epoch >= self.config.patience:
                return self._result(StopReason.EARLY_STOPPING)
        return self._result(StopReason.COMPLETED)

    def _epoch(self, epoch: int) -> dict | None:
        """One pass over this process's rows; its training numbers, or None when asked to stop."""
        model, config, world = self.model, self.config, self.group.world_size
        model.train()
        start = time.perf_counter()
        loss_sum = torch.zeros((), device=self.path.device)
        squared_error_sum = torch.zeros((), device=self.path.device)
        for batch, (ids, values, targets) in enumerate(self.batches.epoch(), start=1):
            predictions = self.forward(ids, values, self.path.distinct_pairs)  # (B,)
            loss = batch_objective(model, predictions, targets, config, data_weight=world, ids=ids)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            # Accumulated on the device: no host sync per batch.
            loss_sum += loss.detach()
            squared_error_sum += (predictions.detach() - targets).square().sum()
            for callback in self.callbacks:
                callback.on_batch_end(epoch, batch, self.batches.num_batches)
            if self._stop_requested(batch):
                return None
        if self.path.device.type == "cuda":
            torch.cuda.synchronize(self.path.device)
        seconds = time.perf_counter() - start
        rows = len(self.batches) * world
        self.train_seconds += seconds
        self.samples_seen += rows
        # Under DDP: each process's loss counts its data term N times and the regularizer once.
        loss_total, squared_error_total = self.group.sum([loss_sum.item() / world, squared_error_sum.item()])
        return {"epoch": epoch, "train_loss": loss_total / rows,
                "train_rmse": math.sqrt(squared_error_total / rows) if config.task == "regression" else None,
                "seconds": seconds, "samples_per_second": rows / seconds}

    def _stop_requested(self, batch: int) -> bool:
        asked = self.should_stop is not None and self.should_stop()
        if self.group.world_size == 1:
            return asked
        # Every process must stop after the same batch: ask them all, every few batches.
        if batch % DISTRIBUTED_STOP_CHECK_BATCHES and batch != self.batches.num_batches:
            return False
        return self.group.any(asked)

    def _evaluate(self, record: dict) -> dict:
        start = time.perf_counter()
        for name in ("valid", "test"):
            split = self.dataset.splits[name]
            if not len(split):
                continue
            if self.resident is not None:
                metrics = evaluate_split(self.model, self.resident[name], self.config.task, self.dataset.label_range,
                                         self.config.eval_batch_size)
            else:
                rows = self.group.evaluation_shard(len(split))
                local = split_outputs(self.model, split, self.path.device, rows, self.config.eval_batch_size)
                metrics = evaluate_predictions(self.group.gather(local, len(split)), split.labels,
                                               self.config.task, self.dataset.label_range)
            record.update({f"{name}_{key}": value for key, value in metrics.items()})
        record["eval_seconds"] = time.perf_counter() - start
        return record

    def _keep(self, record: dict) -> None:
        """Add an evaluated epoch to the history; keep its weights when it is the best so far."""
        self.history.append(record)
        value = record[f"valid_{self.metric}"]
        better = self.best_value is None or (value < self.best_value if self.lower_is_better
                                             else value > self.best_value)
        if better:
            self.best_epoch, self.best_value = record["epoch"], value
            self.best_state = copy.deepcopy(self.model.state_dict())
        for callback in self.callbacks:
            callback.on_epoch_end(record)

    def _result(self, reason: StopReason, problem: str | None = None) -> TrainResult:
        epochs = sum(1 for r in self.history if r["epoch"] >= 1)
        if problem is None and self.best_epoch == 0 and epochs:
            problem = (f"no epoch did better than the starting model (epoch 0, validation {self.metric} "
                       f"{self.best_value:.6g}) in {epochs} epoch{'s' if epochs > 1 else ''}: the model is the one "
                       f"training started from, not a trained one; raise the learning rate (now {self.config.lr}) "
                       "or the epochs, or check the labels")
        model = self.model
        model.load_state_dict(self.best_state)
        self.path.tear_down(model)
        rate = self.samples_seen / self.train_seconds if self.train_seconds > 0 else 0.0
        return TrainResult(model, self.history, self.best_epoch, reason, str(self.path.device), self.train_seconds,
                           rate, self.config, compiled=self.path.compiled, distinct_pairs=self.path.distinct_pairs,
                           world_size=self.group.world_size, streamed=self.path.streamed, problem=problem)
