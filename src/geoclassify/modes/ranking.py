"""What a run writes beyond the label: the runner-up classes (``top_k``), every class's probability
(``probabilities``), features left unclassified for too little valid raster (``min_coverage``), and the count per
class the summary gives.

These are applied to a whole run's predictions after they are classified (or read back from a journal), so a
resumed run gives the same rows as one that ran through, and the default path keeps one confidence per chip: only
``top_k`` > 1 or ``probabilities`` make the model hand back every class's probability.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import OutputError, SettingError
from ..fields import ResultFields, result_columns
from ..model.emd import ClassInfo

#: What the reason field holds for a feature the chip was not even cut for.
OUTSIDE_REASON = "outside the raster or on NoData only"
EMPTY_REASON = "empty geometry"


@dataclass(frozen=True)
class ResultOptions:
    """The request's settings that shape the result columns, checked."""

    top_k: int = 1
    probabilities: bool = False
    min_coverage: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise SettingError(f"«top_k» must be a whole number of 1 or more, not {self.top_k!r}")
        if self.min_coverage is not None and not 0.0 <= float(self.min_coverage) <= 1.0:
            raise SettingError(
                f"«min_coverage» is the share of the chip that must be valid raster, from 0 to 1 (0.5 for half), "
                f"not {self.min_coverage!r}"
            )

    @property
    def all_scores(self) -> bool:
        """Whether the model must hand back every class's probability, not only the winner's."""
        return self.top_k > 1 or self.probabilities

    def check_model(self, classes: Sequence[ClassInfo], source: str) -> None:
        if self.top_k > len(classes):
            raise SettingError(
                f"«top_k» is {self.top_k} but {source} has {len(classes)} classes; give at most {len(classes)}"
            )

    def added_fields(self, classes: Sequence[ClassInfo], fields: ResultFields, prefix: str) -> tuple[str, ...]:
        """The names of the fields these options add, so clashes are refused before anything is classified."""
        names: list[str] = []
        for rank in range(2, self.top_k + 1):
            names += [f"{fields.label}_{rank}", f"{fields.confidence}_{rank}"]
        if self.probabilities:
            names += [probability_field(c.name, prefix) for c in classes]
        if self.min_coverage is not None:
            names.append(reason_field(prefix))
        return tuple(names)


#: A run that asks for nothing beyond the label.
DEFAULT_OPTIONS = ResultOptions()


def check_shapefile_names(names: Sequence[str], out: object) -> None:
    """A shapefile cuts field names to 10 characters, which would make ``Prob_Damaged`` and ``Prob_Damaged2`` one
    field: refuse before anything is classified."""
    if out is None or not str(out).lower().endswith(".shp"):
        return
    long = [name for name in names if len(name) > 10]
    if long:
        raise OutputError(
            f"output fields {', '.join(repr(n) for n in long)} are longer than the 10 characters a shapefile field "
            "can have; write another format (.gpkg, .fgb, .parquet) or drop the option that adds them"
        )


def probability_field(class_name: str, prefix: str = "") -> str:
    """``Prob_<class>``, with what a field name cannot hold (spaces, punctuation) as ``_``."""
    return f"{prefix}Prob_{re.sub(r'[^0-9A-Za-z_]', '_', class_name)}"


def reason_field(prefix: str = "") -> str:
    return f"{prefix}Unclassified"


def option_columns(
    classes: tuple[ClassInfo, ...],
    class_index: np.ndarray,
    confidence: np.ndarray,
    coverage: np.ndarray,
    fields: ResultFields,
    threshold: float | None,
    options: ResultOptions,
    multi_label: bool,
    low: np.ndarray | None = None,
    empty: np.ndarray | None = None,
    prefix: str = "",
) -> pd.DataFrame:
    """The result columns of a run: :func:`~geoclassify.fields.result_columns` with the options applied.

    ``confidence`` holds every class's probability (one row per feature) for a multi-label model or when
    :attr:`ResultOptions.all_scores`; a single-label run then writes the winner's as its Confidence. ``low``
    marks the features :func:`below_coverage` unclassified (their ``class_index`` is -1 already).
    """
    probabilities = confidence if confidence.ndim == 2 else None
    reasons = None
    if options.min_coverage is not None:
        reasons = _reasons(class_index, coverage, options.min_coverage, low, empty)
    main = confidence
    if probabilities is not None and not multi_label:
        main = np.full(len(class_index), np.nan)
        chosen = class_index >= 0
        main[chosen] = probabilities[np.flatnonzero(chosen), class_index[chosen]]
    columns = result_columns(classes, class_index, main, coverage, fields, threshold)
    added: dict[str, object] = {}
    classified = class_index >= 0
    if probabilities is not None and options.top_k > 1:
        order = np.argsort(-probabilities, axis=1, kind="stable")
        names = np.array([c.name for c in classes], dtype=object)
        for rank in range(2, options.top_k + 1):
            index = order[:, rank - 1]
            label = np.where(classified, names[index], None)
            score = np.where(classified, probabilities[np.arange(len(index)), index], np.nan)
            added[f"{fields.label}_{rank}"] = pd.array(label, dtype="string")
            added[f"{fields.confidence}_{rank}"] = score
    if probabilities is not None and options.probabilities:
        for position, info in enumerate(classes):
            added[probability_field(info.name, prefix)] = np.where(classified, probabilities[:, position], np.nan)
    if reasons is not None:
        added[reason_field(prefix)] = pd.array(reasons, dtype="string")
    return pd.concat([columns, pd.DataFrame(added, index=columns.index)], axis=1) if added else columns


def below_coverage(class_index: np.ndarray, coverage: np.ndarray, options: ResultOptions) -> np.ndarray | None:
    """The classified features whose chip holds less valid raster than ``min_coverage`` (None without one)."""
    if options.min_coverage is None:
        return None
    return (class_index >= 0) & (coverage < options.min_coverage)


def _reasons(
    class_index: np.ndarray,
    coverage: np.ndarray,
    minimum: float,
    low: np.ndarray | None,
    empty: np.ndarray | None,
) -> np.ndarray:
    """Why each feature has no label (None for those that have one)."""
    reasons = np.full(len(class_index), None, dtype=object)
    reasons[class_index < 0] = OUTSIDE_REASON
    if empty is not None:
        reasons[(class_index < 0) & empty] = EMPTY_REASON
    for row in np.flatnonzero(low if low is not None else []):
        reasons[row] = f"coverage {coverage[row]:.1%} is below «min_coverage» {minimum:.1%}"
    return reasons


def class_counts(labels: pd.Series, classes: Sequence[ClassInfo], multi_label: bool) -> tuple[tuple[str, int], ...]:
    """How many features got each class, in Classes order (a multi-label feature counts for each of its labels)."""
    values = labels.dropna().astype(str)
    if multi_label:
        values = values.str.split(";").explode()
        values = values[values != ""]
    counted = values.value_counts()
    return tuple((c.name, int(counted.get(c.name, 0))) for c in classes)
