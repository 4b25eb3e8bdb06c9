"""The recipe sized to the data (`--preset auto`, the default for data that is not the paper's):
the paper's Frappe recipe (k = t = 256, batch 128, Adagrad, no L2 on embeddings) fits 288,609 rows
of 10 fields; on a user's file of tens of thousands of rows it trains for many minutes and
overfits the long tail of ids. `sized_recipe` picks the size, batch, optimizer and regulariser
from the data's size and shape; `auto_recipe` picks for a loaded dataset, keeping the paper's
recipe on Frappe and ml-tag (whose reproductions it is) and the quick one on the bundled samples.

The choice, with each number measured (docs/benchmarks.md, "Sized to the data"):
- k (and AFM's t = k): 8 below 5,000 training rows, 16 below 100,000, 32 below 1,000,000, else 64:
  a feature seen a few times cannot fill 256 numbers, and the step's work grows with k;
- Adam at lr 0.005 (BARS' optimizer; Adagrad's rate depends on the feature counts' spread);
- batch 256 below 5,000 rows, 1,024 below 1,000,000, else 4,096: 20+ steps an epoch, fewer
  Python steps per row;
- L2 on the embeddings of the features a batch touches, the batch size / 512 (the objective is a
  sum over the batch: BARS' embedding regulariser, about 0.002, times the batch size);
- no dropout, no L2 on attention (the L2 on embeddings regularises);
- AFM: an FM of the same settings first, and the AFM started as that FM (p = P, uniform attention:
  `match_fm`), which its epochs then improve; from scratch, its attention-weighted mean of the
  pairs (weights that sum to 1) stayed below the FM (AUC 0.733 against 0.761 on a click log);
- at most 100 epochs, early stopping after 3 without a better validation score (AUC for the
  binary task, RMSE for regression).
"""

from __future__ import annotations

from afm.data import Dataset
from afm.data.registry import BUNDLED_SAMPLES
from afm.errors import ConfigError
from afm.recipe import MODEL_NAMES, Recipe, preset

AUTO = "auto"  # the preset name of a sized recipe (and of the choice between it and the paper's)
PAPER_DATA = ("frappe", "ml-tag")  # the paper's datasets: the paper's recipe
SIZES = ((5_000, 8), (100_000, 16), (1_000_000, 32))  # (training rows below, k); 64 above
BATCHES = ((5_000, 256), (1_000_000, 1024))  # (training rows below, batch size); 4,096 above
SIZED_LR = 0.005
L2_PER_ROW = 1 / 512  # l2_embedding = the batch size / 512 (0.5 at 256, 2 at 1,024)
SIZED_EPOCHS, SIZED_PATIENCE = 100, 3


def _first(thresholds: tuple, rows: int, last: int) -> int:
    return next((value for below, value in thresholds if rows < below), last)


def sized_recipe(rows: int, fields: int, features: int, task: str = "regression",
                 model: str = "afm") -> tuple[Recipe, str]:
    """The recipe for `rows` training rows of `fields` fields and `features` distinct features,
    and one sentence that says why (the module docstring's rules)."""
    for name, value in (("rows", rows), ("fields", fields), ("features", features)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a whole number >= 1 to size a recipe, got {value!r}")
    if model not in MODEL_NAMES:
        raise ConfigError(f"model must be one of {', '.join(MODEL_NAMES)}, not {model!r}")
    k = _first(SIZES, rows, 64)
    batch = _first(BATCHES, rows, 4096)
    afm_only = {"attention_dim": k, "l2_attention": 0.0, "dropout_attention": 0.0, "pretrain": True,
                "match_fm": True} if model == "afm" else {}
    recipe = Recipe.of(model=model, task=task, embedding_dim=k, optimizer="adam", lr=SIZED_LR, batch_size=batch,
                       l2_embedding=L2_PER_ROW * batch, dropout_pooled=0.0, epochs=SIZED_EPOCHS,
                       patience=SIZED_PATIENCE, preset=AUTO, **afm_only)
    metric = "AUC" if task == "binary" else "RMSE"
    reason = (f"sized to {rows:,} training rows of {fields} fields ({features:,} features, {task}): k = {k}"
              + (f", t = {k}" if model == "afm" else "")
              + f" (a feature seen a few times cannot fill more), Adam lr {SIZED_LR:g}, batch {batch:,}, L2 "
              f"{L2_PER_ROW * batch:g} on the embeddings a batch touches, no dropout, up to {SIZED_EPOCHS} epochs "
              f"with early stopping on validation {metric} after {SIZED_PATIENCE}"
              + ("; an FM of these settings first, the AFM started as it (p = P)" if model == "afm" else ""))
    return recipe, reason


def auto_recipe(dataset: Dataset, model: str = "afm", task: str = "regression",
                **overrides) -> tuple[Recipe, str]:
    """`--preset auto` for `dataset`: the paper's recipe on Frappe and ml-tag, the quick one on the
    bundled samples, else `sized_recipe`; `overrides` (settings given) on top; and why."""
    if dataset.name in PAPER_DATA:
        chosen = preset("paper", model, task=task, **overrides)
        return chosen, f"the paper's recipe: {dataset.name} is one of the paper's datasets"
    if dataset.name in BUNDLED_SAMPLES:
        chosen = preset("quick", model, task=task, **overrides)
        return chosen, f"the quick recipe: {dataset.name} is a bundled sample"
    schema = dataset.schema
    sized, reason = sized_recipe(max(1, len(dataset.train)), schema.num_fields, max(1, schema.num_features), task,
                                 model)
    if overrides:
        reason += f"; given: {', '.join(sorted(overrides))}"
    if overrides.get("init_from"):  # an FM to start from is given: none to train first
        overrides = {"pretrain": False, **overrides}
    elif overrides.get("pretrain") is False:  # no FM at all: nothing to start as
        overrides = {"match_fm": False, **overrides}
    return sized.replace(**overrides), reason
