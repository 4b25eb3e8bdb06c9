"""A reference score from outside the model family: scikit-learn's histogram gradient boosting
on the same train split, scored on the same valid and test rows with the project's metrics. A
model to explain that does much worse than this is not a good model of the data.

Each field is one column. Categorical fields (libfm fields, CSV text/boolean/integer columns)
are given as ordinal codes of their feature ids and declared categorical; a CSV numeric column
(FieldSchema.csv_encoding says "numeric") is given as its value, as the model sees it (the
standardised number). The trees split categories natively but take at most `max_bins` - 1 = 254
values per field: a field with more (Frappe's item and user) keeps its 254 most frequent training
values and pools the rest into one code, as a one-hot model with a minimum count would. Libfm
rows where a field has one feature id and varying values are numeric too (the values).
Everything else is scikit-learn's defaults but early stopping (off: the score then depends on
the train split alone) and random_state (fixed).
"""

from __future__ import annotations

import time

import numpy as np

from afm.data import Dataset, Split
from afm.metrics import binary_targets, evaluate_predictions

MAX_CATEGORIES = 254  # HistGradientBoosting's max_bins (255) less one code for the pooled rest
RANDOM_STATE = 0
MAX_TRAIN_ROWS = 2_000_000  # beyond this, a seeded sample of the training rows is fitted


def numeric_fields(dataset: Dataset) -> list[bool]:
    """Whether each field is a number (a column of values) rather than a category (of ids)."""
    encoding = dataset.schema.csv_encoding
    if encoding is not None:
        return [column.get("kind") == "numeric" for column in encoding["columns"]]
    train = dataset.train
    return [bool(len(np.unique(train.feature_ids[:, f])) == 1 and np.ptp(train.feature_values[:, f]) > 0)
            for f in range(train.num_fields)]


def _codes(train_ids: np.ndarray) -> dict[int, int]:
    """Feature id -> ordinal code for one field: the most frequent training values first."""
    ids, counts = np.unique(train_ids, return_counts=True)
    order = ids[np.argsort(-counts, kind="stable")][:MAX_CATEGORIES]
    return {int(i): code for code, i in enumerate(order)}


def feature_matrix(split: Split, numeric: list[bool], codes: list[dict[int, int] | None]) -> np.ndarray:
    """(N, F) float columns: codes for categorical fields (MAX_CATEGORIES: the pooled rest, values
    never seen in training among them), values for numeric ones."""
    columns = []
    for f, is_numeric in enumerate(numeric):
        if is_numeric:
            columns.append(split.feature_values[:, f].astype(np.float64))
            continue
        ids = split.feature_ids[:, f]
        lookup = codes[f]
        unique, inverse = np.unique(ids, return_inverse=True)
        mapped = np.array([lookup.get(int(i), MAX_CATEGORIES) for i in unique], dtype=np.float64)
        columns.append(mapped[inverse])
    return np.column_stack(columns) if columns else np.zeros((len(split), 0))


def gradient_boosting_reference(dataset: Dataset, task: str = "regression") -> dict:
    """Fit HistGradientBoostingRegressor (regression) or ...Classifier (binary) on `dataset.train`;
    the valid and test metrics as the models are scored (RMSE clipped to the training labels'
    range; AUC, log loss), and the seconds it took."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    started = time.perf_counter()
    numeric = numeric_fields(dataset)
    train = dataset.train
    if len(train) > MAX_TRAIN_ROWS:
        train = train.take(np.sort(np.random.default_rng(RANDOM_STATE).choice(len(train), MAX_TRAIN_ROWS,
                                                                              replace=False)))
    codes = [None if is_numeric else _codes(train.feature_ids[:, f]) for f, is_numeric in enumerate(numeric)]
    categorical = [not is_numeric for is_numeric in numeric]
    settings = {"categorical_features": categorical, "early_stopping": False, "random_state": RANDOM_STATE}
    features = feature_matrix(train, numeric, codes)
    if task == "binary":
        estimator = HistGradientBoostingClassifier(**settings).fit(features, binary_targets(train.labels))
    else:
        estimator = HistGradientBoostingRegressor(**settings).fit(features, train.labels.astype(np.float64))
    result = {"estimator": type(estimator).__name__, "task": task, "train_rows": len(train),
              "categorical_fields": sum(categorical), "numeric_fields": sum(numeric),
              "pooled_fields": [dataset.schema.field_names[f] for f, c in enumerate(codes)
                                if c is not None and len(np.unique(train.feature_ids[:, f])) > MAX_CATEGORIES]}
    for name in ("valid", "test"):
        split = dataset.splits[name]
        if not len(split):
            continue
        matrix = feature_matrix(split, numeric, codes)
        scores = estimator.decision_function(matrix) if task == "binary" else estimator.predict(matrix)
        metrics = evaluate_predictions(scores, split.labels, task, dataset.label_range)
        result.update({f"{name}_{key}": value for key, value in metrics.items()})
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def reference_keys(dataset: Dataset, task: str) -> dict:
    """The reference as `afm train` and `afm tune` print it beside the model's own scores:
    `reference_test_auc` and `reference_test_logloss` (binary) or `reference_test_rmse`, on the
    same test rows; {} when the data has no test rows."""
    if not len(dataset.test):
        return {}
    scores = gradient_boosting_reference(dataset, task)
    names = ("auc", "logloss") if task == "binary" else ("rmse",)
    return {f"reference_test_{name}": round(scores[f"test_{name}"], 6) for name in names
            if scores.get(f"test_{name}") is not None}
