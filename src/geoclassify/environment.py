"""Esri's analysis environments that change *what* is classified: extent, cell size, resampling method, output
coordinate system, and the processing mode for image collections."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import shapely
from pyproj import CRS as ProjCRS
from pyproj.exceptions import CRSError
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import transform_geom

from .errors import SettingError

ProcessingMode = Literal["mosaic", "items"]
#: Esri's names for the processing modes, accepted as synonyms.
PROCESSING_MODES = {
    "mosaic": "mosaic",
    "process_as_mosaicked_image": "mosaic",
    "items": "items",
    "process_items_separately": "items",
}

#: Esri's Resampling Method environment (``arcpy.env.resamplingMethod``, REST ``context.resamplingMethod``), by the
#: lower-case of Esri's names. It applies wherever pixels move to another grid: a mosaic's images in another CRS,
#: cell size or alignment, and ``--cell-size``.
RESAMPLING_METHODS = {"nearest": Resampling.nearest, "bilinear": Resampling.bilinear, "cubic": Resampling.cubic}
#: Esri's default: nearest neighbour keeps every pixel value as the sensor recorded it.
DEFAULT_RESAMPLING = Resampling.nearest


@dataclass(frozen=True)
class Extent:
    """A rectangle of interest; ``crs`` None means "the raster's CRS"."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float
    crs: CRS | None = None

    @classmethod
    def parse(cls, values: Sequence[float], crs: str | CRS | None = None) -> Extent:
        if len(values) != 4:
            raise SettingError(f"«extent» takes four numbers XMIN YMIN XMAX YMAX, got {len(values)}")
        xmin, ymin, xmax, ymax = (float(v) for v in values)
        if not (xmin < xmax and ymin < ymax):
            raise SettingError(
                f"«extent» {xmin:g} {ymin:g} {xmax:g} {ymax:g}: XMIN must be below XMAX and YMIN below YMAX"
            )
        return cls(xmin, ymin, xmax, ymax, parse_crs(crs, "«extent_crs»") if crs is not None else None)

    def polygon_in(self, target: CRS | None, default: CRS | None) -> shapely.Geometry:
        """The extent as a polygon in ``target``, its own CRS being ``default`` when none was given."""
        box = shapely.box(self.xmin, self.ymin, self.xmax, self.ymax)
        source = self.crs or default
        if source is None or target is None or source == target:
            return box
        dense = shapely.segmentize(box, max(box.length / 400, 1e-9))
        return shapely.geometry.shape(transform_geom(source, target, shapely.geometry.mapping(dense)))


def parse_crs(value: str | CRS, option: str) -> CRS:
    """A CRS from anything pyproj understands (EPSG:32633, a WKT, a PROJ string)."""
    if isinstance(value, CRS):
        return value
    try:
        return CRS.from_wkt(ProjCRS.from_user_input(value).to_wkt())
    except (CRSError, ValueError) as exc:
        raise SettingError(f"{option} {value!r} is not a coordinate system ({exc}); try e.g. EPSG:32633") from None


def parse_processing_mode(value: str) -> ProcessingMode:
    mode = PROCESSING_MODES.get(value.strip().lower())
    if mode is None:
        raise SettingError(
            f"processing mode {value!r} is not one of: mosaic, items (or Esri's "
            "PROCESS_AS_MOSAICKED_IMAGE, PROCESS_ITEMS_SEPARATELY)"
        )
    return mode  # type: ignore[return-value]


def parse_resampling(value: str | Resampling) -> Resampling:
    """``nearest``, ``bilinear`` or ``cubic`` in any case (so Esri's NEAREST, BILINEAR, CUBIC too)."""
    if isinstance(value, Resampling) and value in RESAMPLING_METHODS.values():
        return value
    method = RESAMPLING_METHODS.get(str(value).strip().lower())
    if method is None:
        raise SettingError(
            f"«resampling» {value!r} is not one of: nearest, bilinear, cubic (Esri's NEAREST, BILINEAR, CUBIC)"
        )
    return method


def check_cell_size(value: float | None) -> float | None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise SettingError(f"«cell_size» {value!r} must be a positive number in the raster CRS's units")
    return value
