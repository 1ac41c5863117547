"""Chips with Esri's meaning, cut from arrays: where each chip sits, how it is resized and blackened.

This module knows nothing of files. Geometry arrives in *pixel space* (column, row of the raster grid,
so rotated or south-up rasters need no special case) and pixels arrive through a reader callback.

Conventions (``docs`` in the README repeat them):

* ``CropSizeFixed = 1``: a window of the model's size at native resolution whose centre is the nearest
  pixel corner to the centre of the feature's envelope: ``col_off = floor(cx - width / 2 + 0.5)``.
* ``CropSizeFixed = 0``: the envelope, widened to whole pixels (at least one); when it is larger than the
  model size in either direction, or the feature is a point (no area to crop), the fixed window instead;
  then resized bilinearly (pixel-centre aligned) to the model size.
* Pixels outside the raster or flagged NoData are 0; ``coverage`` is the share of the window that was valid.
* ``BlackenAroundFeature = 1``: chip pixels whose centre lies outside the polygon are 0.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import shapely

#: Reads a native-resolution window (row_off, col_off, height, width): pixels (bands, h, w) with invalid pixels
#: already 0 (the raster's own type for small integers and float32: normalisation makes them float), and the
#: validity mask (h, w) bool.
WindowReader = Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class ChipSpec:
    """How chips are cut for one model, from its EMD."""

    height: int
    width: int
    fixed: bool = True
    blacken: bool = False


@dataclass(frozen=True)
class Chip:
    """One cut chip: pixels and validity at the model's size, and the share of its window that held valid data."""

    pixels: np.ndarray
    valid: np.ndarray
    coverage: float


def pixel_geometries(geometries: np.ndarray, inverse: tuple[float, ...]) -> np.ndarray:
    """Map geometries into (col, row) pixel space with the inverse affine ``(a, b, c, d, e, f)``."""
    a, b, c, d, e, f = inverse

    def apply(coords: np.ndarray) -> np.ndarray:
        x, y = coords[:, 0], coords[:, 1]
        return np.column_stack([a * x + b * y + c, d * x + e * y + f])

    return shapely.transform(geometries, apply)


#: Envelope edges this close to a pixel edge (in pixels) snap to it.
SNAP_PIXELS = 1e-6


def plan_windows(bounds: np.ndarray, spec: ChipSpec, points: np.ndarray | None = None) -> np.ndarray:
    """Native windows ``(row_off, col_off, height, width)`` for envelopes ``(minc, minr, maxc, maxr)``.

    ``bounds`` is (n, 4) in pixel space; ``points`` marks features without extent (they take the fixed
    window under CropSizeFixed 0). Returns (n, 4) int64.
    """
    bounds = np.asarray(bounds, dtype=np.float64).reshape(-1, 4)
    n = len(bounds)
    minc, minr, maxc, maxr = bounds.T
    centre_c = (minc + maxc) / 2.0
    centre_r = (minr + maxr) / 2.0
    windows = np.empty((n, 4), dtype=np.int64)
    windows[:, 0] = np.floor(centre_r - spec.height / 2.0 + 0.5)
    windows[:, 1] = np.floor(centre_c - spec.width / 2.0 + 0.5)
    windows[:, 2] = spec.height
    windows[:, 3] = spec.width
    if spec.fixed or n == 0:
        return windows
    # An edge within SNAP_PIXELS of a pixel edge is on it: map coordinates carried through a transform come
    # back as 227.00000000047, which must not widen the window by a whole pixel.
    c0, r0 = np.floor(minc + SNAP_PIXELS), np.floor(minr + SNAP_PIXELS)
    width = np.maximum(np.ceil(maxc - SNAP_PIXELS) - c0, 1)
    height = np.maximum(np.ceil(maxr - SNAP_PIXELS) - r0, 1)
    envelope = (width <= spec.width) & (height <= spec.height)
    if points is not None:
        envelope &= ~np.asarray(points, dtype=bool)
    windows[envelope, 0] = r0[envelope]
    windows[envelope, 1] = c0[envelope]
    windows[envelope, 2] = height[envelope]
    windows[envelope, 3] = width[envelope]
    return windows


def cut_chip(
    reader: WindowReader,
    window: np.ndarray | tuple[int, int, int, int],
    spec: ChipSpec,
    polygon: shapely.Geometry | None = None,
) -> Chip:
    """Read one window, resize it to the model size and blacken outside ``polygon`` (pixel space)."""
    row_off, col_off, height, width = (int(v) for v in window)
    pixels, valid = reader(row_off, col_off, height, width)
    coverage = np.count_nonzero(valid) / valid.size if valid.size else 0.0
    if (height, width) != (spec.height, spec.width):
        pixels = resize_bilinear(pixels, spec.height, spec.width)
        valid = resize_nearest(valid, spec.height, spec.width)
    if spec.blacken and polygon is not None:
        inside = centres_inside(
            polygon, row_off, col_off, height / spec.height, width / spec.width, spec.height, spec.width
        )
        pixels = pixels * inside  # one pass, and a copy the caller owns
    return Chip(np.ascontiguousarray(pixels), np.ascontiguousarray(valid), coverage)


def centres_inside(
    polygon: shapely.Geometry,
    row_off: float,
    col_off: float,
    row_step: float,
    col_step: float,
    height: int,
    width: int,
) -> np.ndarray:
    """Which chip pixel centres lie inside ``polygon``, for a chip grid laid over native pixel space.

    Only the chip pixels within the polygon's bounding box are tested: a house covers a few hundred of a chip's
    thousands of pixels, and the point-in-polygon test is the costly part.
    """
    inside = np.zeros((height, width), dtype=bool)
    minc, minr, maxc, maxr = shapely.bounds(polygon)
    j0 = max(int(np.floor((minc - col_off) / col_step - 0.5)), 0)
    j1 = min(int(np.ceil((maxc - col_off) / col_step - 0.5)) + 1, width)
    i0 = max(int(np.floor((minr - row_off) / row_step - 0.5)), 0)
    i1 = min(int(np.ceil((maxr - row_off) / row_step - 0.5)) + 1, height)
    if j1 <= j0 or i1 <= i0:
        return inside
    cols = col_off + (np.arange(j0, j1) + 0.5) * col_step
    rows = row_off + (np.arange(i0, i1) + 0.5) * row_step
    shapely.prepare(polygon)
    inside[i0:i1, j0:j1] = shapely.contains_xy(polygon, cols[None, :], rows[:, None])
    return inside


def resize_bilinear(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (bands, h, w) to (bands, height, width), pixel centres aligned, edges clamped.

    Two small interpolation matrices make it one matrix product per band; a GDAL warp per chip costs
    about 0.5 ms, this a few microseconds.
    """
    rows = _interpolation_matrix(pixels.shape[1], height)
    cols = _interpolation_matrix(pixels.shape[2], width)
    return np.einsum("ih,bhw,jw->bij", rows, pixels.astype(np.float32), cols, optimize=True).astype(np.float32)


def resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a (h, w) mask by sampling at the output pixel centres."""
    rows = np.minimum(((np.arange(height) + 0.5) * mask.shape[0] / height).astype(np.int64), mask.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * mask.shape[1] / width).astype(np.int64), mask.shape[1] - 1)
    return mask[np.ix_(rows, cols)]


def _interpolation_matrix(source: int, target: int) -> np.ndarray:
    position = (np.arange(target) + 0.5) * (source / target) - 0.5
    position = np.clip(position, 0, source - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, source - 1)
    frac = (position - low).astype(np.float32)
    matrix = np.zeros((target, source), dtype=np.float32)
    matrix[np.arange(target), low] += 1 - frac
    matrix[np.arange(target), high] += frac
    return matrix


def whole_image_window(rows: int, cols: int, spec: ChipSpec) -> tuple[int, int, int, int]:
    """The window that makes an image one chip: all of it, or for CropSizeFixed 1 its centre cut to the chip size.

    An image smaller than the chip in a direction keeps its full extent there (and is resized up), as padding a
    photo with black would tell the model something that is not in the scene.
    """
    if not spec.fixed:
        return (0, 0, rows, cols)
    height, width = min(rows, spec.height), min(cols, spec.width)
    row_off = int(np.floor(rows / 2.0 - height / 2.0 + 0.5))
    col_off = int(np.floor(cols / 2.0 - width / 2.0 + 0.5))
    return (row_off, col_off, height, width)


@dataclass(frozen=True)
class ChipStack:
    """Chips of one batch as arrays: pixels (n, bands, h, w) in the type they were read in (resampled chips
    float32), validity (n, h, w) and coverage (n,)."""

    pixels: np.ndarray
    valid: np.ndarray
    coverage: np.ndarray

    def __len__(self) -> int:
        return len(self.coverage)

    @staticmethod
    def of(chips: list[Chip]) -> ChipStack:
        """The stack of chips cut one at a time."""
        if not chips:
            raise ValueError("a chip stack holds at least one chip")
        return ChipStack(
            np.stack([c.pixels for c in chips]),
            np.stack([c.valid for c in chips]),
            np.array([c.coverage for c in chips], dtype=np.float64),
        )

    @staticmethod
    def concatenate(stacks: list[ChipStack]) -> ChipStack:
        if len(stacks) == 1:
            return stacks[0]
        return ChipStack(
            np.concatenate([s.pixels for s in stacks]),
            np.concatenate([s.valid for s in stacks]),
            np.concatenate([s.coverage for s in stacks]),
        )

    def take(self, indexes: np.ndarray | slice) -> ChipStack:
        return ChipStack(self.pixels[indexes], self.valid[indexes], self.coverage[indexes])


def gather_windows(array: np.ndarray, rows: np.ndarray, cols: np.ndarray, height: int, width: int) -> np.ndarray:
    """Windows of one size at (``rows``, ``cols``) of ``array`` (..., H, W), as one (n, ..., height, width) copy.

    One fancy index over a sliding-window view instead of a Python loop of slices: for a tile's hundred chips of a
    small model that loop, not the copying, was the cost.
    """
    view = np.lib.stride_tricks.sliding_window_view(array, (height, width), axis=(-2, -1))
    view = np.moveaxis(view, (-4, -3), (0, 1))  # (R, C, ..., height, width)
    return view[rows, cols]


def cut_fixed(pixels: np.ndarray, valid: np.ndarray, rows: np.ndarray, cols: np.ndarray, spec: ChipSpec) -> ChipStack:
    """Chips of the model's size at native resolution, cut at once from a block whose (0, 0) is at region offset 0:
    what :func:`cut_chip` gives one by one for windows that need no resizing, before blackening."""
    chips = np.ascontiguousarray(gather_windows(pixels, rows, cols, spec.height, spec.width))
    if valid.all():  # most tiles of most rasters: no mask to cut, nor pixels to count
        return ChipStack(chips, np.ones((len(chips), spec.height, spec.width), dtype=bool), np.ones(len(chips)))
    masks = gather_windows(valid, rows, cols, spec.height, spec.width)
    counts = np.count_nonzero(masks.reshape(len(masks), -1), axis=1)
    return ChipStack(chips, masks, counts / (spec.height * spec.width))


#: Widest chip whose span masks are looked up in a table (129 x 129 x 128 bytes, 2 MiB); wider ones compare.
SPAN_TABLE_WIDTH = 128


def _spans(left: np.ndarray, right: np.ndarray, width: int) -> np.ndarray:
    """(n, width) bool: columns ``left[i]`` to ``right[i] - 1`` set in row i."""
    if width <= SPAN_TABLE_WIDTH:
        return _span_table(width)[left, right]
    j = np.arange(width)
    return (j >= left[:, None]) & (j < right[:, None])


@functools.cache
def _span_table(width: int) -> np.ndarray:
    """(width + 1, width + 1, width) bool: entry ``[a, b]`` is the row mask of columns a to b - 1, so a row's span
    is one lookup instead of two comparisons over the row (which cost most of the fill for small chips)."""
    j = np.arange(width)
    edges = np.arange(width + 1)
    return (j >= edges[:, None, None]) & (j < edges[None, :, None])


def centres_inside_many(
    polygons: np.ndarray, row_offs: np.ndarray, col_offs: np.ndarray, height: int, width: int
) -> np.ndarray:
    """:func:`centres_inside` for many native-resolution chips at once: (n, height, width) bool.

    A scanline fill, vectorised over every edge of every polygon: the edges crossing a pixel-centre row cut it into
    spans, and a pixel is inside when an odd number of crossings lie left of its centre (the even-odd rule, which for
    *valid* polygons, holes and multipolygons included, is shapely's inside; callers test invalid ones apart). Edges
    follow the half-open rule (a vertex on a row counts for one of its edges), as GDAL's rasterizer does; the two differ
    from shapely only for a centre on the boundary itself.
    """
    n = len(polygons)
    row_offs = np.asarray(row_offs, dtype=np.float64)
    col_offs = np.asarray(col_offs, dtype=np.float64)
    parts, owner = shapely.get_parts(polygons, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    chip_of = owner[ring_part[ring_of]]
    same = ring_of[:-1] == ring_of[1:]
    x1, y1 = coords[:-1, 0][same], coords[:-1, 1][same]
    x2, y2 = coords[1:, 0][same], coords[1:, 1][same]
    chip = chip_of[:-1][same]
    r0, c0 = row_offs[chip], col_offs[chip]
    # Rows i whose centre r0 + i + 0.5 lies in [min(y1, y2), max(y1, y2)).
    first = np.clip(np.ceil(np.minimum(y1, y2) - r0 - 0.5), 0, height).astype(np.int64)
    last = np.clip(np.ceil(np.maximum(y1, y2) - r0 - 0.5), 0, height).astype(np.int64)
    count = last - first
    edge = np.repeat(np.arange(len(count)), count)
    start = np.cumsum(count) - count
    row = first[edge] + (np.arange(len(edge)) - start[edge])
    centre = r0[edge] + row + 0.5
    e_x1, e_y1 = x1[edge], y1[edge]
    cross = e_x1 + (centre - e_y1) * (x2[edge] - e_x1) / (y2[edge] - e_y1)
    # The first pixel j whose centre c0 + j + 0.5 lies right of the crossing.
    column = np.clip(np.floor(cross - c0[edge] - 0.5) + 1, 0, width).astype(np.int64)
    # Sorted by chip row, then by column, a row's crossings pair up into the spans that are inside: every ring
    # crosses a row an even number of times, so pairs never straddle two rows. Filling spans, not toggling pixels
    # and summing along every row of every chip, is what keeps this cheap.
    flat = np.sort((chip[edge] * height + row) * (width + 1) + column)
    line = flat[0::2] // (width + 1)
    left, right = flat[0::2] % (width + 1), flat[1::2] % (width + 1)
    inside = np.zeros((n * height, width), dtype=bool)
    leading = np.ones(len(line), dtype=bool)  # a row's first span; a concave ring or a hole gives it more
    leading[1:] = line[1:] != line[:-1]
    inside[line[leading]] = _spans(left[leading], right[leading], width)
    if not leading.all():
        more = ~leading
        np.logical_or.at(inside, line[more], _spans(left[more], right[more], width))
    inside = inside.reshape(n, height, width)
    # A centre exactly on the boundary is outside for shapely, but the fill's side depends on the edge: such chips
    # (polygons drawn through pixel centres) are tested the slow way.
    on_centre = cross - c0[edge] - 0.5
    ties = chip[edge][on_centre == np.floor(on_centre)]
    flat_y = y1 == y2
    level = y1[flat_y] - r0[flat_y] - 0.5
    ties = np.concatenate([ties, chip[flat_y][level == np.floor(level)]])
    vx, vy = x1 - c0 - 0.5, y1 - r0 - 0.5
    ties = np.concatenate([ties, chip[(vx == np.floor(vx)) & (vy == np.floor(vy))]])
    for k in np.unique(ties):
        inside[k] = centres_inside(polygons[k], row_offs[k], col_offs[k], 1.0, 1.0, height, width)
    return inside
