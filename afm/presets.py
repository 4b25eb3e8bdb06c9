"""Named hyperparameter sets, shared by the CLI defaults, the app's form and the bundled sample
checkpoints. Each maps a model name to keyword arguments of ModelConfig and TrainConfig."""

from __future__ import annotations

from typing import TYPE_CHECKING

from afm.models import ModelConfig
from afm.train import TrainConfig

if TYPE_CHECKING:
    from afm.data import FieldSchema

# The paper's Frappe settings (k = t = 256, batch 128, Adagrad). AFM: the authors' command line
# from their issue #7 (keep [1.0, 0.8], lamda_attention 16, lr 0.015), started from the FM.
# FM (and FwFM alike): lr 0.05 and keep 0.5 chosen on validation (docs/REPRODUCTION.md).
_PAPER_FM = {"embedding_dim": 256, "attention_dim": 256, "dropout_attention": 0.0, "dropout_pooled": 0.5,
             "batch_size": 128, "lr": 0.05, "optimizer": "adagrad", "l2_attention": 0.0, "epochs": 100,
             "patience": 5}
_PAPER = {"fm": _PAPER_FM, "fwfm": _PAPER_FM,
          "afm": {**_PAPER_FM, "dropout_pooled": 0.2, "lr": 0.015, "l2_attention": 16.0}}

PRESETS: dict[str, dict[str, dict]] = {  # the app's menu order: the first is the small samples' default
    # The bundled synthetic samples: small and fast (seconds on a 2-core CPU). Up to 40 epochs:
    # AFM needs about 30 to learn where the device switches user x item off; early stopping ends
    # FM and FwFM near 10-15.
    "quick": {
        model: {"embedding_dim": 16, "attention_dim": 16, "dropout_attention": 0.0, "dropout_pooled": 0.0,
                "batch_size": 128, "lr": 0.2, "optimizer": "adagrad", "l2_attention": 0.0, "epochs": 40,
                "patience": 5}
        for model in ("fm", "fwfm", "afm")
    },
    "paper": _PAPER,
    # Frappe to validation RMSE 0.32 within two minutes on 2 CPU cores (docs/benchmarks.md, "Time
    # to quality": 110 s from the CLI, 100 s in the app): the paper's FM at k = 128 for 15 epochs,
    # then the AFM from it ("Start from") at k = t = 128, batch 1,024, lr 0.1. k = 128 quarters the
    # attention MLP's work (k x t) and halves the embeddings' (k = 256 needed 157 s for the same
    # 0.32); batch 1,024 shares more distinct pairs per step than 128; lr 0.1 reached 0.32 two
    # epochs sooner than 0.08 at this size, and 15 FM epochs instead of 10 give it the margin.
    "fast": {
        "fm": {**_PAPER["fm"], "embedding_dim": 128, "attention_dim": 128, "epochs": 15},
        "fwfm": {**_PAPER["fwfm"], "embedding_dim": 128, "attention_dim": 128, "epochs": 15},
        "afm": {**_PAPER["afm"], "embedding_dim": 128, "attention_dim": 128, "batch_size": 1024, "lr": 0.1,
                "epochs": 10, "patience": 3},
    },
}

# What the app's preset menu says about each, and what a preset asks of the user beyond its numbers.
# Short enough to be read whole in the menu on an 800 px screen; PRESET_HELP says the rest.
PRESET_LABELS = {"quick": "Quick (k = 16)", "paper": "Paper (k = 256)", "fast": "Fast (k = 128, 2 steps)"}
PRESET_HELP = ("Quick: k = 16, seconds on a CPU, for the bundled samples. Paper: the authors' Frappe recipe, k = 256, "
               "batch 128. Fast: k = 128, an FM and then the AFM started from it. Tune: an Optuna study that searches "
               "the settings on the validation rows.")
PRESET_RECIPES = {"fast": "Fast is a two-step recipe: an FM (10 epochs), then the AFM started from it. *Train the "
                          "FM first* runs both on one click; or pick a trained FM under *Start from*. On Frappe on "
                          "2 CPU cores: valid RMSE 0.32 after about 2 minutes in all."}

MODEL_KEYS = ("embedding_dim", "attention_dim", "dropout_attention", "dropout_pooled")
TRAIN_KEYS = ("batch_size", "lr", "optimizer", "l2_attention", "epochs", "patience")


def preset(name: str, model: str) -> dict:
    return dict(PRESETS[name][model])


def preset_configs(name: str, model: str, schema: FieldSchema, model_overrides: dict | None = None,
                   **train_overrides) -> tuple[ModelConfig, TrainConfig]:
    """(ModelConfig for `schema`, TrainConfig) of preset `name` for `model`, with `model_overrides`
    (e.g. the form's k) and `train_overrides` (seed, device, task, ...) on top."""
    values = preset(name, model)
    model_config = ModelConfig(model=model, num_features=schema.num_features, num_fields=schema.num_fields,
                               **{**{k: values[k] for k in MODEL_KEYS}, **(model_overrides or {})})
    return model_config, TrainConfig(**{**{k: values[k] for k in TRAIN_KEYS}, **train_overrides})
