"""Backend-free analysis of test predictions: the worst classified images, the confusion matrix."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WorstImage:
    """One badly classified test image; rank 1 is the worst."""

    rank: int
    index: int  # position in the test set (row of probs / labels)
    true: int
    pred: int
    true_prob: float
    pred_prob: float


def _check(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs, labels = np.asarray(probs), np.asarray(labels)
    if probs.ndim != 2 or labels.shape != (len(probs),):
        raise ValueError(f"probs must be N x C and labels N, got {probs.shape} and {labels.shape}")
    return probs, labels.astype(np.int64)


def predictions(probs: np.ndarray) -> np.ndarray:
    """Predicted class per row: argmax, the lowest class index on ties."""
    return np.asarray(probs).argmax(axis=1)


def worst_classified(probs: np.ndarray, labels: np.ndarray, k: int = 10) -> list[WorstImage]:
    """Among misclassified images, the k with the lowest probability for their true class.

    Listed as the report's table is: rank k first, down to rank 1 (the lowest true-class probability).
    Equal true-class probabilities are ordered by image index ascending: the lower index ranks worse.
    Fewer than k misclassified images gives them all; none gives [].
    """
    probs, labels = _check(probs, labels)
    pred = predictions(probs)
    wrong = np.flatnonzero(pred != labels)
    true_prob = probs[wrong, labels[wrong]]
    worst_first = wrong[np.lexsort((wrong, true_prob))][:k]  # lexsort: last key is the primary one
    picked = [WorstImage(rank=r, index=int(i), true=int(labels[i]), pred=int(pred[i]),
                         true_prob=float(probs[i, labels[i]]), pred_prob=float(probs[i, pred[i]]))
              for r, i in enumerate(worst_first, start=1)]
    return picked[::-1]


def confusion_counts(probs: np.ndarray, labels: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """C x C counts, rows = true class, columns = predicted class (sklearn's convention)."""
    from sklearn.metrics import confusion_matrix  # slow import (seconds); compare.py never needs it

    probs, labels = _check(probs, labels)
    n = probs.shape[1] if n_classes is None else n_classes
    return confusion_matrix(labels, predictions(probs), labels=np.arange(n))


def row_normalised(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its total (the recall per true class); an empty row stays 0."""
    totals = counts.sum(axis=1, keepdims=True)
    return counts / np.maximum(totals, 1)
