"""Agreement between two label arrays: confusion matrix, accuracy, Cohen's kappa, per-class precision/recall/F1.

Knows no files and no models: callers clean the labels (no empty values left) and choose the class order, so the
same figures come out whether the labels came from a GeoPackage, a DataFrame or a test. Written with numpy because
these few lines do not justify a scikit-learn dependency; the tests check them against scikit-learn where it is
installed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassScore:
    """One class's figures. ``None`` where the figure is undefined: precision of a class never predicted, recall of
    a class absent from the truth, F1 of a class in neither (reported as such rather than as a misleading 0)."""

    name: str
    precision: float | None
    recall: float | None
    f1: float | None
    support: int

    def to_dict(self) -> dict[str, str | float | int | None]:
        return {
            "class": self.name,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "support": self.support,
        }


@dataclass(frozen=True)
class Scores:
    """The figures of one comparison. ``matrix[i, j]`` counts features of true class ``classes[i]`` predicted as
    ``classes[j]``; ``accuracy`` and ``kappa`` are NaN when there is nothing to compare, ``kappa`` also when
    truth and predictions are both one and the same class (chance agreement is then 1, so kappa is 0/0)."""

    classes: tuple[str, ...]
    matrix: np.ndarray
    accuracy: float
    kappa: float
    per_class: tuple[ClassScore, ...]

    @property
    def count(self) -> int:
        return int(self.matrix.sum())


def confusion_matrix(
    truth: Sequence[str] | np.ndarray, predicted: Sequence[str] | np.ndarray, classes: Sequence[str]
) -> np.ndarray:
    """Counts of (truth, predicted) pairs, rows and columns in ``classes`` order; every label must be a class."""
    truth, predicted = np.asarray(truth, dtype=object), np.asarray(predicted, dtype=object)
    if truth.shape != predicted.shape or truth.ndim != 1:
        raise ValueError(f"truth and predictions differ in shape: {truth.shape} and {predicted.shape}")
    index = {name: i for i, name in enumerate(classes)}
    if len(index) != len(classes):
        raise ValueError("classes must not repeat a name")
    missing = sorted({str(v) for v in (*truth, *predicted) if v not in index})
    if missing:
        raise ValueError(f"labels that are no class: {', '.join(missing)}")
    rows = np.fromiter((index[v] for v in truth), dtype=np.int64, count=len(truth))
    columns = np.fromiter((index[v] for v in predicted), dtype=np.int64, count=len(predicted))
    n = len(classes)
    return np.bincount(rows * n + columns, minlength=n * n).reshape(n, n)


def scores_from_matrix(matrix: np.ndarray, classes: Sequence[str]) -> Scores:
    """Accuracy, Cohen's kappa and per-class figures of a confusion matrix (rows truth, columns predicted)."""
    matrix = np.asarray(matrix, dtype=np.int64)
    if matrix.shape != (len(classes), len(classes)):
        raise ValueError(f"a {matrix.shape} matrix for {len(classes)} classes")
    total = int(matrix.sum())
    correct = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    if total == 0:
        accuracy = kappa = math.nan
    else:
        accuracy = float(correct.sum() / total)
        chance = float((support.astype(np.float64) * predicted).sum() / (float(total) * total))
        kappa = math.nan if chance == 1.0 else (accuracy - chance) / (1.0 - chance)
    per_class = []
    for i, name in enumerate(classes):
        tp = int(matrix[i, i])
        precision = tp / int(predicted[i]) if predicted[i] else None
        recall = tp / int(support[i]) if support[i] else None
        # 2tp / (2tp + fp + fn): equal to the harmonic mean where both are defined, and defined (0) when one is not.
        seen = int(predicted[i]) + int(support[i])
        f1 = 2 * tp / seen if seen else None
        per_class.append(ClassScore(str(name), precision, recall, f1, int(support[i])))
    return Scores(tuple(str(c) for c in classes), matrix, accuracy, kappa, tuple(per_class))


def scores(truth: Sequence[str] | np.ndarray, predicted: Sequence[str] | np.ndarray, classes: Sequence[str]) -> Scores:
    """The figures of two label arrays, in ``classes`` order."""
    return scores_from_matrix(confusion_matrix(truth, predicted, classes), classes)
