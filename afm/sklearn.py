"""scikit-learn estimators: FM, FwFM and AFM as regressors and binary classifiers.

    from afm.sklearn import FwFMClassifier
    clf = FwFMClassifier(epochs=20).fit(X, y)      # X: a DataFrame or an array; y: any two labels
    clf.predict_proba(X); clf.score(X, y); clf.pair_importances_

They are thin: `fit` reads `X` by the rules of a CSV file (`afm.data.tabular.frame_text`: numbers
with a fraction are numeric fields, whole numbers and text categorical, NaN or an empty cell
missing), holds out `validation_fraction` of the rows for early stopping (drawn with `seed`,
by class for classifiers), and trains with `afm.fitting.fit_recipe`: every estimator parameter
but `preset` and `validation_fraction` is the `afm.Recipe` field of that name. None takes the
preset's value (`preset="quick"`: k = 16, lr 0.2, up to 40 epochs; seconds on a few thousand
rows); `preset=None` starts from the Recipe's defaults, the paper's recipe.

`seed` is the estimator's random state: the initial weights, the batch order and the rows held
out. Mistakes are one-line `afm.AFMError`s that are also `ValueError`s (`EstimatorError`), as
scikit-learn expects of bad input. After `fit`: `checkpoint_` (an `afm.checkpoint.Checkpoint`:
`afm.TrainedModel(est.checkpoint_)` saves and explains it), `n_features_in_`,
`feature_names_in_` (DataFrames with text column names), `classes_` (classifiers) and
`pair_importances_`.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import fields

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import _check_y, check_is_fitted, column_or_1d, validate_data

from afm.analysis.pairs import DEFAULT_ROWS
from afm.analysis.shapley import MAX_FIELDS, pair_shapley
from afm.data.tabular import FRAME_SOURCE, MIN_ROWS, TabularEncoder, frame_text, table_dataset
from afm.errors import AFMError
from afm.fitting import fit_recipe
from afm.inference import outputs
from afm.metrics import sigmoid
from afm.recipe import Recipe
from afm.recipe import preset as preset_recipe

# Recipe fields an estimator does not expose: the class names the model, the estimator type the
# task, `preset` is a parameter of its own, and starting from another checkpoint (init_from,
# match_fm) belongs to afm.fit and the CLI.
EXCLUDED = ("model", "task", "preset", "init_from", "match_fm")
SETTINGS = tuple(f.name for f in fields(Recipe) if f.name not in EXCLUDED)
IMPORTANCE_NAME = "mean |Shapley interaction|"


class EstimatorError(AFMError, ValueError):
    """A mistake in an estimator's data or parameters: one line, an AFMError and a ValueError."""


@contextlib.contextmanager
def _one_line_errors():
    """The package's one-line errors as EstimatorErrors (ValueErrors, for scikit-learn)."""
    try:
        yield
    except EstimatorError:
        raise
    except AFMError as error:
        raise EstimatorError(str(error)) from error


class _AFMEstimator(BaseEstimator):
    """The shared estimator; subclasses set `_model` and mix in the estimator type.

    Parameters (None: the preset's value; see `afm.Recipe` for each setting's meaning and range):
    embedding_dim, attention_dim (AFM), dropout_attention (AFM), dropout_pooled, optimizer, lr,
    batch_size, epochs, patience, l2_attention (AFM), l2_embedding, seed, device, pretrain (AFM),
    deterministic, compile, distinct_pairs, stream, sparse_embeddings, precision (AFM); `preset`: "quick" (the
    default), "paper", "fast" or None (the Recipe's defaults); `validation_fraction`: the share of
    rows held out for early stopping (at least one row; the model kept is the best epoch on them).

    `pair_importances_`: a pandas Series, field pair ("a x b") -> mean |Shapley interaction index|
    of the model's raw output (the logit for classifiers) over up to 256 held-out rows, most
    important first: the `shapley_abs_mean` of `afm pairs`. Exact Shapley values cost 2^F
    evaluations a row, so above afm.analysis.shapley.MAX_FIELDS (16) fields it is NaN.
    """

    _model = "afm"
    _task = "regression"

    def __init__(self, *, embedding_dim=None, attention_dim=None, dropout_attention=None, dropout_pooled=None,
                 optimizer=None, lr=None, batch_size=None, epochs=None, patience=None, l2_attention=None,
                 l2_embedding=None, seed=None,
                 device=None, pretrain=None, deterministic=None, compile=None, distinct_pairs=None, stream=None,
                 sparse_embeddings=None, precision=None, preset="quick", validation_fraction=0.2):
        self.embedding_dim = embedding_dim
        self.attention_dim = attention_dim
        self.dropout_attention = dropout_attention
        self.dropout_pooled = dropout_pooled
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.l2_attention = l2_attention
        self.l2_embedding = l2_embedding
        self.seed = seed
        self.device = device
        self.pretrain = pretrain
        self.deterministic = deterministic
        self.compile = compile
        self.distinct_pairs = distinct_pairs
        self.stream = stream
        self.sparse_embeddings = sparse_embeddings
        self.precision = precision
        self.preset = preset
        self.validation_fraction = validation_fraction

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # a missing cell: the CSV rules' missing value
        tags.input_tags.string = True  # text cells are categories
        return tags

    # ------------------------------------------------------------------------- the recipe and the data
    def recipe(self) -> Recipe:
        """The afm.Recipe `fit` trains: the preset's for this model with the parameters given on top."""
        settings = {name: getattr(self, name) for name in SETTINGS if getattr(self, name) is not None}
        with _one_line_errors():
            if self.preset is not None and not isinstance(self.preset, str):
                raise EstimatorError(f"preset must be a preset's name or None, not {self.preset!r}")
            return preset_recipe(self.preset, self._model, task=self._task, **settings)

    def _frame(self, X, reset: bool) -> pd.DataFrame:
        """X as a DataFrame whose columns are the fitted fields' names (x0, x1, ... for arrays),
        after scikit-learn's checks of its shape and feature names."""
        if isinstance(X, pd.DataFrame):
            validate_data(self, X, skip_check_array=True, reset=reset)
            frame = X
        else:
            array = validate_data(self, X, dtype=None, ensure_all_finite=False, reset=reset)
            frame = pd.DataFrame(array)
        if reset:
            names = getattr(self, "feature_names_in_", None)
            self._columns = [str(c) for c in names] if names is not None else [f"x{i}" for i in
                                                                                 range(frame.shape[1])]
        if len(frame) == 0:
            raise EstimatorError(f"X has 0 samples (shape {frame.shape}); at least one row is needed")
        return frame.set_axis(self._columns, axis=1)

    def _label_name(self) -> str:
        name = "label"
        while name in self._columns:
            name = f"_{name}_"
        return name

    def _held_out(self, n: int, y: np.ndarray, seed: int) -> np.ndarray:
        """(n,) bool: the validation rows, `validation_fraction` of each class for classifiers
        (so AUC can be computed on them), of all rows for regressors; at least one."""
        fraction = self.validation_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.number)) or not 0 < fraction < 1:
            raise EstimatorError(f"validation_fraction must be a number above 0 and below 1, got {fraction!r}")
        rng = np.random.default_rng(seed)
        groups = [np.flatnonzero(y == c) for c in np.unique(y)] if self._task == "binary" else [np.arange(n)]
        valid = np.zeros(n, dtype=bool)
        for rows in groups:
            take = min(max(1, int(round(fraction * len(rows)))), len(rows) - 1) if len(rows) > 1 else 0
            valid[rng.permutation(rows)[:take]] = True
        if not valid.any():
            valid[rng.integers(n)] = True
        return valid

    def _targets(self, y) -> np.ndarray:
        """y as the training labels: numbers for regressors, 0/1 for classifiers (sets classes_)."""
        return _check_y(y, y_numeric=True, estimator=self).astype(np.float64)

    # ------------------------------------------------------------------------- fit
    def fit(self, X, y):
        """Train on X (a DataFrame or a 2-D array, rows by fields) and y; returns self."""
        frame = self._frame(X, reset=True)
        if y is None:
            raise EstimatorError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        labels = self._targets(y)
        n, width = frame.shape
        if len(labels) != n:
            raise EstimatorError(f"X has {n} samples but y has {len(labels)}; give one target per row")
        if n < MIN_ROWS:
            raise EstimatorError(f"n_samples = {n}: at least {MIN_ROWS} rows are needed to hold some out for "
                                 "early stopping and train")
        if width < 2:
            raise EstimatorError(f"n_features = {width}: FM, FwFM and AFM model pairs of fields; give at least "
                                 "2 feature columns")
        recipe = self.recipe()
        valid = self._held_out(n, labels, recipe.seed)
        rows = np.arange(n)
        index = {"train": rows[~valid], "valid": rows[valid], "test": rows[:0]}
        label = self._label_name()
        with _one_line_errors():
            cells, lines = frame_text(frame.assign(**{label: labels}))
            source = "a pandas DataFrame" if isinstance(X, pd.DataFrame) else "an array"
            dataset = table_dataset(cells, lines, FRAME_SOURCE, "X", source, label, index,
                                    [f"{valid.sum()} of {n} rows held out with seed {recipe.seed}"])
            fitted = fit_recipe(recipe, dataset)
        if fitted.result.problem:
            warnings.warn(fitted.result.problem, ConvergenceWarning, stacklevel=2)
        self.checkpoint_ = fitted.checkpoint
        self.pair_importances_ = _pair_importances(fitted.checkpoint, dataset.valid)
        return self

    # ------------------------------------------------------------------------- predict
    def _raw(self, X) -> np.ndarray:
        """(n,) the model's raw output: the prediction, or the logit for classifiers."""
        check_is_fitted(self, "checkpoint_")
        frame = self._frame(X, reset=False)
        with _one_line_errors():
            encoder = TabularEncoder.of(self.checkpoint_.schema, FRAME_SOURCE)
            cells, lines = frame_text(frame)
            ids, values = encoder.transform(cells, FRAME_SOURCE, lines)
        model = self.checkpoint_.model.eval()
        device = next(model.parameters()).device
        with torch.no_grad():
            return outputs(model, torch.from_numpy(ids).to(device), torch.from_numpy(values).to(device))


class _Regressor(RegressorMixin, _AFMEstimator):
    def predict(self, X) -> np.ndarray:
        """(n,) predictions."""
        return self._raw(X).astype(np.float64)


class _Classifier(ClassifierMixin, _AFMEstimator):
    _task = "binary"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _targets(self, y) -> np.ndarray:
        y = column_or_1d(y, warn=True)
        if y.dtype == object and len({isinstance(v, str) for v in y}) > 1:  # scikit-learn: a TypeError in np.unique
            raise EstimatorError("Mix of label input types (string and number): give y as labels of one type")
        check_classification_targets(y)
        kind = type_of_target(y, input_name="y", raise_unknown=True)
        classes, encoded = np.unique(y, return_inverse=True)
        if len(classes) == 1:
            raise EstimatorError(f"y holds one class ({classes[0]!r}); a classifier needs two")
        if kind != "binary":
            raise EstimatorError(f"Only binary classification is supported. The type of the target is {kind}: "
                                 f"{len(classes)} classes, {_listed(classes)}")
        self.classes_ = classes
        return encoded.astype(np.float64)

    def decision_function(self, X) -> np.ndarray:
        """(n,) the logit of classes_[1]."""
        return self._raw(X).astype(np.float64)

    def predict_proba(self, X) -> np.ndarray:
        """(n, 2) probabilities of classes_[0] and classes_[1]."""
        positive = sigmoid(self.decision_function(X))
        return np.stack([1.0 - positive, positive], axis=1)

    def predict(self, X) -> np.ndarray:
        """(n,) the likelier class of each row."""
        positive = self.decision_function(X) > 0
        return self.classes_[positive.astype(int)]


def _listed(values, shown: int = 5) -> str:
    listed = ", ".join(repr(v) for v in values[:shown])
    return listed + (f", ... ({len(values) - shown} more)" if len(values) > shown else "")


def _pair_importances(checkpoint, rows) -> pd.Series:
    """Field pair -> mean |SII| over up to DEFAULT_ROWS rows (NaN above MAX_FIELDS fields)."""
    schema = checkpoint.schema
    names = list(schema.pair_names())
    if schema.num_fields > MAX_FIELDS:
        return pd.Series(np.nan, index=pd.Index(names, name="pair"), name=IMPORTANCE_NAME)
    model = checkpoint.model.eval()
    device = next(model.parameters()).device
    count = min(len(rows), DEFAULT_ROWS)
    ids = torch.from_numpy(np.asarray(rows.feature_ids[:count], dtype=np.int64)).to(device)
    values = torch.from_numpy(np.asarray(rows.feature_values[:count], dtype=np.float32)).to(device)
    with torch.no_grad():
        sii = pair_shapley(model, ids, values).pair_interaction  # (rows, pairs)
    importance = pd.Series(sii.abs().mean(0).double().numpy(), index=pd.Index(names, name="pair"),
                           name=IMPORTANCE_NAME)
    return importance.sort_values(ascending=False, kind="stable")


class FMRegressor(_Regressor):
    """Factorization machine (Rendle 2010) regressor; see `_AFMEstimator` for the parameters."""

    _model = "fm"


class FMClassifier(_Classifier):
    """Factorization machine binary classifier; see `_AFMEstimator` for the parameters."""

    _model = "fm"


class FwFMRegressor(_Regressor):
    """Field-weighted FM (a learned weight per field pair) regressor."""

    _model = "fwfm"


class FwFMClassifier(_Classifier):
    """Field-weighted FM binary classifier."""

    _model = "fwfm"


class AFMRegressor(_Regressor):
    """Attentional FM (Xiao et al., IJCAI 2017) regressor."""

    _model = "afm"


class AFMClassifier(_Classifier):
    """Attentional FM binary classifier."""

    _model = "afm"


__all__ = ["AFMClassifier", "AFMRegressor", "EstimatorError", "FMClassifier", "FMRegressor", "FwFMClassifier",
           "FwFMRegressor"]
