"""Test-time augmentation: the transform sets arcgis.learn uses, averaged over probabilities.

MAP_SPACE chips have no preferred orientation, so all 8 rotations and flips apply; PIXEL_SPACE chips keep
the sensor's up, so only the identity and a horizontal flip do (arcgis.learn's transforms {0, 2}).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Transform = Callable[[np.ndarray], np.ndarray]


def _rot(k: int, flip: bool) -> Transform:
    def apply(chips: np.ndarray) -> np.ndarray:
        out = np.rot90(chips, k=k, axes=(2, 3))
        if flip:
            out = out[..., ::-1]
        return np.ascontiguousarray(out)

    return apply


def transforms(image_space: str, square: bool) -> list[Transform]:
    """The transform set for an image space; non-square chips skip the quarter turns they cannot take."""
    if image_space == "PIXEL_SPACE":
        return [_rot(0, False), _rot(0, True)]
    if square:
        return [_rot(k, flip) for k in range(4) for flip in (False, True)]
    return [_rot(0, False), _rot(0, True), _rot(2, False), _rot(2, True)]
