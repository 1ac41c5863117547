"""The confusion matrix as a picture: counts in the cells, each row shaded by its share of that true class.

matplotlib is an extra (``geoclassify[plot]``) and is imported only when a plot is drawn, so the command line
starts as fast without it. The figure is drawn on an Agg canvas of its own, never through pyplot, so a program that
embeds geoclassify keeps its own backend and figures.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingExtraError, OutputError
from .report import Evaluation

#: Longest class name shown in full on an axis; longer ones end in an ellipsis.
NAME_LIMIT = 24


def save_plot(evaluation: Evaluation, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Draw the matrix and write it to ``path`` (PNG, or another format matplotlib knows by the extension)."""
    figure_class, canvas_class = _matplotlib()
    target = Path(path)
    kind = target.suffix.lower().lstrip(".")
    canvas = canvas_class(figure_class())
    formats = canvas.get_supported_filetypes()
    if kind not in formats:
        raise OutputError(f"plot {os.fspath(path)!r}: give a file name ending in .png (or {_listed(formats)})")
    if not target.parent.is_dir():
        raise OutputError(f"plot {os.fspath(path)!r}: folder {os.fspath(target.parent)!r} does not exist")
    figure = draw(evaluation, figure_class)
    canvas_class(figure)
    # Written beside the target and renamed over it, so a failure never leaves half a picture (nor the old one gone).
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial.{kind}")
    try:
        figure.savefig(partial, format=kind, dpi=dpi)
        os.replace(partial, target)
    except OSError as exc:
        Path(partial).unlink(missing_ok=True)
        raise OutputError(f"plot {os.fspath(path)!r} cannot be written: {exc.strerror or exc}") from None
    return target


def draw(evaluation: Evaluation, figure_class: Any = None) -> Any:
    """The figure (a matplotlib ``Figure``), sized so that 2 to about 20 classes stay readable."""
    if figure_class is None:
        figure_class, _ = _matplotlib()
    classes = [_short(name) for name in evaluation.classes]
    n = max(1, len(classes))
    matrix = evaluation.matrix
    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    longest = max((len(name) for name in classes), default=1)
    side = min(13.0, max(3.2, 0.55 * n + 1.6))
    margin = min(3.0, 0.5 + 0.075 * longest)
    figure = figure_class(figsize=(side + margin + 1.4, side + margin + 0.6), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    size = max(6.0, min(13.0, 26.0 / math.sqrt(n)))
    with_share = n <= 10
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            count = int(matrix[i, j])
            text = f"{count}\n{shares[i, j]:.0%}" if with_share and rows[i, 0] else str(count)
            colour = "white" if shares[i, j] > 0.55 else "#1f1f1f"
            weight = "bold" if i == j else "normal"
            axes.text(j, i, text, ha="center", va="center", color=colour, fontsize=size, fontweight=weight)
    ticks = np.arange(len(classes))
    rotate = n > 6 or longest > 10
    axes.set_xticks(ticks, classes, rotation=45 if rotate else 0, ha="right" if rotate else "center",
                    rotation_mode="anchor", fontsize=max(6.0, size * 0.85))
    axes.set_yticks(ticks, classes, fontsize=max(6.0, size * 0.85))
    foreign = set(evaluation.unknown_truth) | set(evaluation.unknown_labels)
    for label in [*axes.get_xticklabels(), *axes.get_yticklabels()]:
        if label.get_text() in {_short(name) for name in foreign}:
            label.set_fontstyle("italic")
            label.set_color("#a03000")
    axes.set_xlabel(f"Predicted ({evaluation.label_field})")
    axes.set_ylabel(f"Truth ({evaluation.truth_field})")
    axes.set_xticks(ticks[:-1] + 0.5, minor=True)
    axes.set_yticks(ticks[:-1] + 0.5, minor=True)
    axes.grid(which="minor", color="white", linewidth=1.5)
    axes.tick_params(which="minor", length=0)
    for spine in axes.spines.values():
        spine.set_visible(False)
    bar = figure.colorbar(image, ax=axes, shrink=0.8, fraction=0.05)
    bar.set_label("share of the true class (row)")
    bar.ax.yaxis.set_major_formatter(_percent_formatter())
    accuracy = "n/a" if math.isnan(evaluation.accuracy) else f"{evaluation.accuracy:.1%}"
    kappa = "n/a" if math.isnan(evaluation.kappa) else f"{evaluation.kappa:.3f}"
    figure.suptitle(f"Accuracy {accuracy}   Cohen's kappa {kappa}", fontsize=13, fontweight="bold")
    notes = [f"{evaluation.evaluated} features compared"]
    if evaluation.unclassified:
        notes.append(f"{evaluation.unclassified} not classified")
    if evaluation.no_truth:
        notes.append(f"{evaluation.no_truth} without truth")
    if foreign:
        notes.append("classes in italics are not the model's")
    axes.set_title(", ".join(notes), fontsize=9, color="#444444")
    return figure


def _matplotlib() -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError(
            "drawing the confusion matrix needs matplotlib: pip install 'geoclassify[plot]'"
        ) from None
    return Figure, FigureCanvasAgg


def _percent_formatter() -> Any:
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(xmax=1.0, decimals=0)


def _short(name: str) -> str:
    return name if len(name) <= NAME_LIMIT else name[: NAME_LIMIT - 1] + "\u2026"


def _listed(formats: dict[str, str]) -> str:
    return ", ".join(f".{kind}" for kind in sorted(formats) if kind != "png")
