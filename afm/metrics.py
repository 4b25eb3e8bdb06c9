"""Evaluation metrics, computed as the papers do."""

from __future__ import annotations

import numpy as np


def rmse(predictions: np.ndarray, labels: np.ndarray, clip: tuple[float, float] | None = None) -> float:
    """Root mean squared error. With `clip`, predictions are first bounded to the label range,
    as the AFM authors' evaluate() does (their reported RMSE is the clipped one)."""
    predictions = np.asarray(predictions, dtype=np.float64)
    if clip is not None:
        predictions = np.clip(predictions, clip[0], clip[1])
    return float(np.sqrt(np.mean((predictions - np.asarray(labels, dtype=np.float64)) ** 2)))


def binary_targets(labels: np.ndarray) -> np.ndarray:
    """{-1, +1} or {0, 1} labels as {0, 1}."""
    labels = np.asarray(labels)
    values = set(np.unique(labels).tolist())
    if values <= {0.0, 1.0}:
        return labels.astype(np.float32)
    if values <= {-1.0, 1.0}:
        return (labels > 0).astype(np.float32)
    raise ValueError(f"binary task needs labels in {{0, 1}} or {{-1, +1}}, found {sorted(values)[:5]}")


def auc(scores: np.ndarray, targets: np.ndarray) -> float:
    """Area under the ROC curve via the rank-sum statistic, ties given their average rank."""
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets) > 0.5
    positives = int(targets.sum())
    negatives = len(targets) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # Average rank over each run of equal scores.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(scores)]))
    average = (starts + ends + 1) / 2.0  # 1-based mean rank of each run
    ranks[order] = np.repeat(average, ends - starts)
    return float((ranks[targets].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def log_loss(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean binary cross-entropy of logits, computed stably (no sigmoid then log)."""
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    return float(np.mean(np.logaddexp(0.0, logits) - targets * logits))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(logits, dtype=np.float64)))


def evaluate_predictions(predictions: np.ndarray, labels: np.ndarray, task: str,
                         label_range: tuple[float, float]) -> dict[str, float]:
    """All metrics of one split. Regression: clipped and unclipped RMSE. Binary: AUC, log loss
    and the RMSE of the probability against {0, 1} targets."""
    if task == "binary":
        targets = binary_targets(labels)
        return {"auc": auc(predictions, targets), "logloss": log_loss(predictions, targets),
                "rmse": rmse(sigmoid(predictions), targets)}
    return {"rmse": rmse(predictions, labels, clip=label_range), "rmse_unclipped": rmse(predictions, labels)}


# Which metric picks the best epoch, and whether lower is better.
SELECTION_METRIC = {"regression": ("rmse", True), "binary": ("auc", False)}
