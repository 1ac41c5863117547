"""The confusion matrix as a picture: counts in the cells, each row shaded by its share of that true class.

matplotlib is an extra (``geoclassify[plot]``) and is imported only when a plot is drawn, so the command line
starts as fast without it. The figure is drawn on an Agg canvas of its own, never through pyplot, so a program that
embeds geoclassify keeps its own backend and figures.
"""

from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingExtraError, OutputError
from .report import Evaluation

#: Characters per line of a class name on an axis (two lines at most).
LINE = 18


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
        figure.savefig(partial, format=kind, dpi=dpi, bbox_inches="tight", pad_inches=0.15)
        os.replace(partial, target)
    except OSError as exc:
        Path(partial).unlink(missing_ok=True)
        raise OutputError(f"plot {os.fspath(path)!r} cannot be written: {exc.strerror or exc}") from None
    return target


def draw(evaluation: Evaluation, figure_class: Any = None) -> Any:
    """The figure (a matplotlib ``Figure``), sized so that 2 to about 20 classes stay readable: the cells get
    smaller with more classes, never the text below 7 points, and long class names wrap onto two lines."""
    if figure_class is None:
        figure_class, _ = _matplotlib()
    classes = [_short(name) for name in evaluation.classes]
    n = max(1, len(classes))
    matrix = evaluation.matrix
    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    side = min(12.0, max(3.2, 0.6 * n + 1.2))  # inches of the matrix itself
    cell = 72 * side / n  # points per cell
    size, tick_size = min(14.0, max(7.0, 0.22 * cell)), min(11.0, max(7.0, 0.2 * cell))
    longest = max((len(line) for name in classes for line in name.split("\n")), default=1)
    rotate = n > 6 or longest > 10
    label = longest * tick_size * 0.62 / 72 + 0.4
    figure = figure_class(
        figsize=(side + label + 1.6, side + label * (0.75 if rotate else 0.3) + 1.2), layout="constrained"
    )
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    with_share = n <= 10
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            text = f"{int(matrix[i, j])}\n{shares[i, j]:.0%}" if with_share and rows[i, 0] else str(int(matrix[i, j]))
            colour = "white" if shares[i, j] > 0.55 else "#1f1f1f"
            weight = "bold" if i == j else "normal"
            axes.text(j, i, text, ha="center", va="center", color=colour, fontsize=size, fontweight=weight)
    ticks = np.arange(len(classes))
    axes.set_xticks(
        ticks,
        classes,
        rotation=45 if rotate else 0,
        ha="right" if rotate else "center",
        rotation_mode="anchor",
        fontsize=tick_size,
    )
    axes.set_yticks(ticks, classes, fontsize=tick_size)
    foreign = {_short(name) for name in (*evaluation.unknown_truth, *evaluation.unknown_labels)}
    for tick in [*axes.get_xticklabels(), *axes.get_yticklabels()]:
        if tick.get_text() in foreign:
            tick.set_fontstyle("italic")
            tick.set_color("#a03000")
    axes.set_xlabel(f"Predicted ({evaluation.label_field})")
    axes.set_ylabel(f"Truth ({evaluation.truth_field})")
    axes.set_xticks(ticks[:-1] + 0.5, minor=True)
    axes.set_yticks(ticks[:-1] + 0.5, minor=True)
    axes.grid(which="minor", color="white", linewidth=1.5)
    axes.tick_params(which="minor", length=0)
    for spine in axes.spines.values():
        spine.set_visible(False)
    bar = figure.colorbar(image, ax=axes, shrink=0.8)
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
    """At most two lines of ``LINE`` characters; the rest of a longer name becomes an ellipsis."""
    lines = textwrap.wrap(name, LINE, break_long_words=True) or [name]
    if len(lines) > 2:
        lines = [lines[0], lines[1][: LINE - 1] + "\u2026"]
    return "\n".join(lines)


def _listed(formats: dict[str, str]) -> str:
    return ", ".join(f".{kind}" for kind in sorted(formats) if kind != "png")
