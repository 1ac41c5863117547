"""Esri's KerasClassifier chip preparation, step for step, without scikit-image.

Esri's child (raster-deep-learning ``python_raster_functions/Keras/KerasClassifier.py``) takes each chip as cut
(``ImageHeight`` x ``ImageWidth``, NoData 0), channels last, and

1. scales it so its longer side is ``resampled_image_size`` (``scale = max(1, size / min(h, w))``, lowered to
   ``size / max(h, w)`` when ``round(max(h, w) * scale) > size``; no resize when the scale is 1) with
   ``skimage.transform.resize(order=1, mode="constant", cval=0, clip=True, preserve_range=True,
   anti_aliasing=False)`` to ``(round(h * scale), round(w * scale))``;
2. zero-pads it to ``size`` x ``size``, centred (``top = (size - h) // 2``, the odd pixel at the bottom/right);
3. casts it back to the chip's pixel type (``astype``: integer rasters are truncated), and feeds it NHWC with no
   normalisation.

The child passes ``anti_aliasing=False`` explicitly (for skimage >= 0.14), so no version smooths before resizing.
The interpolation is done as skimage >= 0.19 does it (``scipy.ndimage.zoom`` with ``grid_mode``): same
coordinates, weights and order of sums, so the result matches that skimage bit for bit, which matters because a
value a rounding error below a whole number truncates one lower. The Keras child ran in the TensorFlow 1 era, on
skimage 0.14-0.18, whose resize differs in two ways: it warped with a least-squares-fitted transform (coordinates
off by ~1e-13 pixel, which can move a truncated value by one where the exact value is whole), and its clip kept
the chip's value range even where the zero border was blended in. We follow that clip, the one semantic
difference: it only shows when a chip smaller than ``resampled_image_size`` is enlarged and has no zero pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ....errors import ModelArgumentError


def esri_square_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(rows, cols) Esri's ``resize_image(mode="square")`` resizes a chip to before padding it to ``size``."""
    scale: float = max(1, size / min(height, width))
    if round(max(height, width) * scale) > size:
        scale = size / max(height, width)
    if scale == 1:
        return height, width
    return round(height * scale), round(width * scale)


@dataclass(frozen=True)
class _Axis:
    """Order-1 taps along one axis: the two source indexes of each output pixel and their weights.

    A tap outside the source keeps weight 0 on a clamped index, which adds exactly what the border value 0 would.
    """

    low: np.ndarray
    high: np.ndarray
    w_low: np.ndarray
    w_high: np.ndarray

    @classmethod
    def between(cls, source: int, target: int) -> _Axis:
        zoom = source / target
        position = (np.arange(target, dtype=np.float64) + 0.5) * zoom - 0.5
        start = np.floor(position)
        w_low = 1.0 - (position - start)
        w_high = 1.0 - w_low
        low = start.astype(np.int64)
        high = low + 1
        w_low[low < 0] = 0.0
        w_high[high > source - 1] = 0.0
        return cls(np.clip(low, 0, source - 1), np.clip(high, 0, source - 1), w_low, w_high)


def resize_order1(chips: np.ndarray, height: int, width: int) -> np.ndarray:
    """skimage's ``resize(chip, (height, width), order=1, mode="constant", cval=0, clip=True, preserve_range=True,
    anti_aliasing=False)`` of each (bands, h, w) chip of a stack, bands resized alike, in float64 as skimage computes
    for integer chips (a float32 stack is promoted where it is weighted, which is exact and copies less)."""
    rows = _Axis.between(chips.shape[2], height)
    cols = _Axis.between(chips.shape[3], width)
    top = chips[:, :, rows.low, :] * rows.w_low[:, None]
    bottom = chips[:, :, rows.high, :] * rows.w_high[:, None]
    out = top[..., cols.low] * cols.w_low
    out += top[..., cols.high] * cols.w_high
    out += bottom[..., cols.low] * cols.w_low
    out += bottom[..., cols.high] * cols.w_high
    # skimage 0.14-0.18 _clip_warp_output: clip to each chip's range; zeros from the border survive the clip only
    # where they are exactly zero.
    low = chips.min(axis=(1, 2, 3), keepdims=True)
    high = chips.max(axis=(1, 2, 3), keepdims=True)
    zero_outside = (low > 0) | (high < 0)
    kept_zeros = (out == 0) & zero_outside
    np.clip(out, low, high, out=out)
    out[kept_zeros] = 0.0
    return out


@dataclass(frozen=True)
class KerasChips:
    """The preprocessor of an Esri Keras package: (batch, bands, h, w) chips to (batch, bands, size, size) input.

    Chips reach it in the raster's own type when small integers, else as float32 (resampled chips always), so
    the type ``astype`` returns to is read from the pixels: a chip of whole numbers came from an integer raster and
    is truncated like one; a chip with fractions (a float raster) keeps them.
    """

    size: int
    clip: tuple[float, float] | None = None

    def check(self, height: int, width: int, source: str) -> None:
        """Refuse, before any pixel is read, a chip shape Esri's resize would shrink to nothing."""
        rows, cols = esri_square_shape(height, width, self.size)
        if rows < 1 or cols < 1:
            raise ModelArgumentError(
                f"{source}: resampled_image_size {self.size} resizes the {height} x {width} chips (ImageHeight x "
                f"ImageWidth) to {rows} x {cols} pixels; give a larger resampled_image_size or a squarer chip"
            )

    def __call__(self, chips: np.ndarray, in_place: bool = False) -> np.ndarray:
        """Resize, pad and truncate as Esri's child does; ``in_place`` is accepted for the Preprocessor protocol."""
        count, bands, height, width = chips.shape
        pixels = np.asarray(chips, dtype=np.float32)
        if self.clip is not None:
            pixels = np.clip(pixels, self.clip[0], self.clip[1])
        whole = np.all(pixels == np.trunc(pixels), axis=(1, 2, 3))
        rows, cols = esri_square_shape(height, width, self.size)
        if (rows, cols) != (height, width):
            pixels = resize_order1(pixels, rows, cols)
            pixels[whole] = np.trunc(pixels[whole])
        out = np.zeros((count, bands, self.size, self.size), dtype=np.float32)
        top, left = (self.size - rows) // 2, (self.size - cols) // 2
        out[:, :, top : top + rows, left : left + cols] = pixels
        return out
