"""Turning predictions into output rows: field names and clashes, CRS alignment, and the result columns."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer
from pyproj.exceptions import CRSError
from rasterio.crs import CRS

from .errors import CRSMismatchError, GeoclassifyWarning, OutputError
from .model.emd import ClassInfo

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
    return "the features" if isinstance(features, gpd.GeoDataFrame) else repr(os.fspath(features))


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


def geometries_in(
    frame: gpd.GeoDataFrame, crs: CRS | None, raster_label: str, features: PathLike | gpd.GeoDataFrame
) -> np.ndarray:
    """Copies of the frame's geometries in ``crs`` (the raster's); the frame itself keeps the originals."""
    moved, lost, placed = reproject(frame, crs, raster_label, features)
    check_lost(lost, placed, frame.crs, crs, raster_label, features)
    return moved


def reproject(
    frame: gpd.GeoDataFrame, crs: CRS | None, raster_label: str, features: PathLike | gpd.GeoDataFrame
) -> tuple[np.ndarray, int, int]:
    """(geometries in ``crs``, how many could not be expressed there, how many have a geometry): a big layer is
    reprojected batch by batch and :func:`check_lost` judges the totals."""
    if crs is None and frame.crs is None:
        return frame.geometry.to_numpy(), 0, 0
    if crs is None:
        raise CRSMismatchError(
            f"raster {raster_label!r} has no coordinate system but {describe(features)} has one "
            f"({frame.crs.to_string()}); assign the raster its CRS (e.g. gdal_edit.py -a_srs)"
        )
    if frame.crs is None:
        raise CRSMismatchError(
            f"{describe(features)} has no coordinate system but raster {raster_label!r} has one "
            f"({crs.to_string()}); assign the layer its CRS (e.g. ogr2ogr -a_srs)"
        )
    if frame.crs == crs:
        return frame.geometry.to_numpy(), 0, 0
    problem = ""
    if frame.crs.is_geographic and len(frame):
        minx, miny, maxx, maxy = frame.total_bounds
        if min(minx, miny) < -360 or max(maxx, maxy) > 360:
            problem = f"its coordinates ({minx:.6g}, {miny:.6g}, {maxx:.6g}, {maxy:.6g}) are not degrees"
    if not problem:
        try:
            moved, lost = _transform(frame.geometry.to_numpy(), frame.crs, crs)
            original = frame.geometry.to_numpy()
            placed = int((~(shapely.is_missing(original) | shapely.is_empty(original))).sum())
            return moved, lost, placed
        except (CRSError, ValueError) as exc:
            problem = str(exc)
    raise _cannot_reproject(frame.crs, crs, raster_label, features, problem)


def check_lost(
    lost: int,
    placed: int,
    source: CRS | None,
    crs: CRS | None,
    raster_label: str,
    features: PathLike | gpd.GeoDataFrame,
) -> None:
    """No feature expressible in the raster's CRS is an error; some not, a warning (they count as outside)."""
    if lost and lost == placed:
        raise _cannot_reproject(source, crs, raster_label, features, "no feature can be expressed in the raster's CRS")
    if lost:
        warnings.warn(
            f"{lost} feature(s) of {describe(features)} lie too far from raster {raster_label!r} to be "
            f"expressed in its CRS ({crs.to_string() if crs else None}); they count as outside the raster",
            GeoclassifyWarning,
            stacklevel=3,
        )


def _cannot_reproject(
    source: CRS | None, crs: CRS | None, raster_label: str, features: PathLike | gpd.GeoDataFrame, problem: str
) -> CRSMismatchError:
    return CRSMismatchError(
        f"cannot reproject {describe(features)} from {source.to_string() if source else None} to the CRS of raster "
        f"{raster_label!r} ({crs.to_string() if crs else None}): {problem}. Check the layer's CRS (a GeoJSON "
        "without one is read as WGS 84)."
    )


#: Stands for a feature that cannot be expressed in the raster's CRS: it lies outside any raster there.
NOWHERE = shapely.Point(float("nan"), float("nan"))


def _transform(geometries: np.ndarray, source: CRS, target: CRS) -> tuple[np.ndarray, int]:
    """Reproject coordinates with PROJ, feature by feature fault-tolerant: a feature with any coordinate PROJ
    cannot convert (too far outside the target projection's area) becomes :data:`NOWHERE`."""
    transformer = Transformer.from_crs(source, target, always_xy=True)
    geometries = shapely.force_2d(np.asarray(geometries, dtype=object))  # chips need only x and y
    coords, index = shapely.get_coordinates(geometries, return_index=True)
    with np.errstate(all="ignore"):
        x, y = transformer.transform(coords[:, 0], coords[:, 1], errcheck=False)
    good = np.isfinite(x) & np.isfinite(y)
    bad = np.unique(index[~good])
    result = geometries.copy()
    result[bad] = None
    keep = ~np.isin(index, bad)
    result = shapely.set_coordinates(result, np.column_stack([x[keep], y[keep]]))
    result[bad] = NOWHERE
    return result, len(bad)


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
    geometry = frame.geometry.name
    ordered = [c for c in frame.columns if c != geometry] + [geometry]
    return gpd.GeoDataFrame(frame[ordered], geometry=geometry, crs=frame.crs)
