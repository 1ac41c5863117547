"""A seeded synthetic post-storm suburb: an RGB orthophoto plus house footprints labelled Intact/Damaged.

Why synthetic: real damage-assessment imagery comes with licences and privacy questions, and a generator lets
the bundled sample, the tests and the bundled model be rebuilt exactly from a seed. The scene is meant to
look plausible from above (lawns, soil, roads, trees, shadows, roof materials) and to make roof damage
visible but not trivially so: intact roofs carry look-alikes (chimneys, vents, skylights, solar panels,
stains) and damage ranges from a few specks to large tarps and holes. Every roof pixel is painted if and
only if its pixel centre lies inside the stored footprint polygon, so chips cut by the library line up with
what was painted. Everything is vectorised numpy; a 1024 px scene takes well under a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.features import rasterize
from rasterio.transform import from_origin
from shapely import affinity

from .roofs import SHADOW_OFFSET, Part, RoofCanvas, add_damage, add_fixtures, roof_texture

CLASSES = ("Intact", "Damaged")
CLASS_INFO: list[dict[str, Any]] = [
    {"Value": 1, "Name": "Intact", "Color": [56, 168, 0]},
    {"Value": 2, "Name": "Damaged", "Color": [230, 0, 0]},
]
#: Base RGB colour of each roof material, and how often it occurs.
ROOF_MATERIALS: dict[str, tuple[float, float, float]] = {
    "red tile": (168, 80, 60),
    "grey asphalt": (104, 104, 108),
    "brown shingle": (124, 94, 68),
    "light metal": (190, 194, 198),
}
_MATERIAL_WEIGHTS = (0.3, 0.3, 0.25, 0.15)

_SUN = np.array([-1.0, 1.0]) / math.sqrt(2.0)  # light from the north-west, so shadows fall south-east
_HOUSE_GAP = 2.5  # metres between footprints, so one chip rarely shows two roofs touching
_RNG = np.random.Generator
_Array = np.ndarray


@dataclass
class Scene:
    """One synthetic scene: the image exactly as painted, its georeferencing, and the labelled footprints."""

    image: np.ndarray  # uint8, (3, size, size), RGB
    transform: Affine  # north-up, top-left origin
    crs: str
    houses: gpd.GeoDataFrame  # house_id, Truth, roof_material, geometry




@dataclass
class _House:
    parts: list[Part]
    polygon: shapely.Polygon
    material: str = ""
    damaged: bool = False


@dataclass(frozen=True)
class _Grid:
    """Pixel-centre geometry of the raster, so every painter uses the same pixel/map convention."""

    x0: float
    y0: float
    res: float
    size: int

    def window(self, bounds: tuple[float, float, float, float]) -> tuple[slice, slice, _Array, _Array]:
        minx, miny, maxx, maxy = bounds
        c0 = max(0, math.floor((minx - self.x0) / self.res))
        c1 = min(self.size, math.ceil((maxx - self.x0) / self.res))
        r0 = max(0, math.floor((self.y0 - maxy) / self.res))
        r1 = min(self.size, math.ceil((self.y0 - miny) / self.res))
        xs = self.x0 + (np.arange(c0, max(c0, c1)) + 0.5) * self.res
        ys = self.y0 - (np.arange(r0, max(r0, r1)) + 0.5) * self.res
        x, y = np.meshgrid(xs, ys)
        return slice(r0, r1), slice(c0, c1), x, y


def make_scene(
    seed: int,
    size: int = 1024,
    pixel_size: float = 0.25,
    origin: tuple[float, float] = (500000.0, 4650000.0),
    crs: str = "EPSG:32633",
) -> Scene:
    """Paint one scene; the same arguments always give the same pixels and polygons."""
    rng = np.random.default_rng(seed)
    x0, y0 = origin
    grid = _Grid(x0, y0, pixel_size, size)
    transform = from_origin(x0, y0, pixel_size, pixel_size)
    extent = size * pixel_size

    image = _ground(rng, size, extent)
    keepout = _paint_roads(image, rng, grid, transform)
    houses = _place_houses(rng, grid, keepout)
    trees = _place_trees(rng, grid, keepout, houses)
    _paint_shadows(image, houses, trees, transform)
    for house in houses:
        _paint_roof(image, rng, grid, house)
    for tree in trees:
        _paint_tree(image, rng, grid, tree)

    frame = gpd.GeoDataFrame(
        {
            "house_id": np.arange(1, len(houses) + 1, dtype=np.int64),
            "Truth": [CLASSES[int(h.damaged)] for h in houses],
            "roof_material": [h.material for h in houses],
        },
        geometry=[h.polygon for h in houses],
        crs=crs,
    )
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return Scene(image=pixels, transform=transform, crs=crs, houses=frame)


def geotiff_profile(scene: Scene) -> dict[str, Any]:
    """Creation options of a typical delivered orthophoto: 256 px tiles, JPEG in YCbCr at quality 90.

    Public so the sample-building script can round-trip training scenes through the same lossy encoding
    the bundled file gets, and the model does not learn on cleaner pixels than it will see.
    """
    _, height, width = scene.image.shape
    return {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 3,
        "dtype": "uint8",
        "crs": scene.crs,
        "transform": scene.transform,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "JPEG",
        "photometric": "YCBCR",
        "jpeg_quality": 90,
        "interleave": "pixel",
    }


def write_scene(scene: Scene, image_path: str | Path, features_path: str | Path) -> None:
    """Write the image as a tiled JPEG GeoTIFF and the footprints as a GeoPackage layer "houses"."""
    with rasterio.open(image_path, "w", **geotiff_profile(scene)) as dst:
        dst.write(scene.image)
    features_path = Path(features_path)
    features_path.unlink(missing_ok=True)  # a GeoPackage can hold other layers; start clean
    scene.houses.to_file(features_path, layer="houses", driver="GPKG", engine="pyogrio")


# --- background -----------------------------------------------------------------------------------------


def _smooth_noise(rng: _RNG, size: int, extent: float, wavelength: float) -> np.ndarray:
    """Value noise with features about ``wavelength`` metres across: a random grid, smoothly upsampled."""
    cells = max(1, round(extent / wavelength))
    t = (np.arange(size) + 0.5) * cells / size
    i = np.minimum(t.astype(np.int64), cells - 1)
    f = t - i
    f = f * f * (3.0 - 2.0 * f)  # smoothstep hides the grid
    weights = np.zeros((size, cells + 1), np.float32)
    weights[np.arange(size), i] = 1.0 - f
    weights[np.arange(size), i + 1] = f
    grid = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    return weights @ grid @ weights.T


def _ground(rng: _RNG, size: int, extent: float) -> np.ndarray:
    """Lawns drifting between lush and dry, with soil patches, so the background is never a flat colour."""
    patches = _smooth_noise(rng, size, extent, 80.0)
    dryness = _smooth_noise(rng, size, extent, 40.0)
    mid = _smooth_noise(rng, size, extent, 15.0)
    fine = _smooth_noise(rng, size, extent, 4.0)
    soil = 1.0 / (1.0 + np.exp(-4.0 * (patches + 0.4 * mid - 0.9)))
    dry = 1.0 / (1.0 + np.exp(-3.0 * dryness))
    lush, parched, earth = (
        np.array(c, np.float32)[:, None, None] for c in ((74, 116, 50), (138, 136, 80), (140, 114, 84))
    )
    colour = lush * (1 - dry) + parched * dry
    colour = colour * (1 - soil) + earth * soil
    luminance = 1.0 + 0.06 * mid + 0.05 * fine + 0.05 * rng.standard_normal((size, size), np.float32)
    return colour * luminance + rng.normal(0.0, 2.5, (3, size, size)).astype(np.float32)


def _paint_roads(image: np.ndarray, rng: _RNG, grid: _Grid, transform: Affine) -> shapely.Geometry:
    """Two or three straight streets with sidewalks and dashed centre lines; returns the no-build zone."""
    extent = grid.size * grid.res
    cx, cy = grid.x0 + extent / 2, grid.y0 - extent / 2
    fractions = [rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)]
    if rng.random() < 0.5:
        fractions.append(fractions[0] + (0.35 if fractions[0] < 0.5 else -0.35))
    streets, sidewalks, dashes = [], [], []
    for i, frac in enumerate(fractions):
        vertical = i == 1
        angle = rng.uniform(-0.25, 0.25) + (math.pi / 2 if vertical else 0.0)
        px = grid.x0 + extent * frac if vertical else cx
        py = cy if vertical else grid.y0 - extent * frac
        d = np.array([math.cos(angle), math.sin(angle)])
        line = shapely.LineString([(px, py) - d * extent, (px, py) + d * extent])
        width = rng.uniform(6.0, 8.0)
        streets.append(line.buffer(width / 2, cap_style="flat"))
        sidewalks.append(line.buffer(width / 2 + 1.5, cap_style="flat"))
        starts = np.arange(-extent, extent, 6.0)
        dashes.append(shapely.MultiLineString([[(px, py) + d * s, (px, py) + d * (s + 3.0)] for s in starts]))

    shape = (grid.size, grid.size)
    walk = rasterize(sidewalks, out_shape=shape, transform=transform).astype(bool)
    road = rasterize(streets, out_shape=shape, transform=transform).astype(bool)
    paint = rasterize(
        [shapely.union_all(dashes).buffer(0.15, cap_style="flat")], out_shape=shape, transform=transform
    ).astype(bool)
    wear = 1.0 + 0.05 * _smooth_noise(rng, grid.size, extent, 10.0)
    for mask, colour, noise in (
        (walk & ~road, (172, 170, 164), 5.0),
        (road, (88, 89, 93), 4.0),
        (road & paint, (226, 214, 150), 6.0),
    ):
        n = int(mask.sum())
        grain = rng.normal(0.0, noise, (1, n)).astype(np.float32)
        image[:, mask] = np.array(colour, np.float32)[:, None] * wear[mask] + grain
    return shapely.union_all(sidewalks).buffer(1.0)


# --- houses and trees ----------------------------------------------------------------------------------


def _random_parts(rng: _RNG, cx: float, cy: float) -> list[Part]:
    """A rectangle (sides 6-13 m) or an L of two rectangles whose extent stays within 13 m."""
    theta = rng.uniform(0.0, math.pi)
    if rng.random() < 0.3:
        length, width = rng.uniform(9.0, 13.0), rng.uniform(6.0, 8.5)
        wing_width = rng.uniform(4.5, min(width, 6.5))
        reach = width / 2 + rng.uniform(2.5, min(5.0, 13.0 - width))
        su, sv = rng.choice([-1.0, 1.0], 2)
        # The wing starts at the main ridge and sticks out on one side, at one end of the main section.
        wu, wv = su * (length - wing_width) / 2, sv * reach / 2
        c, s = math.cos(theta), math.sin(theta)
        wx, wy = cx + wu * c - wv * s, cy + wu * s + wv * c
        wing = Part(wx, wy, theta + math.pi / 2, reach / 2, wing_width / 2)
        return [Part(cx, cy, theta, length / 2, width / 2), wing]
    a, b = rng.uniform(6.0, 13.0), rng.uniform(6.0, 11.0)
    return [Part(cx, cy, theta, max(a, b) / 2, min(a, b) / 2)]


def _place_houses(rng: _RNG, grid: _Grid, keepout: shapely.Geometry) -> list[_House]:
    """Random, non-overlapping footprints away from roads; about 85-130 per 1024 px at 0.25 m."""
    extent = grid.size * grid.res
    inner = shapely.box(grid.x0 + 1.5, grid.y0 - extent + 1.5, grid.x0 + extent - 1.5, grid.y0 - 1.5)
    shapely.prepare(keepout)
    target = max(1, round(int(rng.integers(85, 131)) * (extent / 256.0) ** 2))
    houses: list[_House] = []
    placed = np.empty(target, dtype=object)
    for _ in range(target * 60):
        if len(houses) == target:
            break
        cx, cy = grid.x0 + rng.uniform(0, extent), grid.y0 - rng.uniform(0, extent)
        parts = _random_parts(rng, cx, cy)
        polygon = parts[0].polygon() if len(parts) == 1 else shapely.union_all([p.polygon() for p in parts])
        if not inner.contains(polygon) or keepout.intersects(polygon):
            continue
        if houses and shapely.dwithin(placed[: len(houses)], polygon, _HOUSE_GAP).any():
            continue
        placed[len(houses)] = polygon
        houses.append(_House(parts, polygon))
    damaged = rng.permutation(np.arange(len(houses)) % 2 == 1)  # balanced classes
    materials = rng.choice(list(ROOF_MATERIALS), size=len(houses), p=_MATERIAL_WEIGHTS)
    for house, is_damaged, material in zip(houses, damaged, materials, strict=True):
        house.damaged, house.material = bool(is_damaged), str(material)
    return houses


def _place_trees(
    rng: _RNG, grid: _Grid, keepout: shapely.Geometry, houses: list[_House]
) -> list[list[tuple[float, float, float]]]:
    """Tree crowns as clusters of circles; a crown may reach about half its radius over a roof."""
    extent = grid.size * grid.res
    footprints = np.array([h.polygon for h in houses], dtype=object)
    trees = []
    for i in range(max(1, round(int(rng.integers(35, 60)) * (extent / 256.0) ** 2))):
        for _attempt in range(30):
            radius = rng.uniform(1.8, 4.0)
            if i % 2 and len(houses):  # every other tree stands in a yard, next to a house
                ring = houses[int(rng.integers(len(houses)))].polygon.buffer(rng.uniform(0.5, 1.0) * radius)
                point = ring.exterior.interpolate(rng.uniform(0.0, ring.exterior.length))
                x, y = point.x, point.y
            else:
                x, y = grid.x0 + rng.uniform(0, extent), grid.y0 - rng.uniform(0, extent)
                point = shapely.Point(x, y)
            if keepout.contains(point) or shapely.dwithin(footprints, point, 0.5 * radius).any():
                continue
            crown = [(x, y, radius)]
            for _lobe in range(int(rng.integers(0, 4))):
                angle, dist = rng.uniform(0, 2 * math.pi), rng.uniform(0.4, 0.8) * radius
                lobe_radius = radius * rng.uniform(0.5, 0.8)
                crown.append((x + dist * math.cos(angle), y + dist * math.sin(angle), lobe_radius))
            trees.append(crown)
            break
    return trees


def _paint_shadows(
    image: np.ndarray, houses: list[_House], trees: list[list[tuple[float, float, float]]], transform: Affine
) -> None:
    """Darken the ground south-east of houses and trees; roofs and crowns are painted over it afterwards."""
    dx, dy = SHADOW_OFFSET
    shapes = [affinity.translate(h.polygon, dx, dy) for h in houses]
    shapes += [shapely.Point(x + r * 0.6, y - r * 0.6).buffer(r) for crown in trees for x, y, r in crown]
    if not shapes:
        return
    mask = rasterize(shapes, out_shape=image.shape[1:], transform=transform).astype(bool)
    image[:, mask] *= 0.58


# --- roofs ---------------------------------------------------------------------------------------------


def _paint_roof(image: np.ndarray, rng: _RNG, grid: _Grid, house: _House) -> None:
    """Paint the roof onto the pixels whose centres fall inside the footprint, and nowhere else."""
    rows, cols, x, y = grid.window(house.polygon.bounds)
    inside = shapely.contains_xy(house.polygon, x, y)
    if not inside.any():
        return
    # Each pixel takes the frame of the section it belongs to (the main section wins where they overlap).
    u_loc, v_loc = np.zeros_like(x), np.zeros_like(x)
    shade = np.ones_like(x)
    ridge = np.zeros(x.shape, bool)
    owner = np.full(x.shape, -1)
    for k, part in enumerate(house.parts):
        u, v = part.local(x, y)
        mine = (np.abs(u) <= part.half_len) & (np.abs(v) <= part.half_wid) & (owner < 0)
        owner[mine] = k
        u_loc[mine], v_loc[mine] = u[mine], v[mine]
        normal = np.array([-math.sin(part.theta), math.cos(part.theta)])  # outward normal of the v > 0 half
        lit = float(_SUN @ normal)
        shade[mine] = 1.0 + 0.15 * np.sign(v[mine]) * (lit if abs(lit) > 0.25 else math.copysign(0.25, lit))
        ridge |= mine & (np.abs(v) < 0.6 * grid.res)

    base = np.array(ROOF_MATERIALS[house.material], np.float32) * rng.uniform(0.9, 1.1) + rng.normal(0, 5, 3)
    roof = base[:, None, None] * roof_texture(rng, house.material, u_loc, v_loc)[None]
    roof += rng.normal(0.0, 2.5, roof.shape)
    roof[:, ridge] *= 1.1

    main_u, main_v = house.parts[0].local(x, y)  # all sections are axis-aligned in this frame
    canvas = RoofCanvas(roof, inside, main_u, main_v, house.parts[0], rng, base)
    add_fixtures(canvas)
    if house.damaged:
        add_damage(canvas)
    roof *= shade[None]
    image[:, rows, cols][:, inside] = roof[:, inside]


def _paint_tree(image: np.ndarray, rng: _RNG, grid: _Grid, crown: list[tuple[float, float, float]]) -> None:
    """Dark-green lumpy crowns lit from the north-west; painted last so they may hide a roof edge."""
    xs, ys, rs = (np.array(c) for c in zip(*crown, strict=True))
    rows, cols, x, y = grid.window(
        (float((xs - rs).min()), float((ys - rs).min()), float((xs + rs).max()), float((ys + rs).max()))
    )
    if x.size == 0:
        return
    dx, dy = x[None] - xs[:, None, None], y[None] - ys[:, None, None]
    rel = np.hypot(dx, dy) / rs[:, None, None] * (1.0 + 0.08 * rng.standard_normal(x.shape))
    lobe = rel.argmin(axis=0)
    mask = rel.min(axis=0) <= 1.0
    if not mask.any():
        return
    pick = lobe[None]
    ux = np.take_along_axis(dx / rs[:, None, None], pick, 0)[0]
    uy = np.take_along_axis(dy / rs[:, None, None], pick, 0)[0]
    light = 1.0 + 0.28 * (ux * _SUN[0] + uy * _SUN[1]) + 0.12 * rng.standard_normal(x.shape)
    base = np.array([rng.uniform(40, 62), rng.uniform(70, 98), rng.uniform(32, 46)], np.float32)
    leaves = base[:, None, None] * light[None] + rng.normal(0, 3, (3, *x.shape))
    image[:, rows, cols][:, mask] = leaves[:, mask]
