"""Evaluating a classified layer against a truth field: what is read, what counts, and the printed table.

Rules a user can rely on (the README's "How good is the answer" says the same):

- Values are compared as text, stripped of surrounding blanks; a whole number stored as a float (``2.0``, as a
  shapefile may give it) reads as ``2``.
- A feature whose truth is empty (null or blank) is skipped and counted (``no_truth``); one with a truth but an
  empty label was not classified and is counted apart (``unclassified``), outside the matrix and the figures.
- Classes are in the model's order when the classes are known (``--model``; ``classes=``), else sorted (numbers by
  value, and digit runs in names as numbers: "class 2" before "class 10"), so the matrix does not depend on the
  order of the rows.
- A truth value or label that is no class of the model warns and still counts, as a class of its own after the
  model's: a feature whose true class the model cannot predict is an error the figures must show.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
from pyogrio.errors import DataLayerError, DataSourceError

from ..errors import (
    FeatureSourceError,
    FieldNotFoundError,
    GeoclassifyWarning,
    NothingToEvaluateWarning,
    SettingError,
    UnknownClassWarning,
    UnsupportedModelError,
)
from ..fields import DEFAULT_LABEL_FIELD
from ..io.images import is_remote
from ..io.layers import PARQUET_SUFFIXES, layer_info, list_layers, resolve_layer
from ..model.packages import open_package
from .metrics import ClassScore, Scores, scores

DIGITS = re.compile(r"(\d+)")
#: How many unknown values a warning names before it says "and N more".
SHOWN = 5


@dataclass(frozen=True)
class Evaluation:
    """How well a layer's labels agree with its truth field: the figures and what was left out of them."""

    scores: Scores
    total: int
    unclassified: int
    no_truth: int
    unknown_truth: tuple[str, ...] = ()
    unknown_labels: tuple[str, ...] = ()
    source: str = "<DataFrame>"
    layer: str | None = None
    truth_field: str = ""
    label_field: str = DEFAULT_LABEL_FIELD
    model_classes: tuple[str, ...] | None = field(default=None, repr=False)

    @property
    def accuracy(self) -> float:
        return self.scores.accuracy

    @property
    def kappa(self) -> float:
        return self.scores.kappa

    @property
    def classes(self) -> tuple[str, ...]:
        return self.scores.classes

    @property
    def matrix(self) -> np.ndarray:
        return self.scores.matrix

    @property
    def per_class(self) -> tuple[ClassScore, ...]:
        return self.scores.per_class

    @property
    def evaluated(self) -> int:
        return self.scores.count

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN (nothing to compare, or kappa undefined) becomes None."""
        return {
            "accuracy": _finite(self.accuracy),
            "kappa": _finite(self.kappa),
            "per_class": [score.to_dict() for score in self.per_class],
            "confusion_matrix": {"labels": list(self.classes), "matrix": self.matrix.tolist()},
            "total": self.total,
            "evaluated": self.evaluated,
            "unclassified": self.unclassified,
            "no_truth": self.no_truth,
            "unknown_classes": {"truth": list(self.unknown_truth), "labels": list(self.unknown_labels)},
            "source": {"path": self.source, "layer": self.layer},
            "truth_field": self.truth_field,
            "label_field": self.label_field,
        }


def evaluate(
    layer: str | os.PathLike[str] | pd.DataFrame,
    truth_field: str,
    label_field: str = DEFAULT_LABEL_FIELD,
    layer_name: str | None = None,
    classes: Sequence[str] | None = None,
) -> Evaluation:
    """Compare ``label_field`` (what a run wrote) with ``truth_field`` in a layer file or a DataFrame.

    ``classes`` (e.g. :func:`model_classes`) fixes the class order and tells which values are the model's.
    """
    if truth_field == label_field:
        raise SettingError(f"the truth field and the label field are both {truth_field!r}; give two fields")
    if isinstance(layer, pd.DataFrame):
        source, chosen = "<DataFrame>", None
        _check_fields(source, None, [str(c) for c in layer.columns], truth_field, label_field)
        truth_values, label_values = layer[truth_field].tolist(), layer[label_field].tolist()
    else:
        source = os.fspath(layer)
        chosen, truth_values, label_values = _read_fields(source, layer_name, truth_field, label_field)
    truth = clean_labels(truth_values)
    predicted = clean_labels(label_values)
    has_truth = np.array([t is not None for t in truth], dtype=bool)
    has_label = np.array([p is not None for p in predicted], dtype=bool)
    keep = has_truth & has_label
    truth_kept, predicted_kept = truth[keep], predicted[keep]
    known = tuple(str(c) for c in classes) if classes is not None else None
    if known is not None and len(set(known)) != len(known):
        repeated = sorted({c for c in known if known.count(c) > 1})
        raise SettingError(f"«classes» names {', '.join(map(repr, repeated))} more than once; give each class once")
    order, unknown_truth, unknown_labels = class_order(truth_kept, predicted_kept, known)
    where = f"{source!r}" + (f" (layer {chosen!r})" if chosen else "")
    if known is not None:
        _warn_unknown(truth_kept, unknown_truth, f"truth field {truth_field!r} of {where}", "cannot predict")
        _warn_unknown(predicted_kept, unknown_labels, f"label field {label_field!r} of {where}", "never gives")
    evaluation = Evaluation(
        scores(truth_kept, predicted_kept, order),
        total=len(truth),
        unclassified=int((has_truth & ~has_label).sum()),
        no_truth=int((~has_truth).sum()),
        unknown_truth=unknown_truth,
        unknown_labels=unknown_labels,
        source=source,
        layer=chosen,
        truth_field=truth_field,
        label_field=label_field,
        model_classes=known,
    )
    if evaluation.evaluated == 0:
        warnings.warn(
            f"nothing to evaluate in {where}: of {evaluation.total} features, {evaluation.no_truth} have no truth "
            f"and {evaluation.unclassified} were not classified",
            NothingToEvaluateWarning,
            stacklevel=2,
        )
    return evaluation


def model_classes(model: str | os.PathLike[str]) -> tuple[str, ...]:
    """The class names of a model package in its output order, from its EMD (the runtime is not loaded)."""
    definition = open_package(model).definition
    if definition.multi_label:
        raise UnsupportedModelError(
            f"{definition.source}: a multi-label model (MetaDataMode MultiLabeled_Tiles) gives each feature a set of "
            "classes, which a confusion matrix cannot compare; evaluate a single-label model's output"
        )
    return tuple(definition.class_names)


def clean_labels(values: Sequence[Any]) -> np.ndarray:
    """Each value as comparable text, ``None`` where it is empty (null, NaN, blank)."""
    texts = np.empty(len(values), dtype=object)
    texts[:] = [_text(v) for v in values]
    return texts


def class_order(
    truth: np.ndarray, predicted: np.ndarray, known: tuple[str, ...] | None
) -> tuple[list[str], tuple[str, ...], tuple[str, ...]]:
    """The matrix's classes, and the truth values and labels that are not among ``known``."""
    seen = set(truth) | set(predicted)
    if known is None:
        return sorted(seen, key=_natural_key(seen)), (), ()
    known_set = set(known)
    extra_truth = sorted(set(truth) - known_set, key=_natural_key(seen))
    extra_labels = sorted(set(predicted) - known_set - set(extra_truth), key=_natural_key(seen))
    unknown_labels = tuple(sorted(set(predicted) - known_set, key=_natural_key(seen)))
    return [*known, *extra_truth, *extra_labels], tuple(extra_truth), unknown_labels


def format_table(evaluation: Evaluation) -> str:
    """The text a person reads: headline figures, per-class figures and the matrix (rows truth, columns predicted)."""
    classes = evaluation.classes
    where = evaluation.source + (f" (layer {evaluation.layer})" if evaluation.layer else "")
    lines = [
        f"Evaluated {where}: {evaluation.label_field} against {evaluation.truth_field}",
        f"Features     {evaluation.total} read, {evaluation.evaluated} compared, {evaluation.unclassified} "
        f"not classified, {evaluation.no_truth} without truth",
        f"Accuracy     {_percent(evaluation.accuracy)}"
        + (f" ({int(np.trace(evaluation.matrix))} of {evaluation.evaluated})" if evaluation.evaluated else ""),
        f"Kappa        {_number(evaluation.kappa)}",
        "",
    ]
    width = max([5, *(len(c) for c in classes)])
    lines.append(f"{'class':<{width}}  precision  recall      f1  support")
    for score in evaluation.per_class:
        lines.append(
            f"{score.name:<{width}}  {_number(score.precision):>9}  {_number(score.recall):>6}  "
            f"{_number(score.f1):>6}  {score.support:>7}"
        )
    lines += ["", "Confusion matrix (rows: truth, columns: predicted)"]
    cells = [[str(v) for v in row] for row in evaluation.matrix.tolist()]
    column = max([1, *(len(c) for c in classes), *(len(v) for row in cells for v in row)])
    lines.append(" " * width + "  " + "  ".join(f"{c:>{column}}" for c in classes))
    for name, row in zip(classes, cells, strict=True):
        lines.append(f"{name:<{width}}  " + "  ".join(f"{v:>{column}}" for v in row))
    return "\n".join(line.rstrip() for line in lines)


def _read_fields(
    source: str, layer_name: str | None, truth_field: str, label_field: str
) -> tuple[str | None, list[Any], list[Any]]:
    if not is_remote(source) and not Path(source).exists():
        raise FeatureSourceError(f"layer {source!r} not found; give the path of a classified layer")
    parquet = source.lower().endswith(PARQUET_SUFFIXES)
    chosen = None if parquet else resolve_layer(source, layer_name)
    if not parquet and layer_name is None and len(layers := list_layers(source)) > 1:
        warnings.warn(
            f"{source!r} has {len(layers)} layers ({', '.join(layers)}); evaluating {chosen!r}, the first. "
            "Choose one with «layer_name».",
            GeoclassifyWarning,
            stacklevel=3,
        )
    fields = [str(f) for f in layer_info(source, chosen)["fields"]]
    _check_fields(source, chosen, fields, truth_field, label_field)
    try:
        if parquet:
            table = pq.read_table(source, columns=[truth_field, label_field])
        else:
            _, table = pyogrio.read_arrow(source, layer=chosen, columns=[truth_field, label_field], read_geometry=False)
        return chosen, table.column(truth_field).to_pylist(), table.column(label_field).to_pylist()
    except (DataSourceError, DataLayerError, OSError, ValueError, pa.ArrowException) as exc:
        raise FeatureSourceError(f"layer {source!r} cannot be read ({exc})") from None


def _check_fields(source: str, layer: str | None, fields: list[str], truth_field: str, label_field: str) -> None:
    where = f"layer {source!r}" + (f" ({layer!r})" if layer else "")
    for role, name, setting in (("truth", truth_field, "truth_field"), ("label", label_field, "label_field")):
        if name in fields:
            continue
        alike = [f for f in fields if f.lower() == name.lower()]
        hint = f" (did you mean {alike[0]!r}?)" if alike else ""
        raise FieldNotFoundError(
            f"{where} has no {role} field {name!r}{hint}; its fields: {', '.join(fields) or 'none'}. "
            f"Give one of them as «{setting}»."
        )


def _warn_unknown(values: np.ndarray, unknown: tuple[str, ...], what: str, verb: str) -> None:
    if not unknown:
        return
    wanted = set(unknown)
    counts = Counter(v for v in values if v in wanted)
    shown = ", ".join(f"{name!r} ({counts[name]})" for name in unknown[:SHOWN])
    more = f" and {len(unknown) - SHOWN} more" if len(unknown) > SHOWN else ""
    warnings.warn(
        f"{what} holds {len(unknown)} value{'s' * (len(unknown) > 1)} that {'are' if len(unknown) > 1 else 'is'} no "
        f"class of the model: {shown}{more} (features in brackets); each counts as a class of its own, which the "
        f"model {verb}",
        UnknownClassWarning,
        stacklevel=3,
    )


def _text(value: Any) -> str | None:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    text = str(value).strip()
    return text or None


def _natural_key(values: set[str]) -> Any:
    """Numbers by value when every label is one ("2" before "10"), else text with its digit runs as numbers
    ("class 2" before "class 10"), ties broken by the text itself so the order never depends on the rows."""
    try:
        numbers = all(math.isfinite(float(value)) for value in values)
    except ValueError:
        numbers = False
    if numbers:
        return lambda value: (float(value), value)
    return lambda value: (
        [(0, int(part), "") if part.isdecimal() else (1, 0, part.casefold()) for part in DIGITS.split(value)],
        value,
    )


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}%"


def _number(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"
