"""How good the answer is: a classified layer compared with its truth field, and what a vector file holds.

``metrics`` computes from two label arrays (no files), ``report`` reads a layer and prints, ``plot`` draws (its
matplotlib is an extra, imported only when :func:`save_plot` is called), ``layers`` describes a file's layers.
"""

from __future__ import annotations

import os
from pathlib import Path

from .layers import describe_layers, format_layers
from .metrics import ClassScore, Scores, confusion_matrix, scores
from .report import Evaluation, evaluate, format_table, model_classes


def save_plot(evaluation: Evaluation, path: str | os.PathLike[str]) -> Path:
    """Write the confusion matrix as a picture; needs ``geoclassify[plot]`` (matplotlib)."""
    from .plot import save_plot as draw_and_save

    return draw_and_save(evaluation, path)


__all__ = [
    "ClassScore",
    "Evaluation",
    "Scores",
    "confusion_matrix",
    "describe_layers",
    "evaluate",
    "format_layers",
    "format_table",
    "model_classes",
    "save_plot",
    "scores",
]
