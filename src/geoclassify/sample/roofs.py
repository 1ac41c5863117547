"""Roofs of the synthetic suburb: material textures, the fixtures an intact roof carries (look-alikes of damage),
and the damage a storm leaves (holes, debris, tarps, missing shingles), painted on one roof's pixels at a time."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

_RNG = np.random.Generator
SHADOW_OFFSET = (0.9, -0.9)  # metres, for a one-storey house under that sun
#: The blue of emergency roof tarps handed out after storms.
FEMA_BLUE = (28, 90, 192)

@dataclass(frozen=True)
class Part:
    """A rectangular roof section; its ridge runs along the local u axis (the long side for main parts)."""

    cx: float
    cy: float
    theta: float
    half_len: float
    half_wid: float

    def local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = math.cos(self.theta), math.sin(self.theta)
        dx, dy = x - self.cx, y - self.cy
        return dx * c + dy * s, -dx * s + dy * c

    def polygon(self) -> shapely.Polygon:
        c, s = math.cos(self.theta), math.sin(self.theta)
        corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        return shapely.Polygon(
            [
                (
                    self.cx + u * self.half_len * c - v * self.half_wid * s,
                    self.cy + u * self.half_len * s + v * self.half_wid * c,
                )
                for u, v in corners
            ]
        )


def roof_texture(rng: _RNG, material: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Multiplicative brightness: tile courses, metal seams or shingle grain, plus broad weathering."""
    noise = rng.standard_normal(u.shape)
    if material == "red tile":
        texture = 1.0 - 0.09 * ((v / 0.45) % 1.0 < 0.3) + 0.05 * noise
    elif material == "light metal":
        texture = 1.0 + 0.07 * ((u / 0.5) % 1.0 < 0.3) + 0.025 * noise
    else:
        texture = 1.0 + 0.065 * noise
    k1, k2 = rng.uniform(0.8, 2.0, 2)
    p1, p2 = rng.uniform(0, 2 * math.pi, 2)
    return texture + 0.035 * np.sin(k1 * u + p1) * np.sin(k2 * v + p2)


@dataclass
class RoofCanvas:
    """A roof being painted: colours, the footprint mask and the main section's frame (metres)."""

    rgb: np.ndarray
    inside: np.ndarray
    u: np.ndarray
    v: np.ndarray
    main: Part
    rng: _RNG
    base: np.ndarray

    def pick(self) -> tuple[float, float]:
        """A random point on the roof, so elements never land entirely off it."""
        rows, cols = np.nonzero(self.inside)
        i = int(self.rng.integers(len(rows)))
        return float(self.u[rows[i], cols[i]]), float(self.v[rows[i], cols[i]])

    def rect(self, uc: float, vc: float, hu: float, hv: float, ragged: float = 0.0) -> np.ndarray:
        jitter = 1.0 + ragged * self.rng.standard_normal(self.u.shape) if ragged else 1.0
        return (np.abs(self.u - uc) <= hu * jitter) & (np.abs(self.v - vc) <= hv * jitter) & self.inside

    def blob(self, uc: float, vc: float, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """An irregular round shape; also returns distance / local radius for rims."""
        du, dv = self.u - uc, self.v - vc
        phi = np.arctan2(dv, du)
        a, b = self.rng.uniform(0, 2 * math.pi, 2)
        local = radius * (1.0 + 0.25 * np.sin(3 * phi + a) + 0.12 * np.sin(5 * phi + b))
        rel = np.hypot(du, dv) / local
        return (rel <= 1.0) & self.inside, rel

    def fill(self, mask: np.ndarray, colour: Any, noise: float = 4.0) -> None:
        n = int(mask.sum())
        if n:
            colour = np.asarray(colour, np.float32).reshape(3, -1)
            self.rgb[:, mask] = colour + self.rng.normal(0.0, noise, (3, n))

    def shadow_offset(self, distance: float) -> tuple[float, float]:
        """The shadow direction (south-east) expressed in the main section's frame."""
        dx, dy = (np.array(SHADOW_OFFSET) / math.hypot(*SHADOW_OFFSET)) * distance
        c, s = math.cos(self.main.theta), math.sin(self.main.theta)
        return dx * c + dy * s, -dx * s + dy * c


def add_fixtures(roof: RoofCanvas) -> None:
    """Things intact roofs have that resemble damage: chimneys, vents, skylights, solar panels, stains."""
    rng = roof.rng
    if rng.random() < 0.35:  # chimney near the ridge, with its shadow
        uc, _ = roof.pick()
        vc, half = rng.uniform(-0.6, 0.6), rng.uniform(0.3, 0.5)
        su, sv = roof.shadow_offset(0.8)
        roof.rgb[:, roof.rect(uc + su, vc + sv, half, half) & ~roof.rect(uc, vc, half, half)] *= 0.6
        roof.fill(roof.rect(uc, vc, half, half), [(142, 62, 46), (112, 110, 108)][int(rng.integers(2))])
    if rng.random() < 0.5:  # vent pipes: a few dark pixels
        for _ in range(int(rng.integers(1, 4))):
            roof.fill(roof.rect(*roof.pick(), 0.12, 0.12), (62, 62, 64), 6.0)
    if rng.random() < 0.15:  # skylights: a light frame around dark glass
        for _ in range(int(rng.integers(1, 3))):
            uc, vc = roof.pick()
            hu, hv = rng.uniform(0.35, 0.5), rng.uniform(0.5, 0.75)
            roof.fill(roof.rect(uc, vc, hu + 0.2, hv + 0.2), (205, 205, 200))
            roof.fill(roof.rect(uc, vc, hu, hv), (70, 86, 108), 6.0)
    if rng.random() < 0.12:  # a solar array on one side of the main ridge
        side = rng.choice([-1.0, 1.0])
        rows = 2 if roof.main.half_wid > 4.0 else 1
        span = min(roof.main.half_len - 0.6, rng.uniform(2.0, 5.0))
        v0, v1 = sorted((side * 0.4, side * min(0.4 + rows * 1.7, roof.main.half_wid - 0.3)))
        panel = roof.rect(rng.uniform(-0.5, 0.5), (v0 + v1) / 2, span, (v1 - v0) / 2)
        roof.fill(panel, (30, 38, 74), 5.0)
        grid_lines = panel & (((roof.u % 1.0) < 0.25) | ((np.abs(roof.v) % 1.7) < 0.25))
        roof.rgb[:, grid_lines] = roof.rgb[:, grid_lines] * 0.5 + 60
    if rng.random() < 0.25:  # weathering stain or moss: soft, darker, a little greener
        stain, _ = roof.blob(*roof.pick(), rng.uniform(1.0, 2.5))
        roof.rgb[:, stain] *= np.array([0.86, 0.92, 0.86], np.float32)[:, None]


def add_damage(roof: RoofCanvas) -> None:
    """One to three kinds of storm damage, in an amount from subtle to severe."""
    rng = roof.rng
    severity = rng.uniform(0.1, 1.0)
    kinds = rng.choice(4, size=int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15])), replace=False)
    for kind in kinds:
        [_hole, _debris, _tarp, _missing_shingles][int(kind)](roof, severity)


def _hole(roof: RoofCanvas, severity: float) -> None:
    """Holes show the dark attic with rafters, ringed by splintered decking."""
    rng = roof.rng
    for _ in range(1 + int(severity * 2.5)):
        radius = rng.uniform(0.4, 0.6) + 0.7 * severity * rng.uniform(0.3, 1.0)
        hole, rel = roof.blob(*roof.pick(), radius)
        rim = (rel > 1.0) & (rel < 1.0 + 0.35 / radius) & roof.inside & (rng.random(rel.shape) < 0.5)
        roof.fill(rim, (152, 122, 86), 12.0)
        roof.fill(hole, np.array((32, 28, 24)) * rng.uniform(0.8, 1.3), 6.0)
        rafters = hole & ((roof.u % 0.6) < 0.25)
        roof.rgb[:, rafters] = roof.rgb[:, rafters] * 0.5 + np.array([[48], [38], [28]])


#: Debris colours: splinters and paper, dark branches, wood, insulation, broken grey tiles.
_DEBRIS = np.array([(236, 234, 228), (40, 38, 36), (166, 130, 90), (224, 170, 150), (120, 122, 126)], "f4")


def _debris(roof: RoofCanvas, severity: float) -> None:
    """Scattered specks and clumps: branches, insulation, broken tiles."""
    rng = roof.rng
    rows, cols = np.nonzero(roof.inside)
    count = min(len(rows), int(12 + 140 * severity))
    chosen = rng.choice(len(rows), count, replace=False)
    colours = _DEBRIS[rng.integers(len(_DEBRIS), size=count)].T
    roof.rgb[:, rows[chosen], cols[chosen]] = colours + rng.normal(0, 8, colours.shape)
    double = rng.random(count) < 0.4  # some specks are two pixels long
    r2 = np.minimum(rows[chosen] + 1, roof.inside.shape[0] - 1)[double]
    c2 = cols[chosen][double]
    keep = roof.inside[r2, c2]
    roof.rgb[:, r2[keep], c2[keep]] = colours[:, double][:, keep]
    for _ in range(int(rng.integers(0, 2) + 3 * severity)):
        clump, _ = roof.blob(*roof.pick(), rng.uniform(0.25, 0.5))
        roof.fill(clump, _DEBRIS[int(rng.integers(len(_DEBRIS)))], 10.0)


def _tarp(roof: RoofCanvas, severity: float) -> None:
    """Blue emergency tarps, wrinkled, held down by wooden battens along their edges."""
    rng = roof.rng
    for _ in range(1 + int(severity > 0.7)):
        uc, vc = roof.pick()
        hu = (0.8 + 1.5 * severity) * rng.uniform(0.7, 1.2)
        hv = (0.6 + 1.1 * severity) * rng.uniform(0.7, 1.2)
        sheet = roof.rect(uc, vc, hu, hv)
        wrinkles = 1.0 + 0.08 * np.sin(2 * math.pi * roof.u / rng.uniform(0.6, 1.2) + rng.uniform(0, 6))
        colour = np.array(FEMA_BLUE, np.float32)[:, None] * rng.uniform(0.85, 1.1) * wrinkles[sheet]
        roof.fill(sheet, colour, 5.0)
        roof.fill(
            sheet & ~roof.rect(uc, vc, hu - 0.25, hv - 0.25) & (rng.random(sheet.shape) < 0.6),
            (150, 120, 84),
            8.0,
        )


def _missing_shingles(roof: RoofCanvas, severity: float) -> None:
    """Patches where the cover blew off: black felt, bare decking or an older layer of another shade."""
    rng = roof.rng
    older = roof.base * 0.55 if roof.base.mean() > 150 else np.clip(roof.base * 1.4 + 25, 0, 255)
    for _ in range(2 + int(5 * severity)):
        scale = 0.9 + severity
        patch = roof.rect(*roof.pick(), rng.uniform(0.3, 0.7) * scale, rng.uniform(0.25, 0.5) * scale, 0.15)
        roof.fill(patch, [(46, 44, 46), (178, 146, 102), older][int(rng.integers(3))], 6.0)
