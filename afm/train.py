"""Training loop: batches from the rows resident on the device or streamed from memory-mapped
arrays (afm.batches), per-epoch history, early stopping on validation, callbacks for live
progress and a stop request; under torchrun one model over several processes (afm.distributed).

The objective per batch is the authors' (their TF code): 1/2 * sum_b (y_b - ŷ_b)^2 plus
1/2 * l2_attention * ||W||^2 on AFM's attention matrix. It is a sum over the batch, not a mean,
so `l2_attention` means exactly what their `lamda_attention` means; Adagrad and Adam are
invariant to the loss scale, so learning rates carry over too. The binary task sums
binary cross-entropy on logits instead.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from afm.batches import DeviceSplit, ResidentBatches, StreamedBatches, is_memory_mapped, window_rows
from afm.data import Dataset, Split
from afm.errors import AFMError, ConfigError
from afm.limits import MEMORY_FRACTION, available_memory_bytes, rows_within
from afm.metrics import SELECTION_METRIC, evaluate_predictions
from afm.models import MODEL_CLASSES, ModelConfig, PairwiseModel, parameter_count, regularized_parameters
from afm.numerics import full_speed_floats, warn_if_workers_keep_subnormals

if TYPE_CHECKING:
    from afm.distributed import ProcessGroup

TASKS = ("regression", "binary")
OPTIMIZERS = ("adagrad", "adam")


@dataclass
class TrainConfig:
    """How to train. Saved inside every checkpoint beside the model config."""

    task: str = "regression"  # "regression" (squared loss, RMSE) | "binary" (log loss, AUC)
    epochs: int = 20  # upper bound; early stopping usually ends sooner
    batch_size: int = 128  # the paper: 128 on Frappe, 4096 on MovieLens
    lr: float = 0.015  # authors' Frappe AFM value (issue #7 of their repository)
    optimizer: str = "adagrad"  # the paper's; "adam" also offered
    l2_attention: float = 0.0  # λ on AFM's attention W, the authors' lamda_attention
    patience: int = 5  # stop after this many epochs without a better validation metric
    seed: int = 0  # model init, batch order and dropout masks
    device: str = "auto"  # "auto" picks cuda when present
    deterministic: bool = False  # torch.use_deterministic_algorithms for bit-stable reruns
    eval_batch_size: int = 16384  # rows per forward pass when evaluating
    # Adagrad only: embedding gradients as sparse rows, so a step touches only the batch's
    # features instead of the whole table. Same updates as dense Adagrad (a zero gradient row
    # changes neither its accumulator nor its weights). "auto": for tables of 20,000+ features,
    # where it pays (MovieLens-tag's 90,445: 1.6-16x faster); on Frappe's 5,382 dense is ~8 % faster.
    sparse_embeddings: str = "auto"
    # torch.compile the training step's forward: "on", "off", or "auto" = when it pays, i.e. on
    # CUDA, or on the CPU for the distinct-pair path or batches of 1,024+ (elementwise work dominates
    # there), and only for runs of a million samples or more (compiling costs 5-30 s up front);
    # never on the CPU where sparse embedding gradients apply (they win). See docs/benchmarks.md.
    compile: str = "auto"
    # FwFM and AFM on one-hot rows (every x = 1): compute each distinct feature pair of a batch once
    # and pool rows from that table, never building the (B, P, k) tensor. Same function and gradients
    # (tested). "auto": when every training value is 1 and the model's `distinct_pairs_pay` (large
    # k and t, or large batches); "on": whenever every training value is 1; "off": the plain path.
    distinct_pairs: str = "auto"
    # Batches streamed from the data in shuffled blocks (afm.batches) instead of all rows moved
    # to the device: "auto" = when the training rows are memory-mapped arrays (`afm encode`).
    stream: str = "auto"

    def __post_init__(self):
        checks = [
            (self.task in TASKS, f"task must be one of {TASKS}"),
            (isinstance(self.epochs, int) and 0 <= self.epochs <= 10_000, "epochs must be in 0..10000"),
            (isinstance(self.batch_size, int) and 1 <= self.batch_size <= 1_000_000, "batch size must be in 1..1e6"),
            (isinstance(self.lr, (int, float)) and 0 < self.lr < 100 and math.isfinite(self.lr),
             "lr must be in (0, 100)"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
            (isinstance(self.l2_attention, (int, float)) and self.l2_attention >= 0
             and math.isfinite(self.l2_attention), "l2_attention must be >= 0"),
            (isinstance(self.patience, int) and self.patience >= 1, "patience must be >= 1"),
            (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
             "device must be auto, cpu or cuda"),
            (isinstance(self.eval_batch_size, int) and self.eval_batch_size >= 1, "eval batch size must be >= 1"),
            (self.compile in ("auto", "on", "off"), "compile must be auto, on or off"),
            (self.sparse_embeddings in ("auto", "on", "off"), "sparse_embeddings must be auto, on or off"),
            (self.distinct_pairs in ("auto", "on", "off"), "distinct_pairs must be auto, on or off"),
            (self.stream in ("auto", "on", "off"), "stream must be auto, on or off"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for, but PyTorch sees no CUDA GPU here; use --device cpu")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if deterministic:
        # cuBLAS needs this before its first use to be reproducible.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


@torch.no_grad()
@full_speed_floats()  # no subnormal arithmetic, in whichever thread scores (afm.numerics)
def predict(model: PairwiseModel, feature_ids: torch.Tensor, feature_values: torch.Tensor,
            batch_size: int = 16384) -> np.ndarray:
    """Raw model outputs without dropout, in batches of at most `batch_size` rows that also keep
    the activations within the pair-slot budget (many fields make each row costly)."""
    one_hot = bool((feature_values == 1).all())
    batch_size = rows_within(model.floats_per_row(model.config, training=False, one_hot=one_hot), cap=batch_size)
    outputs = [model.inference(feature_ids[i:i + batch_size], feature_values[i:i + batch_size])
               for i in range(0, feature_ids.shape[0], batch_size)]
    return torch.cat(outputs).float().cpu().numpy() if outputs else np.zeros(0, dtype=np.float32)


def predict_rows(model: PairwiseModel, split: Split, device: torch.device, rows: range | None = None,
                 batch_size: int = 16384) -> np.ndarray:
    """Raw outputs for `rows` of a split in memory or memory-mapped, `batch_size` rows at a time
    copied to the device: memory holds one chunk of rows and the float32 outputs."""
    rows = rows if rows is not None else range(len(split))
    outputs = np.empty(len(rows), dtype=np.float32)
    for start in range(rows.start, rows.stop, batch_size):
        stop = min(start + batch_size, rows.stop)
        ids = torch.from_numpy(np.array(split.feature_ids[start:stop])).to(device)  # (b, F)
        values = torch.from_numpy(np.array(split.feature_values[start:stop])).to(device)  # (b, F)
        outputs[start - rows.start:stop - rows.start] = predict(model, ids, values, batch_size)
    return outputs


def evaluate_split(model: PairwiseModel, split: DeviceSplit, task: str, label_range,
                   batch_size: int = 16384) -> dict[str, float]:
    predictions = predict(model, split.feature_ids, split.feature_values, batch_size)
    return evaluate_predictions(predictions, split.labels, task, label_range)


class Callback(Protocol):
    """Hooks the trainer calls; the app uses them for live progress, the CLI for its log."""

    def on_batch_end(self, epoch: int, batch: int, num_batches: int) -> None: ...

    def on_epoch_end(self, record: dict) -> None: ...

    # Optional: `on_train_start(path)` with {"compiled", "distinct_pairs", "sparse_gradients"}, the
    # path this training takes, before its first step (which compiles, when compiled).


@dataclass
class TrainResult:
    model: PairwiseModel  # with the best epoch's weights restored
    history: list[dict]  # one record per epoch; epoch 0 is the model before training
    best_epoch: int
    stop_reason: str  # "completed" | "early_stopping" | "stop_requested" | "diverged"
    device: str
    seconds: float  # wall time of the training epochs (evaluation excluded)
    samples_per_second: float  # training samples per second of training time
    config: TrainConfig = field(repr=False, default=None)
    compiled: bool = False  # whether the training forward ran through torch.compile
    distinct_pairs: bool = False  # whether training computed each distinct feature pair of a batch once
    world_size: int = 1  # processes that trained it together (torchrun)
    streamed: bool = False  # whether batches were streamed from the data (afm.batches)

    @property
    def best(self) -> dict:
        return next(r for r in self.history if r["epoch"] == self.best_epoch)

    @property
    def epochs_run(self) -> int:
        return max(r["epoch"] for r in self.history)


class TrainingDiverged(AFMError):
    """The loss became NaN or infinite. `result` holds the best model up to then."""

    def __init__(self, message: str, result: TrainResult):
        super().__init__(message)
        self.result = result


@dataclass
class MemoryPlan:
    """What one training needs at its peak, in bytes, by part; known before anything is built."""

    parts: dict[str, int]
    batch_size: int
    per_row_bytes: int  # activations of one training row

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def largest(self) -> tuple[str, int]:
        return max(self.parts.items(), key=lambda item: item[1])


def plan_training_memory(model_config: ModelConfig, config: TrainConfig, rows: int) -> MemoryPlan:
    """Weights, their gradients, the optimizer's state and the best epoch's copy; one batch's
    activations; the data on the device. An upper bound (sparse gradients need less)."""
    weights = parameter_count(model_config) * 4
    state = weights * (2 if config.optimizer == "adam" else 1)
    model_class = MODEL_CLASSES[model_config.model]
    batch = max(1, min(config.batch_size, rows))
    per_row = model_class.floats_per_row(model_config, training=True) * 4
    parts = {"weights": weights, "gradients": weights, "optimizer state": state, "best-epoch copy": weights,
             "activations of one batch": batch * per_row,
             "data on the device": rows * model_config.num_fields * 12 + rows * 4}
    return MemoryPlan(parts, batch, per_row)


def check_training_memory(model_config: ModelConfig, config: TrainConfig, rows: int) -> MemoryPlan:
    """Refuse, with what to change, a training that cannot fit the memory available now."""
    device = resolve_device(config.device)
    plan = plan_training_memory(model_config, config, rows)
    if device.type == "cuda":
        available = torch.cuda.mem_get_info(device)[0]
        where = f"{torch.cuda.get_device_name(device)} has free"
    else:
        available, where = available_memory_bytes(), "this machine has available"
    budget = int(MEMORY_FRACTION * available)
    if plan.total <= budget:
        return plan
    part, size = plan.largest()
    advice = {"activations of one batch": _batch_advice(plan, budget, model_config),
              "data on the device": "use fewer rows, or train on the CPU"}.get(
        part, f"lower k (now {model_config.embedding_dim}) or the number of feature ids "
              f"({model_config.num_features:,}: remap sparse ids to 0..n-1)")
    raise ConfigError(f"this training needs about {_size(plan.total)} ({part}: {_size(size)}) but {where} "
                      f"{_size(available)} (we plan with {MEMORY_FRACTION:.0%} of it); {advice}")


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 1024**3:.1f} GB" if num_bytes >= 1024**3 else f"{num_bytes / 1024**2:.0f} MB"


def _batch_advice(plan: MemoryPlan, budget: int, model_config: ModelConfig) -> str:
    room = budget - (plan.total - plan.parts["activations of one batch"])
    fits = room // plan.per_row_bytes
    shape = (f"{model_config.num_pairs:,} pairs" if model_config.model != "fm" else f"{model_config.num_fields} "
             "fields")
    if fits >= 1:
        return f"lower the batch size to {int(fits):,} or less (each row holds {shape} x k)"
    return f"even one row of {shape} does not fit: lower k or t, or use fewer fields"


SPARSE_MIN_FEATURES = 20_000
DISTRIBUTED_STOP_CHECK_BATCHES = 16  # under DDP, a stop request is agreed on every this many batches
COMPILE_MIN_CPU_BATCH = 1024
COMPILE_MIN_SAMPLES = 1_000_000


def should_compile(config: TrainConfig, device: torch.device, train_rows: int, distinct_pairs: bool = False,
                   sparse_wanted: bool = False) -> bool:
    """On the CPU the plain path pays from batches of 1,024; the distinct-pair path at any batch size
    (its gathers, ReLU and pooling fuse: 1.2-1.5x at batch 128, 1.5-1.8x at 1,024-4,096). Not on the
    CPU where sparse embedding gradients are wanted (large tables): a compiled step keeps them dense,
    and on MovieLens-tag's 90,445 x 256 table the sparse eager step is 2.2-3.3x the compiled one."""
    if config.compile != "auto":
        return config.compile == "on"
    long_run = config.epochs * train_rows >= COMPILE_MIN_SAMPLES
    if device.type != "cuda" and sparse_wanted:
        return False
    return long_run and (device.type == "cuda" or distinct_pairs or config.batch_size >= COMPILE_MIN_CPU_BATCH)


def wants_sparse_gradients(model_config: ModelConfig, config: TrainConfig) -> bool:
    """Sparse embedding gradients where they pay: Adagrad on tables of SPARSE_MIN_FEATURES+ rows
    (only the rows a batch touches are updated), or when asked for."""
    wanted = config.sparse_embeddings == "on" or (config.sparse_embeddings == "auto"
                                                  and model_config.num_features >= SPARSE_MIN_FEATURES)
    return wanted and config.optimizer == "adagrad"


def uses_distinct_pairs(model: PairwiseModel, config: TrainConfig, train: Split, batch_size: int) -> bool:
    """Whether to train through the distinct-pair path (`batch_size`: rows per process and step).
    Checked once on the training rows, not per batch (a check per batch would sync a GPU every step)."""
    wanted = config.distinct_pairs == "on" or (config.distinct_pairs == "auto"
                                               and model.distinct_pairs_pay(model.config, batch_size))
    return wanted and model.computes_distinct_pairs and train.one_hot


def make_optimizer(model: PairwiseModel, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adagrad":
        # TF's Adagrad as the authors used it starts its accumulator at 1e-8.
        return torch.optim.Adagrad(params, lr=config.lr, initial_accumulator_value=1e-8)
    return torch.optim.Adam(params, lr=config.lr)


def batch_objective(model: PairwiseModel, predictions: torch.Tensor, targets: torch.Tensor,
                    config: TrainConfig, data_weight: float = 1.0) -> torch.Tensor:
    """The authors' per-batch objective (see the module docstring). `data_weight` scales the
    data term alone: N under DDP, whose gradient average over N processes then gives the sum
    over the global batch plus the regularizer's gradient once (afm.distributed)."""
    if config.task == "binary":
        loss = F.binary_cross_entropy_with_logits(predictions, targets, reduction="sum")
    else:
        loss = 0.5 * (predictions - targets).square().sum()
    if data_weight != 1.0:
        loss = data_weight * loss
    if config.l2_attention > 0:
        for weight in regularized_parameters(model):
            loss = loss + 0.5 * config.l2_attention * weight.square().sum()
    return loss


def uses_streaming(dataset: Dataset, config: TrainConfig) -> bool:
    if config.stream != "auto":
        return config.stream == "on"
    return is_memory_mapped(dataset.train)


def rows_on_device(dataset: Dataset, config: TrainConfig, group: ProcessGroup | None = None) -> int:
    """Rows the training holds at once, for the memory plan: every row (or this process's shard)
    when resident; three windows and an evaluation chunk when streamed."""
    if uses_streaming(dataset, config):
        return 3 * window_rows(dataset.schema.num_fields) + config.eval_batch_size
    world = group.world_size if group is not None else 1
    return sum(len(s) for s in dataset.splits.values()) // world


def train_model(model: PairwiseModel, dataset: Dataset, config: TrainConfig,
                callbacks: tuple[Callback, ...] | list[Callback] = (),
                should_stop: Callable[[], bool] | None = None, group: ProcessGroup | None = None) -> TrainResult:
    """Train `model` on `dataset.train`, select the epoch on `dataset.valid`, report `dataset.test`.

    The model's initial weights are whatever it was built with; seed before building it
    (`seed_everything`) for a reproducible run. With `group` (afm.distributed, under torchrun)
    this process trains its shard of the rows with `config.batch_size / world_size` rows a step,
    and all processes end with the same model. No step computes on subnormal floats (afm.numerics).
    """
    with full_speed_floats():
        warn_if_workers_keep_subnormals()
        return _train(model, dataset, config, callbacks, should_stop, group)


def _train(model: PairwiseModel, dataset: Dataset, config: TrainConfig, callbacks, should_stop,
           group: ProcessGroup | None) -> TrainResult:
    if config.task == "binary" and not dataset.is_binary:
        raise ConfigError("the binary task needs labels in {0, 1} or {-1, +1}; use --task regression")
    world = group.world_size if group is not None else 1
    if config.batch_size % world:
        raise ConfigError(f"--batch-size {config.batch_size} must divide evenly over the {world} processes")
    device = group.device if group is not None else resolve_device(config.device)
    streamed = uses_streaming(dataset, config)
    check_training_memory(model.config, config, rows_on_device(dataset, config, group))
    if len(dataset.train) < world or len(dataset.valid) == 0:
        raise ConfigError("training and validation splits must not be empty")
    model.to(device)
    batch_size = config.batch_size // world
    shard = group.training_shard(len(dataset.train)) if group is not None else range(len(dataset.train))
    source = StreamedBatches if streamed else ResidentBatches
    train = source(dataset.train, shard, device, config.task, batch_size, config.seed)
    # Resident single-process evaluation keeps each split on the device; otherwise rows are read
    # a chunk at a time, shared among the processes and the outputs gathered.
    resident = {name: DeviceSplit(dataset.splits[name], device, config.task) for name in ("valid", "test")} \
        if not streamed and group is None else None
    label_range = dataset.label_range
    metric_name, lower_is_better = SELECTION_METRIC[config.task]
    distinct = uses_distinct_pairs(model, config, dataset.train, batch_size)
    wanted = wants_sparse_gradients(model.config, config)
    # Under DDP, compiling is asked for explicitly only (its graph breaks at every gradient bucket).
    compiled = should_compile(config, device, len(train), distinct, wanted) and \
        (group is None or config.compile == "on")
    # Sparse gradients do not go through the compiler (a compiled step keeps dense ones), nor
    # through NCCL (it has no sparse all-reduce).
    sparse = wanted and not compiled and (group is None or group.backend == "gloo")
    if sparse:
        torch.sparse.check_sparse_tensor_invariants.disable()  # the default, said explicitly: no warning
    model.embedding.sparse = model.linear.sparse = sparse
    wrapped = group.wrap(model) if group is not None else model
    # The distinct-pair count U changes every batch: compile for any shape at once, not once per U.
    forward = torch.compile(wrapped, dynamic=True if distinct else None) if compiled else wrapped
    optimizer = make_optimizer(model, config)
    num_batches = train.num_batches
    rows_per_epoch = len(train) * world

    def evaluate_all(record: dict) -> dict:
        start = time.perf_counter()
        for name in ("valid", "test"):
            split = dataset.splits[name]
            if not len(split):
                continue
            if resident is not None:
                metrics = evaluate_split(model, resident[name], config.task, label_range, config.eval_batch_size)
            else:
                rows = group.evaluation_shard(len(split)) if group is not None else range(len(split))
                outputs = predict_rows(model, split, device, rows, config.eval_batch_size)
                outputs = group.gather(outputs, len(split)) if group is not None else outputs
                metrics = evaluate_predictions(outputs, split.labels, config.task, label_range)
            record.update({f"{name}_{key}": value for key, value in metrics.items()})
        record["eval_seconds"] = time.perf_counter() - start
        return record

    def is_better(value: float, best: float) -> bool:
        return value < best if lower_is_better else value > best

    def stop_requested(batch: int) -> bool:
        if group is None:
            return should_stop is not None and should_stop()
        # Every process must stop after the same batch: ask them all, every few batches.
        if batch % DISTRIBUTED_STOP_CHECK_BATCHES and batch != num_batches:
            return False
        return group.any(should_stop is not None and should_stop())

    path = {"compiled": compiled, "distinct_pairs": distinct, "sparse_gradients": sparse}
    for callback in callbacks:
        if hasattr(callback, "on_train_start"):
            callback.on_train_start(path)
    history = [evaluate_all({"epoch": 0})]
    for callback in callbacks:  # the starting point, so live curves and trackers begin at epoch 0
        callback.on_epoch_end(history[0])
    best_epoch, best_value = 0, history[0][f"valid_{metric_name}"]
    best_state = copy.deepcopy(model.state_dict())
    train_seconds, samples_seen, stop_reason = 0.0, 0, "completed"

    def result(reason: str) -> TrainResult:
        model.load_state_dict(best_state)
        model.embedding.sparse = model.linear.sparse = False
        return TrainResult(model, history, best_epoch, reason, str(device), train_seconds,
                           samples_seen / train_seconds if train_seconds > 0 else 0.0, config, compiled=compiled,
                           distinct_pairs=distinct, world_size=world, streamed=streamed)

    for epoch in range(1, config.epochs + 1):
        model.train()
        start = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        squared_error_sum = torch.zeros((), device=device)
        stopped = False
        for batch, (ids, values, targets) in enumerate(train.epoch(), start=1):
            predictions = forward(ids, values, distinct)  # (B,)
            loss = batch_objective(model, predictions, targets, config, data_weight=world)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # Accumulated on the device: no host sync per batch.
            loss_sum += loss.detach()
            squared_error_sum += (predictions.detach() - targets).square().sum()
            for callback in callbacks:
                callback.on_batch_end(epoch, batch, num_batches)
            if stop_requested(batch):
                stopped = True
                break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        if stopped:
            # A partial epoch is not a comparable data point; keep the best full epoch.
            return result("stop_requested")
        train_seconds += seconds
        samples_seen += rows_per_epoch
        # Under DDP: each process's loss counts its data term N times and the regularizer once.
        loss_total, squared_error_total = (loss_sum.item(), squared_error_sum.item()) if group is None \
            else group.sum([loss_sum.item() / world, squared_error_sum.item()])
        record = {"epoch": epoch, "train_loss": loss_total / rows_per_epoch,
                  "train_rmse": math.sqrt(squared_error_total / rows_per_epoch) if config.task == "regression"
                  else None,
                  "seconds": seconds, "samples_per_second": rows_per_epoch / seconds}
        if not math.isfinite(record["train_loss"]):
            history.append(record)
            raise TrainingDiverged(
                f"the training loss became {record['train_loss']} in epoch {epoch}; lower the learning rate "
                f"(now {config.lr}) or the embedding size", result("diverged"))
        history.append(evaluate_all(record))
        value = record[f"valid_{metric_name}"]
        if is_better(value, best_value):
            best_epoch, best_value = epoch, value
            best_state = copy.deepcopy(model.state_dict())
        for callback in callbacks:
            callback.on_epoch_end(record)
        if epoch - best_epoch >= config.patience:
            stop_reason = "early_stopping"
            break
    return result(stop_reason)
