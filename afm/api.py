"""The front door for Python and notebooks: `afm.fit`, `afm.load`, and what they return.

    import afm
    model = afm.fit(frame, label="clicked", model="fwfm", preset="quick")   # or recipe=afm.Recipe(...)
    model.predict(frame)            # numpy: predictions (probabilities for the binary task)
    ex = model.explain()            # the test rows' pairs, as `afm pairs` and the Attention page
    ex.pairs; ex.summary(); ex.heatmap(); ex.gates(); ex.row(0)
    model.save("m.safetensors"); afm.load("m.safetensors")

Data is a pandas DataFrame, read by exactly the rules of a CSV file (`afm.data.tabular.frame_text`:
codes and words are categories, numbers with a fraction numeric; the label holds numbers or two
classes of text), or anything `afm.data.load_dataset` reads (a registry name, a CSV or libfm
file, a folder). Every mistake is a one-line `afm.AFMError`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from afm.analysis.answer import answer_sentences, reference_sentence
from afm.analysis.attention import row_decomposition
from afm.analysis.pairs import DEFAULT_ROWS, AttentionChecks, PairExplanation, check_attention, explain_pairs
from afm.analysis.reference import gradient_boosting_reference
from afm.checkpoint import Checkpoint, history_frame, load_checkpoint, save_checkpoint
from afm.data import Dataset, Split, load_dataset
from afm.data.splits import split_indices
from afm.data.stream import iter_rows
from afm.data.tabular import FRAME_SOURCE, TabularEncoder, frame_text, table_dataset
from afm.errors import ConfigError, DataError, UnseenValuesWarning
from afm.figures import decomposition_figure, gate_strengths_figure, pair_value_heatmap
from afm.fitting import fit_recipe
from afm.inference import outputs
from afm.metrics import sigmoid
from afm.predict import UnseenCells, unseen_warnings
from afm.recipe import Recipe
from afm.recipe import preset as preset_recipe
from afm.sizing import AUTO, auto_recipe

Data = pd.DataFrame | str | os.PathLike


def read_data(data: Data, label: str | None = None, seed: int = 0, data_dir: str | None = None) -> Dataset:
    """A DataFrame (split 70/20/10 with `seed`, as a CSV file is) or anything load_dataset reads."""
    if isinstance(data, pd.DataFrame):
        cells, lines = frame_text(data)
        return table_dataset(cells, lines, FRAME_SOURCE, "DataFrame", "a pandas DataFrame", label,
                             split_indices(len(cells), seed), [f"split 70/20/10 with seed {seed}"])
    if not isinstance(data, (str, os.PathLike)):
        raise ConfigError(f"data must be a pandas DataFrame, a dataset name or a path, not {type(data).__name__}")
    return load_dataset(data, data_dir=data_dir, seed=seed, label=label)


def fit(data: Data, label: str | None = None, *, model: str = "afm", preset: str | None = None,
        task: str | None = None, recipe: Recipe | None = None, split_seed: int = 0, data_dir: str | None = None,
        **settings) -> TrainedModel:
    """Train `model` on `data` and return it with its checkpoint.

    The recipe: `recipe` when given, else preset `preset` for `model` (default "auto", as the app
    and the CLI: quick on the bundled samples, the paper's recipe on Frappe and ml-tag, elsewhere
    one sized to the data, afm.sizing), with `settings` (any Recipe
    field: `epochs=20`, `lr=0.1`, ...) on top. `task`: "regression" or "binary"; by default
    binary when the labels are two classes (0/1, or two words such as yes/no), else regression.
    Rows are split 70/20/10 with `split_seed` (early stopping on the 20 %, the 10 % held out)."""
    dataset = read_data(data, label, split_seed, data_dir)
    if recipe is not None:
        if not isinstance(recipe, Recipe):
            raise ConfigError(f"recipe must be an afm.Recipe, not {type(recipe).__name__}")
        chosen = recipe.replace(**settings, **({"task": task} if task else {}))
    else:
        proposed = task or ("binary" if dataset.is_binary and dataset.distinct_labels
                            and len(dataset.distinct_labels) == 2 else "regression")
        if preset in (None, AUTO):
            chosen = auto_recipe(dataset, model, proposed, **settings)[0]
        else:
            chosen = preset_recipe(preset, model, task=proposed, **settings)
    return TrainedModel(fit_recipe(chosen, dataset).checkpoint, dataset)


def load(path: str | os.PathLike, device: str = "cpu") -> TrainedModel:
    """A checkpoint saved by `TrainedModel.save`, `afm train` or the app (never runs code from it)."""
    return TrainedModel(load_checkpoint(path, device=device), None)


@dataclass
class TrainedModel:
    """A trained model (its checkpoint: weights, recipe, history, encoding) and, when it was fitted
    here, the data it was fitted on (whose test rows `explain()` and `evaluate()` use by default)."""

    checkpoint: Checkpoint
    dataset: Dataset | None = field(default=None, repr=False)

    @property
    def recipe(self) -> Recipe:
        return self.checkpoint.recipe

    @property
    def task(self) -> str:
        return self.checkpoint.task

    @property
    def history(self) -> pd.DataFrame:
        """One row per epoch: the training curve (epoch 0 is the model before training)."""
        return history_frame(self.checkpoint.history)

    def __repr__(self) -> str:
        best = {key: round(value, 4) for key, value in self.checkpoint.best.items()
                if key.startswith(("valid_", "test_")) and not key.endswith("unclipped")}
        return f"TrainedModel({self.recipe.model}, {self.task}, best epoch {self.checkpoint.best_epoch}, {best})"

    def save(self, path: str | os.PathLike) -> Path:
        """Write the checkpoint (atomically: a reader sees the old file or the whole new one)."""
        return save_checkpoint(path, self.checkpoint)

    # ------------------------------------------------------------------------- scoring
    def encode(self, data: Data) -> Split:
        """Rows of a DataFrame or a CSV/libfm file, encoded as the model's training data was
        (labels NaN where there are none)."""
        if isinstance(data, pd.DataFrame):
            encoder = TabularEncoder.of(self.checkpoint.schema, FRAME_SOURCE)
            if encoder is None:
                raise DataError(FRAME_SOURCE, "this model was trained on libfm data; give it a libfm file")
            cells, lines = frame_text(data)
            ids, values = encoder.transform(cells, FRAME_SOURCE, lines)
            labels = np.full(len(cells), np.nan, dtype=np.float32)
            if encoder.label in cells.columns:
                from afm.data.tabular import label_numbers

                labels = label_numbers(cells[encoder.label], encoder.label, FRAME_SOURCE, lines, allow_empty=True,
                                       classes=encoder.label_classes)
            return Split(ids, values, labels)
        if not isinstance(data, (str, os.PathLike)):
            raise ConfigError(f"data must be a pandas DataFrame or a file path, not {type(data).__name__}")
        chunks = list(iter_rows(data, self.checkpoint.schema))
        if not chunks:
            raise DataError(data, "no rows to score")
        labels = [c.labels if c.labels is not None else np.full(len(c), np.nan, np.float32) for c in chunks]
        return Split(np.concatenate([c.feature_ids for c in chunks]),
                     np.concatenate([c.feature_values for c in chunks]), np.concatenate(labels))

    def predict(self, data: Data, allow_unseen: bool = False) -> np.ndarray:
        """(rows,) predictions in the rows' order: the regression target, or for the binary task
        the probability of the positive class.

        A cell whose value the model did not see in training is scored as its field's unknown
        value. A field more than half of whose cells are unseen gets an `afm.errors.
        UnseenValuesWarning` (one per field: "field 'x': 812 of 1,000 cells (81 %) were not seen
        in training and count as unknown"); a field none of whose cells was seen (a column written
        differently, say numbers where the model learned codes) is a DataError unless
        `allow_unseen=True`. `unseen_cells(data)` gives the counts per field."""
        rows = self.encode(data)
        unseen = UnseenCells(self.checkpoint.schema).add(rows.feature_ids)
        if not allow_unseen:
            unseen.check(FRAME_SOURCE if isinstance(data, pd.DataFrame) else data)
        for line in unseen_warnings(unseen.per_field(), unseen.rows):
            warnings.warn(line, UnseenValuesWarning, stacklevel=2)
        model = self.checkpoint.model.eval()
        device = next(model.parameters()).device
        raw = outputs(model, torch.from_numpy(rows.feature_ids).to(device),
                      torch.from_numpy(rows.feature_values).to(device))
        return sigmoid(raw).astype(np.float32) if self.task == "binary" else raw

    def unseen_cells(self, data: Data) -> dict[str, int]:
        """{field: how many cells of the rows hold a value not seen in training}, fields with any
        (the counts of `afm predict`'s `unseen_cells`)."""
        return UnseenCells(self.checkpoint.schema).add(self.encode(data).feature_ids).per_field()

    def evaluate(self, data: Data | None = None, split: str = "test") -> dict:
        """Metrics on `split` of the data fitted on (default), or of `data` read with the model's encoding."""
        return self.checkpoint.evaluate(self._rows_dataset(data), split if data is None else "all")

    def _rows_dataset(self, data: Data | None) -> Dataset:
        if data is None:
            if self.dataset is None:
                raise ConfigError("this model was loaded without its data: give the rows (a DataFrame or a file)")
            return self.dataset
        if isinstance(data, pd.DataFrame):
            cells, lines = frame_text(data)
            everything = np.arange(len(cells))
            return table_dataset(cells, lines, FRAME_SOURCE, "DataFrame", "a pandas DataFrame", None,
                                 {"train": everything, "valid": everything[:0], "test": everything[:0]},
                                 ["the rows given"], schema=self.checkpoint.schema)
        return load_dataset(data, schema=self.checkpoint.schema)

    # ------------------------------------------------------------------------- explaining
    def explain(self, data: Data | None = None, split: str = "test", rows: int = DEFAULT_ROWS,
                coalitions: str = "absent", seed: int = 0) -> Explanation:
        """Which field pairs matter, as `afm pairs` and the Attention page compute it: exact
        Shapley interactions of `rows` sampled rows, the gates, and for more than one pair the
        checks of attention. Rows: `split` of the data fitted on (default), or every row of `data`
        (with its labels, which the gates and checks compare against)."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
            raise ConfigError(f"seed must be a whole number in 0..{2**32 - 1}, got {seed!r}")
        dataset = self._rows_dataset(data)
        if data is None:
            explained, reference, where = dataset.rows(split), dataset.train, f"{split} rows of {dataset.name}"
        else:
            explained = reference = dataset.rows("all")
            where = f"rows of {dataset.name}"  # their labels are read as training labels: none empty
        checkpoint = self.checkpoint
        explanation = explain_pairs(checkpoint.model, explained, dataset.schema, reference, rows=rows,
                                    coalitions=coalitions, seed=seed, split_name=split if data is None else "")
        checks = None
        if checkpoint.model_config.num_pairs >= 2:
            checks = check_attention(checkpoint.model, explanation, explained, reference, checkpoint.task,
                                     checkpoint.label_range or dataset.label_range)
        reference_score = None
        if data is None and split == "test" and len(dataset.test):
            reference_score = gradient_boosting_reference(dataset, checkpoint.task)
            reference_score["model"] = checkpoint.evaluate(dataset, "test")
        return Explanation(explanation, checks, np.asarray(explained.feature_ids[explanation.rows]),
                           checkpoint.model_config.model, checkpoint.task, where, reference_score)


@dataclass
class Explanation:
    """Which field pairs matter for one model on some rows; the same numbers as `afm pairs`."""

    explanation: PairExplanation = field(repr=False)
    checks: AttentionChecks | None = field(repr=False)
    feature_ids: np.ndarray = field(repr=False)  # (R, F) the explained rows' features
    model: str  # "fm" | "fwfm" | "afm"
    task: str
    where: str  # which rows, in words: "test rows of sample"
    reference: dict | None = field(default=None, repr=False)  # gradient boosting and the model on the test rows

    @property
    def pairs(self) -> pd.DataFrame:
        """One line per field pair, the columns of `afm pairs`, most important (mean |SII|) first."""
        return self.explanation.table.copy()

    @property
    def gate_table(self) -> pd.DataFrame:
        """(pair, gating field) lines, strongest in the labels first."""
        return self.explanation.gates.copy()

    def summary(self) -> str:
        """The answer in a few sentences: the pairs that matter, the strongest gate, whether
        attention can be read as the reason, and how the model compares with gradient boosting."""
        return " ".join(self.sentences())

    def sentences(self) -> list[str]:
        """The answer as a list (afm.analysis.answer): what the Attention page opens on."""
        reference = None
        if self.reference is not None:
            reference = reference_sentence(self.reference, self.reference["model"], self.task)
        return answer_sentences(self.explanation, self.checks, self.model, reference)

    def heatmap(self, measure: str = "shapley_abs_mean") -> go.Figure:
        """Field x field heatmap of one column of `pairs` (default: mean |Shapley interaction|)."""
        if measure not in self.explanation.table or measure in ("pair", "gate", "gate_values", "part_of_effect"):
            raise ConfigError(f"measure must be a number column of pairs: {list(self.explanation.table.columns[1:])}")
        names = list(self.explanation.schema.field_names)
        return pair_value_heatmap(self.explanation.table, names, measure,
                                  f"{measure} over {len(self.explanation.rows):,} {self.where}", colorbar=measure,
                                  diverging=not measure.endswith(("abs_mean", "std")) and measure != "attention_mean")

    def gates(self, top: int = 10) -> go.Figure:
        """The strongest (pair, gate) lines: how much the pair's effect changes with the gating
        field's value, in the labels and in the model."""
        return gate_strengths_figure(self.explanation.gates, top)

    def row(self, index: int) -> go.Figure:
        """One explained row's prediction as the model's own additive terms (they sum to it)."""
        rows = len(self.explanation.rows)
        if not isinstance(index, (int, np.integer)) or not 0 <= index < rows:
            raise ConfigError(f"row must be 0..{rows - 1} (of the explained rows), got {index!r}")
        terms = self.explanation.terms
        table = row_decomposition(terms, index, self.explanation.schema, self.feature_ids[index])
        return decomposition_figure(table, float(terms.prediction[index]))


