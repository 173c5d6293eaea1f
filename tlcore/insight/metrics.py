"""Classification metrics from a confusion matrix: small pure functions on arrays, testable without a model."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def confusion_matrix(true_labels: Sequence[int], predicted_labels: Sequence[int], num_classes: int) -> np.ndarray:
    """Counts (num_classes, num_classes): row = true class, column = predicted class."""
    true_labels = np.asarray(true_labels, dtype=np.int64)
    predicted_labels = np.asarray(predicted_labels, dtype=np.int64)
    if true_labels.shape != predicted_labels.shape or true_labels.ndim != 1:
        raise ValueError(
            f"true and predicted labels must be two 1-D arrays of one length, received shapes "
            f"{true_labels.shape} and {predicted_labels.shape}."
        )
    for name, labels in (("true", true_labels), ("predicted", predicted_labels)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"{name} labels must be in [0, {num_classes - 1}], received values from "
                f"{labels.min()} to {labels.max()}."
            )
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true_labels, predicted_labels), 1)
    return matrix


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the share of each true class predicted as each class); empty rows stay 0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def per_class_scores(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix; 0 where undefined."""
    matrix = np.asarray(matrix, dtype=np.float64)
    correct = np.diag(matrix)
    predicted = matrix.sum(axis=0)
    support = matrix.sum(axis=1)
    precision = np.divide(correct, predicted, out=np.zeros_like(correct), where=predicted > 0)
    recall = np.divide(correct, support, out=np.zeros_like(correct), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(correct), where=both > 0)
    return precision, recall, f1, support.astype(np.int64)


def accuracy(matrix: np.ndarray) -> float:
    """Correct predictions over all predictions (0 for an empty matrix)."""
    matrix = np.asarray(matrix)
    total = matrix.sum()
    return float(np.trace(matrix) / total) if total else 0.0
