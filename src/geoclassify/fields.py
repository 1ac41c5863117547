"""Turning predictions into output rows: field names and clashes, CRS alignment, and the result columns."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import OutputError
from .model.emd import ClassInfo

if TYPE_CHECKING:
    # Imported where the rows are made: the command line reads DEFAULT_LABEL_FIELD without paying for pandas.
    import geopandas as gpd
    import pandas as pd

DEFAULT_LABEL_FIELD = "ClassLabel"


@dataclass(frozen=True)
class ResultFields:
    """The names of the fields a run adds. A prefix before all of them lets one layer carry the results of
    several models (``m1_ClassLabel``, ``m2_ClassLabel``, ...)."""

    label: str = DEFAULT_LABEL_FIELD
    value: str = "ClassValue"
    confidence: str = "Confidence"
    coverage: str = "Coverage"

    @classmethod
    def named(cls, label_field: str = DEFAULT_LABEL_FIELD, prefix: str = "") -> ResultFields:
        return cls(*(prefix + name for name in (label_field, cls.value, cls.confidence, cls.coverage)))

    def __iter__(self) -> Iterator[str]:
        return iter((self.label, self.value, self.confidence, self.coverage))


PathLike = str | os.PathLike[str]


def describe(features: PathLike | gpd.GeoDataFrame) -> str:
    return repr(os.fspath(features)) if isinstance(features, str | os.PathLike) else "the features"


def check_fields(
    columns: list[str] | None,
    fields: ResultFields,
    features: PathLike | gpd.GeoDataFrame | None,
    out: PathLike | None,
    extra: tuple[str, ...] = (),
) -> None:
    """Refuse result fields that are empty, too long for a shapefile, or already in the input (case-blind)."""
    label_field = fields.label
    if not label_field or not label_field.strip():
        raise OutputError("the label field name is empty; give «class_label_field» a name such as ClassLabel")
    if out is not None and os.fspath(out).lower().endswith(".shp"):
        for name in fields:
            if len(name) > 10:
                option = "«class_label_field»" if name == label_field else "«field_prefix»"
                raise OutputError(
                    f"output field {name!r} is longer than the 10 characters a shapefile field can have; "
                    f"choose a shorter {option} or another output format"
                )
    added = (*fields, *extra)
    if len({name.lower() for name in added}) != len(added):
        raise OutputError(f"«class_label_field» {label_field!r} clashes with an output field; choose another name")
    if columns is None:
        return
    existing = {str(c).lower(): str(c) for c in columns}
    for name in added:
        if name.lower() in existing:
            hint = (
                "choose another «class_label_field»"
                if name == label_field
                else "rename or drop that field, or give the new fields a «field_prefix»"
            )
            raise OutputError(
                f"{describe(features)} already has a field {existing[name.lower()]!r}, which the output "
                f"needs for {name}; {hint}"
            )


def result_columns(
    classes: tuple[ClassInfo, ...],
    class_index: np.ndarray,
    confidence: np.ndarray,
    coverage: np.ndarray,
    fields: ResultFields,
    threshold: float | None = None,
) -> pd.DataFrame:
    """Label, ClassValue, Confidence and Coverage for class indexes (-1: not classified).

    A multi-label model's ``confidence`` holds every class's probability (one row per feature); its label is then
    the ``;``-joined names reaching ``threshold`` and its Confidence the ``;``-joined probabilities, as Esri writes.
    """
    import pandas as pd

    names = np.array([c.name for c in classes] + [None], dtype=object)
    classified = class_index >= 0
    if confidence.ndim == 2:
        labels, scores = _multi_labels(names[:-1], classified, confidence, 0.5 if threshold is None else threshold)
        return pd.DataFrame(
            {
                fields.label: pd.array(labels, dtype="string"),
                fields.value: pd.array([pd.NA] * len(classified), dtype="Int64"),
                fields.confidence: pd.array(scores, dtype="string"),
                fields.coverage: coverage,
            }
        )
    values = np.array([c.value for c in classes] + [0], dtype=np.int64)
    class_values = pd.array(values[class_index], dtype="Int64")
    class_values[~classified] = pd.NA
    return pd.DataFrame(
        {
            fields.label: pd.array(names[class_index], dtype="string"),
            fields.value: class_values,
            fields.confidence: np.where(classified, confidence, np.nan),
            fields.coverage: coverage,
        }
    )


def _multi_labels(
    names: np.ndarray, classified: np.ndarray, probabilities: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Esri's multi-label strings: names with p >= threshold in Classes order (may be ""), every p as float32 text.

    The label is judged on the float32 values written, so a Confidence of 0.5 and a threshold of 0.5 always agree.
    """
    labels = np.full(len(classified), None, dtype=object)
    scores = np.full(len(classified), None, dtype=object)
    for row in np.flatnonzero(classified):
        p = probabilities[row].astype(np.float32)
        labels[row] = ";".join(names[p >= threshold])
        scores[row] = ";".join(str(float(v)) for v in p)
    return labels, scores


def geometry_last(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """GIS users expect the geometry column last."""
    import geopandas as gpd

    geometry = frame.geometry.name
    ordered = [c for c in frame.columns if c != geometry] + [geometry]
    return gpd.GeoDataFrame(frame[ordered], geometry=geometry, crs=frame.crs)
