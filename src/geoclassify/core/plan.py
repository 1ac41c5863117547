"""The plan of a run: for every feature, the few numbers the classification loop needs, built batch by batch.

A feature becomes a chip window (four integers), two flags (empty geometry, outside the raster) and, only when the
model blackens around features, its polygon in pixel space. That is all the loop keeps, so a big layer is planned
from batches of geometries without ever being held whole; the polygons of a big layer wait on disk as WKB (the
temporary file vanishes with the process, even after a SIGKILL) and are read back tile by tile.
"""

from __future__ import annotations

import mmap
import tempfile
from dataclasses import dataclass, field

import numpy as np
import shapely

from .chips import ChipSpec, plan_windows

#: shapely type ids of Polygon and MultiPolygon: the geometries blackening applies to.
POLYGONAL = (3, 6)


class SpilledGeometries:
    """Geometries as WKB in an unlinked temporary file, read back by position through a memory map."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="geoclassify-", suffix=".wkb")  # noqa: SIM115 (see close)
        self._sizes: list[np.ndarray] = []
        self._offsets = np.zeros(1, dtype=np.int64)
        self._missing = np.zeros(0, dtype=bool)
        self._map: mmap.mmap | bytes = b""

    def append(self, geometries: np.ndarray) -> None:
        blobs = shapely.to_wkb(geometries)
        self._sizes.append(np.array([-1 if b is None else len(b) for b in blobs], dtype=np.int64))
        self._file.write(b"".join(b for b in blobs if b is not None))

    def seal(self) -> None:
        """Writing is over: map the file for reading."""
        sizes = np.concatenate(self._sizes) if self._sizes else np.zeros(0, dtype=np.int64)
        self._missing = sizes < 0
        self._offsets = np.concatenate([[0], np.cumsum(np.maximum(sizes, 0))])
        self._file.flush()
        if self._offsets[-1]:
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)

    def wkb(self, indexes: np.ndarray) -> list[bytes | None]:
        starts, ends = self._offsets[indexes], self._offsets[np.asarray(indexes) + 1]
        return [
            None if missing else self._map[start:end]
            for start, end, missing in zip(starts.tolist(), ends.tolist(), self._missing[indexes].tolist(), strict=True)
        ]

    def take(self, indexes: np.ndarray) -> np.ndarray:
        return shapely.from_wkb(self.wkb(indexes))

    def close(self) -> None:
        if isinstance(self._map, mmap.mmap):
            self._map.close()
        self._file.close()


class _HeldGeometries:
    """The same interface over geometries kept in memory (layers small enough to read whole)."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []
        self._all = np.zeros(0, dtype=object)

    def append(self, geometries: np.ndarray) -> None:
        self._parts.append(geometries)

    def seal(self) -> None:
        self._all = np.concatenate(self._parts) if self._parts else np.zeros(0, dtype=object)
        self._parts = []

    def wkb(self, indexes: np.ndarray) -> list[bytes | None]:
        return list(shapely.to_wkb(self._all[indexes]))

    def take(self, indexes: np.ndarray) -> np.ndarray:
        return self._all[indexes]

    def close(self) -> None:
        self._all = np.zeros(0, dtype=object)


@dataclass
class ChipPlan:
    """Per feature: ``empty`` and ``outside`` flags; per feature to classify (``todo``, positions in the input):
    its window and, when blackening, its pixel-space polygon (None for points and lines)."""

    count: int
    empty: np.ndarray
    outside: np.ndarray
    todo: np.ndarray
    windows: np.ndarray
    polygons: SpilledGeometries | _HeldGeometries | None
    not_polygonal: int = 0

    def polygons_at(self, indexes: np.ndarray) -> list[shapely.Geometry | None]:
        """Polygons of plan entries ``indexes`` (positions in ``todo``): what blackening needs, or Nones."""
        if self.polygons is None:
            return [None] * len(indexes)
        return list(self.polygons.take(indexes))

    def polygons_wkb(self, indexes: np.ndarray) -> list[bytes | None]:
        if self.polygons is None:
            return [None] * len(indexes)
        return self.polygons.wkb(indexes)

    def close(self) -> None:
        if self.polygons is not None:
            self.polygons.close()

    def __enter__(self) -> ChipPlan:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass
class PlanBuilder:
    """Builds a :class:`ChipPlan` from batches of pixel-space geometries, in input order."""

    spec: ChipSpec
    rows: int
    cols: int
    spill: bool = False
    _count: int = 0
    _empty: list[np.ndarray] = field(default_factory=list)
    _outside: list[np.ndarray] = field(default_factory=list)
    _todo: list[np.ndarray] = field(default_factory=list)
    _windows: list[np.ndarray] = field(default_factory=list)
    _not_polygonal: int = 0
    _polygons: SpilledGeometries | _HeldGeometries | None = None

    def __post_init__(self) -> None:
        if self.spec.blacken:
            self._polygons = SpilledGeometries() if self.spill else _HeldGeometries()

    def add(self, pixel_space: np.ndarray) -> None:
        """Plan one batch of geometries in pixel space (None or empty for features without geometry)."""
        pixel_space = np.asarray(pixel_space, dtype=object)
        empty = shapely.is_missing(pixel_space) | shapely.is_empty(pixel_space)
        outside = ~empty & ~shapely.intersects(pixel_space, shapely.box(0, 0, self.cols, self.rows))
        todo = np.flatnonzero(~empty & ~outside)
        geometries = pixel_space[todo]
        polygonal = np.isin(shapely.get_type_id(geometries), POLYGONAL)
        points = shapely.get_dimensions(geometries) == 0
        self._windows.append(plan_windows(shapely.bounds(geometries), self.spec, points))
        if self._polygons is not None:
            self._polygons.append(np.where(polygonal, geometries, None))
        self._not_polygonal += int((~polygonal).sum())
        self._empty.append(empty)
        self._outside.append(outside)
        self._todo.append(todo + self._count)
        self._count += len(pixel_space)

    def finish(self) -> ChipPlan:
        if self._polygons is not None:
            self._polygons.seal()

        def joined(parts: list[np.ndarray], dtype: type, shape: tuple[int, ...] = (0,)) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(shape, dtype=dtype)

        return ChipPlan(
            count=self._count,
            empty=joined(self._empty, bool),
            outside=joined(self._outside, bool),
            todo=joined(self._todo, np.int64),
            windows=joined(self._windows, np.int64, (0, 4)),
            polygons=self._polygons,
            not_polygonal=self._not_polygonal,
        )
