"""``export_chips``: every chip written as the model receives it, to see what a label was made from.

The chips are taken where the model takes them (:meth:`~geoclassify.model.runtime.Model.classify`), after they
were cut, resampled and blackened and before they are normalised, so what is written is what was classified, in
this process or in any worker. Each file is named by what error messages call the chip (``feature 12`` gives
``feature_12.png``): PNG, which any viewer opens, when the chip's values are whole numbers that 8 or 16 bits hold on
1, 3 or 4 bands, GeoTIFF of the chip's own type otherwise.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from ..errors import OutputError


def write_chips(folder: str | Path, chips: np.ndarray, ids: Sequence[object]) -> None:
    """Write each chip of a (chips, bands, height, width) stack to ``folder``, named by its id."""
    target = Path(folder)
    for position, chip in enumerate(chips):
        chip = _as_png(chip)
        suffix, driver = (".png", "PNG") if chip.dtype in (np.uint8, np.uint16) else (".tif", "GTiff")
        name = str(ids[position]) if position < len(ids) else f"chip {position}"
        path = target / (re.sub(r"[^\w.-]+", "_", name).strip("_") + suffix)
        profile = {
            "driver": driver,
            "width": chip.shape[2],
            "height": chip.shape[1],
            "count": chip.shape[0],
            "dtype": chip.dtype.name,
        }
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a chip is pixels, as the model sees them
                with rasterio.open(path, "w", **profile) as dst:
                    dst.write(chip)
        except (OSError, rasterio.errors.RasterioError) as exc:
            raise OutputError(
                f"«export_chips»: cannot write {str(path)!r} ({exc}); give a folder you can write to"
            ) from None


def _as_png(chip: np.ndarray) -> np.ndarray:
    """The chip in the PNG type that holds its values exactly (chips reach the model as floats), or as it is when
    none does (fractions, negatives, more than 16 bits, or a band count PNG cannot hold)."""
    if chip.shape[0] not in (1, 3, 4) or not np.isfinite(chip).all():
        return chip
    if chip.dtype in (np.uint8, np.uint16):
        return chip
    if np.any(chip != np.round(chip)) or chip.min(initial=0) < 0:
        return chip
    top = chip.max(initial=0)
    return chip.astype(np.uint8) if top <= 255 else chip.astype(np.uint16) if top <= 65535 else chip
