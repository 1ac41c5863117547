"""Features into the raster's coordinate system, feature by feature fault-tolerant, to cut their chips there.

The output keeps the original geometries; these copies only place chips. A feature PROJ cannot express in the
raster's CRS (too far outside the projection's area) counts as outside the raster, with a warning.
"""

from __future__ import annotations

import os

import geopandas as gpd
import numpy as np
import shapely
from pyproj import Transformer
from pyproj.exceptions import CRSError
from rasterio.crs import CRS

from ..errors import CRSMismatchError, GeoclassifyWarning
from ..fields import describe
from ..hooks import warn

PathLike = str | os.PathLike[str]


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
        warn(
            GeoclassifyWarning(
                f"{lost} feature(s) of {describe(features)} lie too far from raster {raster_label!r} to be "
                f"expressed in its CRS ({crs.to_string() if crs else None}); they count as outside the raster"
            )
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
