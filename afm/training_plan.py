"""What a training is asked to do (`TrainConfig`, saved in every checkpoint), and before it runs:
the checks that fail at once with what to change (the device, memory, the batch over the
processes, the labels for the task, labels that are all one value), and the path it takes
(batches streamed or resident, distinct pairs, sparse embedding gradients, compiled).
`train_model` makes both through `plan_training`; the app's job calls `preflight` when it is
queued, so that a training that cannot run says so before it waits in line."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import torch

from afm.batches import is_memory_mapped, window_rows
from afm.data import Dataset, Split
from afm.errors import ConfigError, DataError, quote
from afm.limits import MEMORY_FRACTION, available_memory_bytes
from afm.models import MODEL_CLASSES, ModelConfig, PairwiseModel, parameter_count

SPARSE_MIN_FEATURES = 20_000
COMPILE_MIN_SAMPLES = 1_000_000

TASKS = ("regression", "binary")
OPTIMIZERS = ("adagrad", "adam")
PRECISIONS = ("float32", "bfloat16")


@dataclass
class TrainConfig:
    """How to train. Saved inside every checkpoint beside the model config."""

    task: str = "regression"  # "regression" (squared loss, RMSE) | "binary" (log loss, AUC)
    epochs: int = 20  # upper bound; early stopping usually ends sooner
    batch_size: int = 128  # the paper: 128 on Frappe, 4096 on MovieLens
    lr: float = 0.015  # authors' Frappe AFM value (issue #7 of their repository)
    optimizer: str = "adagrad"  # the paper's; "adam" also offered
    l2_attention: float = 0.0  # λ on AFM's attention W, the authors' lamda_attention
    l2_embedding: float = 0.0  # λ on the embeddings and first-order weights of the rows a batch touches
    patience: int = 5  # stop after this many epochs without a better validation metric
    seed: int = 0  # model init, batch order and dropout masks
    device: str = "auto"  # "auto" picks cuda when present
    deterministic: bool = False  # torch.use_deterministic_algorithms for bit-stable reruns
    eval_batch_size: int = 16384  # rows per forward pass when evaluating
    # Adagrad only: embedding gradients as sparse rows, so a step touches only the batch's
    # features instead of the whole table (afm.row_adagrad). Same updates as dense Adagrad (a zero
    # gradient row changes neither its accumulator nor its weights). "auto": where a batch touches
    # at most half the table on the CPU (Frappe, batch 128: 1,280 of 5,382 rows), and for tables of
    # 20,000+ features anywhere (MovieLens-tag's 90,445: 1.6-16x faster); dense otherwise.
    sparse_embeddings: str = "auto"
    # torch.compile the training step's forward: "on", "off", or "auto" = on CUDA for runs of a
    # million samples or more (compiling costs 5-30 s up front); never on the CPU, where whole
    # epochs were no faster compiled (afm.training_plan.should_compile, docs/benchmarks.md).
    compile: str = "auto"
    # FwFM and AFM on one-hot rows (every x = 1): compute each distinct feature pair of a batch once
    # and pool rows from that table, never building the (B, P, k) tensor. Same function and gradients
    # (tested). "auto": when every training value is 1 and the model's `distinct_pairs_pay` (large
    # k and t, or large batches); "on": whenever every training value is 1; "off": the plain path.
    distinct_pairs: str = "auto"
    # Batches streamed from the data in shuffled blocks (afm.batches) instead of all rows moved
    # to the device: "auto" = when the training rows are memory-mapped arrays (`afm encode`).
    stream: str = "auto"
    # AFM's attention network in training steps (W e + b and h^T ReLU(.), the step's three large
    # matrix products): "float32", or "bfloat16", whose products run 2x float32's on CPUs with
    # AVX512-BF16 or AMX and on GPUs (scores, softmax, pooling, gradients' sums and the weights stay
    # float32; evaluation and every analysis compute in float32). Paper recipe on Frappe: docs/benchmarks.md.
    precision: str = "float32"

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
            (isinstance(self.l2_embedding, (int, float)) and self.l2_embedding >= 0
             and math.isfinite(self.l2_embedding), "l2_embedding must be >= 0"),
            (isinstance(self.patience, int) and self.patience >= 1, "patience must be >= 1"),
            (isinstance(self.seed, int) and 0 <= self.seed < 2**32, "seed must be in 0..4294967295"),
            (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
             "device must be auto, cpu or cuda"),
            (isinstance(self.eval_batch_size, int) and self.eval_batch_size >= 1, "eval batch size must be >= 1"),
            (self.compile in ("auto", "on", "off"), "compile must be auto, on or off"),
            (self.sparse_embeddings in ("auto", "on", "off"), "sparse_embeddings must be auto, on or off"),
            (self.distinct_pairs in ("auto", "on", "off"), "distinct_pairs must be auto, on or off"),
            (self.stream in ("auto", "on", "off"), "stream must be auto, on or off"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict:
        return asdict(self)



def resolve_device(name: str) -> torch.device:
    """The device `name` (auto, cpu, cuda or cuda:N) stands for here; anything else, or a GPU
    this machine lacks, is a ConfigError."""
    if not isinstance(name, str) or not (name in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:[0-9]{1,4}", name)):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {quote(name)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for, but PyTorch sees no CUDA GPU here; use --device cpu")
    count = torch.cuda.device_count() if name.startswith("cuda:") else 0
    if name.startswith("cuda:") and int(name[5:]) >= count:
        raise ConfigError(f"device {name} was asked for, but PyTorch sees {count} CUDA GPU(s) here, cuda:0 to "
                          f"cuda:{count - 1}")
    return torch.device(name)


# ----------------------------------------------------------------------------- memory


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


def uses_streaming(dataset: Dataset, config: TrainConfig) -> bool:
    if config.stream != "auto":
        return config.stream == "on"
    return is_memory_mapped(dataset.train)


def rows_on_device(dataset: Dataset, config: TrainConfig, world_size: int = 1) -> int:
    """Rows the training holds at once, for the memory plan: every row (or this process's shard)
    when resident; three windows and an evaluation chunk when streamed."""
    if uses_streaming(dataset, config):
        return 3 * window_rows(dataset.schema.num_fields) + config.eval_batch_size
    return sum(len(s) for s in dataset.splits.values()) // world_size


def preflight(model_config: ModelConfig, config: TrainConfig, dataset: Dataset, world_size: int = 1) -> None:
    """Every reason this training cannot run here, raised before anything is built."""
    if config.task == "binary" and not dataset.is_binary:
        raise ConfigError("the binary task needs labels in {0, 1} or {-1, +1}; use --task regression")
    if config.batch_size % world_size:
        raise ConfigError(f"--batch-size {config.batch_size} must divide evenly over the {world_size} processes")
    if len(dataset.train) < world_size or len(dataset.valid) == 0:
        raise ConfigError("training and validation splits must not be empty")
    check_labels_vary(dataset, config.task)
    check_training_memory(model_config, config, rows_on_device(dataset, config, world_size))


def check_labels_vary(dataset: Dataset, task: str) -> None:
    """Refuse training rows whose labels are all one value: any model fits them exactly and learns
    nothing, and the untrained model would score a perfect 0.0 on a validation split like them."""
    low, high = dataset.label_range  # of the training labels (from the manifest for arrays)
    if low != high:
        return
    if task == "binary":
        raise DataError(dataset.name, f"only one class ({low:g}) in the training labels: there is nothing to "
                                      "learn; the binary task needs rows of both classes")
    raise DataError(dataset.name, f"every training label is {low!r}: there is nothing to learn "
                                  "(is the label column the right one?)")


# ----------------------------------------------------------------------------- path


def should_compile(config: TrainConfig, device: torch.device, train_rows: int) -> bool:
    """On CUDA, for runs long enough to pay for compiling (5-30 s up front). Not on the CPU: over
    whole epochs of Frappe with the presets' recipes the compiled step was no faster than the
    eager one (k = t = 64, batch 4,096) or slower (k = t = 256, batch 1,024 and 128), and it
    keeps embedding gradients dense where sparse ones win (docs/benchmarks.md)."""
    if config.compile != "auto":
        return config.compile == "on"
    return device.type == "cuda" and config.epochs * train_rows >= COMPILE_MIN_SAMPLES


def wants_sparse_gradients(model_config: ModelConfig, config: TrainConfig, device: torch.device,
                           batch_size: int) -> bool:
    """Sparse embedding gradients where they pay, or when asked for: Adagrad on tables of
    SPARSE_MIN_FEATURES+ rows, or on the CPU where a batch's rows touch at most half the table
    (the k = t = 256, batch-128 AFM step on Frappe: ~15 % faster than dense, docs/benchmarks.md;
    on CUDA that smaller case is not measured)."""
    small_batch = device.type == "cpu" and batch_size * model_config.num_fields <= model_config.num_features // 2
    wanted = config.sparse_embeddings == "on" or (
        config.sparse_embeddings == "auto" and (model_config.num_features >= SPARSE_MIN_FEATURES or small_batch))
    return wanted and config.optimizer == "adagrad"


def uses_distinct_pairs(model: PairwiseModel, config: TrainConfig, train: Split, batch_size: int) -> bool:
    """Whether to train through the distinct-pair path (`batch_size`: rows per process and step).
    Checked once on the training rows, not per batch (a check per batch would sync a GPU every step)."""
    wanted = config.distinct_pairs == "on" or (config.distinct_pairs == "auto"
                                               and model.distinct_pairs_pay(model.config, batch_size))
    return wanted and model.computes_distinct_pairs and train.one_hot


@dataclass(frozen=True)
class TrainingPath:
    """How this training runs; callbacks hear it before the first step (`on_train_start`)."""

    device: torch.device
    batch_size: int  # rows per process and step
    streamed: bool  # batches streamed from the data (afm.batches) instead of every row on the device
    distinct_pairs: bool  # each distinct feature pair of a batch computed once
    sparse_gradients: bool  # embedding gradients as sparse rows
    compiled: bool  # the training forward through torch.compile
    bfloat16_attention: bool = False  # AFM's attention network's products in bfloat16 (`precision`)

    def describe(self) -> dict:
        return {"compiled": self.compiled, "distinct_pairs": self.distinct_pairs,
                "sparse_gradients": self.sparse_gradients, "bfloat16_attention": self.bfloat16_attention}

    def set_up(self, model: PairwiseModel) -> None:
        """Put `model` on this path's gradients and attention dtype for its steps (`tear_down` undoes it)."""
        model.embedding.sparse = model.linear.sparse = self.sparse_gradients
        model.training_dtype = torch.bfloat16 if self.bfloat16_attention else None

    @staticmethod
    def tear_down(model: PairwiseModel) -> None:
        model.embedding.sparse = model.linear.sparse = False
        model.training_dtype = None


def native_bfloat16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 products natively: a GPU with bfloat16, or a CPU with AVX512-BF16
    or AMX (oneDNN's bfloat16 products elsewhere are emulated, 2.7-7x slower than float32's)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return any(getattr(torch.cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported",
                                                                       "_is_amx_tile_supported"))


def uses_bfloat16_attention(model: PairwiseModel, config: TrainConfig, device: torch.device) -> bool:
    """Whether AFM's attention products run in bfloat16 (`precision`); refused where they would be
    slower than float32's: the one reason to ask for them is speed."""
    if config.precision == "float32":
        return False
    if not native_bfloat16(device):
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
            "this CPU (it has neither AVX512-BF16 nor AMX)"
        raise ConfigError(f"precision bfloat16 would be slower than float32 on {where}; use precision float32 "
                          "(--precision float32)")
    return model.config.model == "afm"


def plan_training(model: PairwiseModel, dataset: Dataset, config: TrainConfig, device: torch.device,
                  world_size: int = 1, backend: str = "") -> TrainingPath:
    """The checks (`preflight`), then the path: the fastest measured one unless asked otherwise."""
    preflight(model.config, config, dataset, world_size)
    batch_size = config.batch_size // world_size
    distinct = uses_distinct_pairs(model, config, dataset.train, batch_size)
    wanted = wants_sparse_gradients(model.config, config, device, batch_size)
    rows = len(dataset.train) // world_size
    # Under DDP, compiling is asked for explicitly only (its graph breaks at every gradient bucket).
    compiled = should_compile(config, device, rows) and (world_size == 1 or config.compile == "on")
    # Sparse gradients do not go through the compiler (a compiled step keeps dense ones), nor
    # through NCCL (it has no sparse all-reduce).
    sparse = wanted and not compiled and backend != "nccl"
    return TrainingPath(device, batch_size, uses_streaming(dataset, config), distinct, sparse, compiled,
                        uses_bfloat16_attention(model, config, device))
