"""One training recipe: every setting of a training in one frozen dataclass, the one place they
are named, defaulted, described and checked.

The command line's flags (`afm.cli.train`), the app's training form (`afm.app.training`), the
tuner's search space (`afm.tune`), the presets (`afm.presets`), the front door (`afm.fit`) and
every checkpoint derive from `Recipe`: each field's metadata says its label, help text, range or
choices, its command-line flag, whether the app's form draws it and, when the tuner searches it,
how. `Recipe.model_config(schema)` and `Recipe.train_config()` are the lower layers' configs;
`Recipe.command()` is the `afm train` line that trains it again.

Defaults are the paper's Frappe recipe (Xiao et al., IJCAI 2017; the authors' command line):
k = t = 256, batch 128, Adagrad; for AFM lr 0.015, L2 on attention 16, dropout 0 on a_ij and
0.2 on the pooled vector; for FM and FwFM lr 0.05, dropout 0.5 and no attention. The settings
that differ by model are None in the signature and filled in for the model chosen, so
`Recipe(model="fm")` is the paper's FM, not an FM with AFM-only settings.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from afm.errors import ConfigError
from afm.limits import MAX_DIM
from afm.models import MODEL_NAMES, ModelConfig
from afm.train import OPTIMIZERS, PRECISIONS, TASKS, TrainConfig

if TYPE_CHECKING:
    from afm.data import FieldSchema

PATH_CHOICES = ("auto", "on", "off")
SEARCH_SIZES = (8, 16, 32, 64, 128, 256)  # k and t the tuner tries
# The paper's Frappe values of the settings that differ by model (module docstring).
MODEL_DEFAULTS = {
    "fm": {"lr": 0.05, "dropout_attention": 0.0, "dropout_pooled": 0.5, "l2_attention": 0.0},
    "fwfm": {"lr": 0.05, "dropout_attention": 0.0, "dropout_pooled": 0.5, "l2_attention": 0.0},
    "afm": {"lr": 0.015, "dropout_attention": 0.0, "dropout_pooled": 0.2, "l2_attention": 16.0},
}
# The settings that mean nothing for FM and FwFM, with the value that leaves them unset: another is an error.
AFM_UNSET = {"dropout_attention": 0.0, "l2_attention": 0.0, "match_fm": False, "pretrain": False,
             "precision": "float32"}
AFM_ONLY = tuple(AFM_UNSET)


def setting(default: Any, label: str, help: str, *, flag: str | None = None, low: float | None = None,
            high: float | None = None, above_low: bool = False, below_high: bool = False, choices: tuple | None = None,
            app: bool | str = True, search: tuple | None = None, step: float | None = None) -> Any:
    """A Recipe field with what every front end needs to know of it.

    `flag`: the command-line flag (default `--name-with-dashes`); `low`/`high`: the range (low
    excluded when `above_low`, high when `below_high`); `choices`: the values allowed; `app`: True when the training
    form draws it from this metadata, else the reason it does not (a string: drawn elsewhere on the
    page, or left to the command line); `search`: how the tuner searches it, ("float", low, high,
    log) or ("categorical", choices); `step`: the form's step for a number."""
    return field(default=default, metadata={
        "label": label, "help": help, "flag": flag, "low": low, "high": high, "above_low": above_low,
        "below_high": below_high, "choices": choices, "app": app, "search": search, "step": step})


@dataclass(frozen=True)
class Recipe:
    """Every setting of one training (see the module docstring). Frozen: change one with
    `recipe.replace(lr=0.1)`, which checks the result again."""

    model: str = setting("afm", "Model", "fm: one weight for every pair; fwfm: a learned weight per field pair; "
                         "afm: attention weights per row (eq. 5)", choices=MODEL_NAMES, app="the page's Model menu")
    embedding_dim: int = setting(256, "Embedding size k", "size of each feature's embedding (paper: 256)",
                                 flag="--k", low=1, high=MAX_DIM, search=("categorical", SEARCH_SIZES))
    attention_dim: int = setting(256, "Attention size t", "width of AFM's attention network (paper: 256; AFM only)",
                                 flag="--t", low=1, high=MAX_DIM, search=("categorical", SEARCH_SIZES))
    dropout_attention: float = setting(None, "Dropout on a_ij", "dropout on the attention weights, 1 - the "
                                       "authors' keep[0] (AFM only; paper 0)", low=0.0, high=1.0, below_high=True,
                                       search=("float", 0.0, 0.5, False), step=0.05)
    dropout_pooled: float = setting(None, "Dropout on the pooled vector", "dropout on the pooled pair vector, "
                                    "1 - the authors' keep (paper: AFM 0.2, FM 0.5)", low=0.0, high=1.0,
                                    below_high=True, search=("float", 0.0, 0.7, False), step=0.05)
    optimizer: str = setting("adagrad", "Optimizer", "the paper's Adagrad, or Adam", choices=OPTIMIZERS,
                             search=("categorical", OPTIMIZERS))
    lr: float = setting(None, "Learning rate", "step size (paper: AFM 0.015, FM 0.05)", low=0.0, high=100.0,
                        above_low=True, below_high=True, search=("float", 0.0005, 0.5, True), step=0.001)
    batch_size: int = setting(128, "Batch size", "rows per step (paper: 128 on Frappe)", low=1, high=1_000_000,
                              search=("categorical", (128, 256, 512, 1024, 4096)))
    epochs: int = setting(100, "Epochs (at most)", "upper bound; early stopping usually ends sooner", low=0,
                          high=10_000)
    patience: int = setting(5, "Patience", "stop after this many epochs without a better validation score",
                            low=1, high=10_000)
    l2_attention: float = setting(None, "L2 on attention W", "L2 on AFM's attention weights W, the authors' "
                                  "lamda_attention (AFM only; paper 16)", low=0.0, high=1e6,
                                  search=("float", 0.0001, 100.0, True), step=1.0)
    l2_embedding: float = setting(0.0, "L2 on embeddings", "L2 on the embeddings v_i and first-order weights w_i "
                                  "of the features each batch touches, summed like the loss (BARS' embedding "
                                  "regularizer times the batch size; 0: off, as the paper)", low=0.0, high=1e6,
                                  search=("float", 0.001, 100.0, True), step=0.1)
    task: str = setting("regression", "Task", "regression: squared loss, RMSE (the paper); binary: log loss, AUC, "
                        "for labels of two classes", choices=TASKS, app="the page's Task choice, proposed from "
                        "the labels")
    seed: int = setting(0, "Seed", "initial weights, batch order and dropout masks", low=0, high=2**32,
                        below_high=True)
    device: str = setting("auto", "Device", "auto (CUDA when present), cpu, cuda or cuda:N",
                          app="the page's Device choice, which shows the GPU found")
    pretrain: bool = setting(False, "Train the FM first", "AFM only: train an FM first and start from its "
                             "embeddings and biases (the authors' recipe; the FM: the preset's, at this k)",
                             app="the page's step-1 checkbox", search=("categorical", (False, True)))
    init_from: str | None = setting(None, "Start from", "an FM checkpoint (a path, or a run of the app's session) "
                                    "whose embeddings and biases the model starts from",
                                    app="the page's Start from menu of the session's FMs")
    match_fm: bool = setting(False, "Start as the FM (p = P)", "AFM with FM pretraining: start the projection at "
                             "p = P so that the AFM starts as that FM with uniform attention (the authors: p = 1)")
    deterministic: bool = setting(False, "Deterministic", "bit-reproducible (slower) kernels",
                                  app="command line only: the app's jobs share one process")
    compile: str = setting("auto", "Compile", "torch.compile the training step (auto: runs of 1M+ samples on "
                           "CUDA; never on the CPU, where whole epochs were no faster)", choices=PATH_CHOICES,
                           app="command line only: the fastest path is picked (docs/benchmarks.md)")
    distinct_pairs: str = setting("auto", "Distinct pairs", "FwFM/AFM on one-hot rows: compute each distinct "
                                  "feature pair of a batch once (same results; auto: where it is faster)",
                                  choices=PATH_CHOICES, app="command line only: the fastest path is picked")
    stream: str = setting("auto", "Stream", "stream batches from the data in shuffled blocks (auto: for "
                          "memory-mapped arrays, see `afm encode`)", choices=PATH_CHOICES,
                          app="command line only: the app's data is in memory")
    sparse_embeddings: str = setting("auto", "Sparse embeddings", "Adagrad: embedding gradients as sparse rows "
                                     "(auto: tables of 20,000+ features, or batches that touch at most half "
                                     "the table on the CPU)", choices=PATH_CHOICES,
                                     app="command line only: the fastest path is picked")
    precision: str = setting("float32", "Precision", "AFM's attention network in training steps: float32, or "
                             "bfloat16, whose matrix products run 2x on CPUs with AVX512-BF16 or AMX and on recent "
                             "GPUs (the paper's recipe on Frappe: epochs ~1.2x as fast, the same RMSE); evaluation "
                             "and every analysis stay float32 (AFM only)", choices=PRECISIONS)
    preset: str | None = setting(None, "Preset", "the named recipe these values started from (information: "
                                 "the values are the recipe)", app="the page's Preset menu")

    def __post_init__(self):
        for name, value in MODEL_DEFAULTS.get(self.model, MODEL_DEFAULTS["afm"]).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        for spec in fields(self):
            object.__setattr__(self, spec.name, _checked(spec, getattr(self, spec.name)))
        if self.model != "afm":
            set_here = [spec for spec in fields(self)
                        if spec.name in AFM_ONLY and getattr(self, spec.name) != AFM_UNSET[spec.name]]
            if set_here:
                named = ", ".join(f"{spec.name} ({flag_of(spec)})" for spec in set_here)
                unset = ", ".join(f"{spec.name} = {AFM_UNSET[spec.name]}" for spec in set_here)
                raise ConfigError(f"{named} applies to AFM only, not {self.model} (leave it out, or {unset})")
        if self.match_fm and not (self.init_from or self.pretrain):
            raise ConfigError("match_fm needs a start: init_from an FM checkpoint, or pretrain")
        if self.init_from and self.pretrain:
            raise ConfigError("give init_from (an FM to start from) or pretrain (train one first), not both")

    # ------------------------------------------------------------------------- making recipes
    @classmethod
    def of(cls, **values) -> Recipe:
        """A recipe from keyword settings, an unknown name being a one-line error (not a TypeError)."""
        return cls().replace(**values)

    def replace(self, **changes) -> Recipe:
        """This recipe with `changes` (checked again). A new model gets its own defaults for the
        settings that differ by model, unless they are given."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(f"unknown recipe settings {sorted(unknown)}; the settings are "
                              f"{[f.name for f in fields(self)]}")
        if "model" in changes and changes["model"] != self.model:
            defaults = MODEL_DEFAULTS.get(changes["model"], {})
            changes = {**AFM_UNSET, **{name: None for name in defaults}, **changes}
        return replace(self, **changes)

    @classmethod
    def from_checkpoint(cls, model_config: ModelConfig, train_config: dict) -> Recipe:
        """The recipe a checkpoint was trained with, from its saved configs: every format (settings
        a format did not record take their defaults; an imported model's source keys are not settings)."""
        names = {f.name for f in fields(cls)}
        values = {key: value for key, value in train_config.items() if key in names}
        values.update(model=model_config.model, embedding_dim=model_config.embedding_dim,
                      attention_dim=model_config.attention_dim, dropout_attention=model_config.dropout_attention,
                      dropout_pooled=model_config.dropout_pooled)
        if model_config.model != "afm":
            values.update(l2_attention=0.0, match_fm=False, pretrain=False)
        if values.get("preset") is not None and not isinstance(values["preset"], str):
            values["preset"] = None
        values["match_fm"] = bool(values.get("match_fm")) and bool(values.get("init_from") or values.get("pretrain"))
        return cls(**values)

    # ------------------------------------------------------------------------- the lower layers' configs
    def model_config(self, schema: FieldSchema) -> ModelConfig:
        """The model of this recipe for data of `schema` (its features and fields)."""
        return ModelConfig(model=self.model, num_features=schema.num_features, num_fields=schema.num_fields,
                           embedding_dim=self.embedding_dim, attention_dim=self.attention_dim,
                           dropout_attention=self.dropout_attention, dropout_pooled=self.dropout_pooled)

    def train_config(self) -> TrainConfig:
        return TrainConfig(task=self.task, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                           optimizer=self.optimizer, l2_attention=self.l2_attention,
                           l2_embedding=self.l2_embedding, patience=self.patience,
                           seed=self.seed, device=self.device, deterministic=self.deterministic,
                           sparse_embeddings=self.sparse_embeddings, compile=self.compile,
                           distinct_pairs=self.distinct_pairs, stream=self.stream, precision=self.precision)

    def settings(self) -> dict:
        """What a checkpoint records beside TrainConfig's fields: the rest of the recipe."""
        return {"init_from": self.init_from, "match_fm": self.match_fm, "pretrain": self.pretrain,
                "preset": self.preset}

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def command(self, data: str = "DATA", out: str | None = None) -> str:
        """The `afm train` line (for `--data` `data`, a shell-quoted string) that trains this recipe
        again: its preset and every setting that differs from it, every number in full (a rounded
        lr trains another model)."""
        default = preset(self.preset if self.preset in PRESETS else None, self.model)
        parts = ["--model", self.model, "--preset", self.preset if self.preset in PRESETS else "none"]
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name in ("model", "preset") or value == getattr(default, spec.name):
                continue
            flag = flag_of(spec)
            if isinstance(value, bool):
                parts.append(flag)
            else:
                parts += [flag, repr(value) if isinstance(value, float) else str(value)]
        parts += ["--out", out or f"{self.model}.safetensors"]
        return f"python -m afm train --data {data} {shlex.join(parts)}"  # `data`: as given, quoted already


def flag_of(spec) -> str:
    """A Recipe field's command-line flag."""
    return spec.metadata["flag"] or "--" + spec.name.replace("_", "-")


def _checked(spec, value):
    """A field's value as its type and metadata allow, or a ConfigError naming the setting."""
    meta, name, kind = spec.metadata, spec.name, spec.type
    where = f"{name} ({flag_of(spec)})"
    if kind in ("str | None",) and value is None:
        return None
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            elif type(value).__module__ == "numpy" and hasattr(value, "item"):
                value = value.item()
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{where} must be a whole number, got {value!r}")
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
    if kind in ("str", "str | None") and not isinstance(value, str):
        raise ConfigError(f"{where} must be text, got {value!r}")
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ConfigError(f"{where} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")
    if name == "device" and not (value in ("auto", "cpu", "cuda") or value.startswith("cuda:")):
        raise ConfigError(f"{where} must be auto, cpu, cuda or cuda:N, got {value!r}")
    low, high = meta["low"], meta["high"]
    if low is not None and (value < low or value > high or (meta["above_low"] and value == low)
                            or (meta["below_high"] and value == high)):
        if kind == "int":  # whole numbers read best as the range they may take
            first, last = low + meta["above_low"], high - meta["below_high"]
            raise ConfigError(f"{where} must be a whole number in {first}..{last}, got {value!r}")
        start = f"above {low:g}" if meta["above_low"] else f"at least {low:g}"
        bound = f"below {high:g}" if meta["below_high"] else f"at most {high:g}"
        raise ConfigError(f"{where} must be {start} and {bound}, got {value!r}")
    return value


# ----------------------------------------------------------------------------- named recipes
def _named(name: str, recipes: dict[str, Recipe]) -> dict[str, Recipe]:
    return {model: replace(recipe, preset=name) for model, recipe in recipes.items()}


# The paper's Frappe settings: the Recipe's defaults (k = t = 256, batch 128, Adagrad; AFM from the
# authors' command line in their issue #7; FM and FwFM lr 0.05 and keep 0.5 chosen on validation,
# docs/REPRODUCTION.md). Up to 100 epochs with early stopping after 5.
_PAPER = {model: Recipe(model=model) for model in MODEL_NAMES}

PRESETS: dict[str, dict[str, Recipe]] = {  # the app's menu order: the first is the small samples' default
    # The bundled synthetic samples: small and fast (seconds on a 2-core CPU). Up to 40 epochs:
    # AFM needs about 30 to learn where the device switches user x item off; early stopping ends
    # FM and FwFM near 10-15.
    "quick": _named("quick", {model: Recipe(model=model, embedding_dim=16, attention_dim=16, dropout_pooled=0.0,
                                            lr=0.2, l2_attention=0.0, epochs=40) for model in MODEL_NAMES}),
    "paper": _named("paper", _PAPER),
    # Frappe to validation RMSE 0.32 within two minutes on 2 CPU cores (docs/benchmarks.md, "Time
    # to quality": 110 s from the CLI, 100 s in the app): the paper's FM at k = 128 for 15 epochs,
    # then the AFM from it (pretrain) at k = t = 128, batch 1,024, lr 0.1. k = 128 quarters the
    # attention MLP's work (k x t) and halves the embeddings' (k = 256 needed 157 s for the same
    # 0.32); batch 1,024 shares more distinct pairs per step than 128; lr 0.1 reached 0.32 two
    # epochs sooner than 0.08 at this size, and 15 FM epochs instead of 10 give it the margin.
    "fast": _named("fast", {
        "fm": replace(_PAPER["fm"], embedding_dim=128, attention_dim=128, epochs=15),
        "fwfm": replace(_PAPER["fwfm"], embedding_dim=128, attention_dim=128, epochs=15),
        "afm": replace(_PAPER["afm"], embedding_dim=128, attention_dim=128, batch_size=1024, lr=0.1, epochs=10,
                       patience=3, pretrain=True),
    }),
}


def preset(name: str | None, model: str = "afm", **overrides) -> Recipe:
    """Preset `name`'s recipe for `model` (None: the defaults) with `overrides` on top: how the
    CLI (its flags), the app (its form) and `afm.fit` (its keywords) make a recipe."""
    if name is None:
        return Recipe.of(model=model, **overrides)
    if name not in PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, not {name!r}")
    if model not in PRESETS[name]:
        raise ConfigError(f"model must be one of {', '.join(MODEL_NAMES)}, not {model!r}")
    return PRESETS[name][model].replace(**overrides)


def pretraining(recipe: Recipe) -> Recipe:
    """The FM a `pretrain` recipe trains first: its preset's FM at its k (its own lr, batch size
    and pooled dropout when it names no preset, as the tuner's trials), on the same task and seed
    and the same training paths."""
    keep = {name: getattr(recipe, name) for name in ("task", "seed", "device", "deterministic", "compile",
                                                     "distinct_pairs", "stream", "sparse_embeddings")}
    keep.update(embedding_dim=recipe.embedding_dim, attention_dim=recipe.embedding_dim)
    if recipe.preset in PRESETS:
        return PRESETS[recipe.preset]["fm"].replace(**keep)
    return recipe.replace(model="fm", lr=recipe.lr, dropout_pooled=recipe.dropout_pooled, **keep)
