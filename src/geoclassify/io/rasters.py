"""Rasters through GDAL (rasterio): open, describe, and read windows clamped to the raster and zero-padded.

Windows are read clamped and padded by hand rather than with ``boundless=True``, which costs about
2.4x more, and never is the whole raster read into memory.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NodataShadowWarning, NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from ..errors import RasterError
from .images import is_remote

#: Pixel types chips keep as they are read, up to normalisation: a uint8 chip is a quarter of a float32 one to copy,
#: blacken and hand on, and normalising from it costs no more. Anything else is read as float32, as the model takes.
NATIVE_TYPES = frozenset({"uint8", "int8", "uint16", "int16", "float32"})


def pixel_type(dtypes: Sequence[str]) -> np.dtype:
    """The type chips of bands of ``dtypes`` are cut in: theirs when all are one of :data:`NATIVE_TYPES`."""
    if dtypes and all(d in NATIVE_TYPES for d in dtypes):
        return np.result_type(*dtypes)
    return np.dtype(np.float32)


#: What a failed read usually means, for the user who has to act on it.
READ_HINT = "the file may be truncated or corrupt, or a file it refers to may be missing"


def gdal_cause(exc: BaseException) -> str:
    """What GDAL said, from rasterio's exception chain.

    rasterio raises "Read failed. See previous exception for details." with GDAL's own errors chained behind it:
    the deepest is the root cause (a missing VRT source, a short read), the first the context (which band, which
    block). Both are given; the generic text is dropped.
    """
    messages: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).strip()
        if text and "See previous exception" not in text and text not in messages:
            messages.append(text)
        current = current.__cause__ or current.__context__
    if not messages:
        return str(exc)
    root, context = messages[-1], messages[0]
    return root if root == context or root in context else f"{root}; {context}"


class RasterSource:
    """One open raster, with the bands a model asked for resolved to 0-based indexes."""

    def __init__(self, path: str | os.PathLike[str], label: str | None = None) -> None:
        location = os.fspath(path)
        self.label = label or location  # what the user called it, for messages (not always a path)
        if not is_remote(location) and not Path(location).exists():
            raise RasterError(f"raster {self.label!r} not found; check the path given to «input_raster»")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self.dataset = rasterio.open(location)
        except RasterioIOError as exc:
            raise RasterError(
                f"raster {self.label!r} cannot be read by GDAL ({gdal_cause(exc)}); is it an image file?"
            ) from None
        self.band_indexes: tuple[int, ...] = tuple(range(self.dataset.count))
        # Reading masks costs a second pass over every window; skip it when GDAL says all pixels are valid.
        self.needs_mask = any(MaskFlags.all_valid not in flags for flags in self.dataset.mask_flag_enums)

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | None) -> None:
        self.close()

    def close(self) -> None:
        self.dataset.close()

    @property
    def crs(self) -> CRS | None:
        crs = self.dataset.crs
        return crs if crs else None

    @property
    def transform(self) -> Affine:
        return self.dataset.transform

    @property
    def shape(self) -> tuple[int, int]:
        return (self.dataset.height, self.dataset.width)

    @property
    def cell_size(self) -> tuple[float, float]:
        return self.dataset.res

    def select_bands(self, extract_bands: Sequence[int | str] | None) -> tuple[int, ...]:
        """Resolve ExtractBands (0-based indexes or band names) against this raster; None means all bands."""
        count = self.dataset.count
        if extract_bands is None:
            self.band_indexes = tuple(range(count))
            return self.band_indexes
        descriptions = [d or "" for d in self.dataset.descriptions]
        resolved = []
        for band in extract_bands:
            if isinstance(band, int):
                if band >= count:
                    raise RasterError(
                        f"raster {self.label!r} has {count} band(s) (indexes 0-{count - 1}) but the model's "
                        f"ExtractBands asks for band index {band}; use a raster with the bands the model "
                        "was trained on"
                    )
                resolved.append(band)
            else:
                matches = [i for i, d in enumerate(descriptions) if d.lower() == band.lower()]
                if not matches:
                    names = ", ".join(repr(d) for d in descriptions if d) or "none"
                    raise RasterError(
                        f"raster {self.label!r} has no band named {band!r} (ExtractBands); its band names: {names}"
                    )
                resolved.append(matches[0])
        self.band_indexes = tuple(resolved)
        return self.band_indexes

    def read_window(self, row_off: int, col_off: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (bands, height, width) of :func:`pixel_type`, NoData and outside pixels 0; valid where every band
        has data."""
        return read_clamped(
            self.dataset, self.band_indexes, (row_off, col_off, height, width), self.needs_mask, self.label
        )

    def read_resampled(
        self, row_off: int, col_off: int, height: int, width: int, out_shape: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """A window inside the raster, resampled by GDAL to ``out_shape`` while reading."""
        return read_clamped(
            self.dataset, self.band_indexes, (row_off, col_off, height, width), self.needs_mask, self.label, out_shape
        )


def read_clamped(
    dataset: rasterio.io.DatasetReaderBase,
    band_indexes: Sequence[int],
    window: tuple[int, int, int, int],
    needs_mask: bool,
    label: str,
    out_shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read ``window`` (row_off, col_off, height, width) of ``dataset``, clamped to it and zero-padded.

    Returns pixels of :func:`pixel_type` with masked pixels 0, band by band (as Esri zeroes masked pixels), and a mask
    of the pixels valid in every band. With ``out_shape`` (only for windows inside the dataset) GDAL resamples the
    window bilinearly while reading, using overviews, so a whole large image never sits in memory at full resolution.
    """
    row_off, col_off, height, width = window
    dtype = pixel_type([dataset.dtypes[i] for i in band_indexes])
    if out_shape is not None:
        return _read_resampled(dataset, band_indexes, window, needs_mask, label, out_shape, dtype)
    pixels = np.zeros((len(band_indexes), height, width), dtype=dtype)
    valid = np.zeros((height, width), dtype=bool)
    r0, c0 = max(row_off, 0), max(col_off, 0)
    r1, c1 = min(row_off + height, dataset.height), min(col_off + width, dataset.width)
    if r1 <= r0 or c1 <= c0:
        return pixels, valid
    clamped = Window(c0, r0, c1 - c0, r1 - r0)
    indexes = [i + 1 for i in band_indexes]
    try:
        data = dataset.read(indexes, window=clamped)
        inside = np.ones(data.shape[1:], dtype=bool)
        if needs_mask:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NodataShadowWarning)
                masks = dataset.read_masks(indexes, window=clamped) > 0
            data = np.where(masks, data, 0)
            inside = masks.all(axis=0)
    except RasterioIOError as exc:
        raise RasterError(
            f"raster {label!r}: reading rows {r0}-{r1}, columns {c0}-{c1} failed ({gdal_cause(exc)}); {READ_HINT}"
        ) from None
    pixels[:, r0 - row_off : r1 - row_off, c0 - col_off : c1 - col_off] = data
    valid[r0 - row_off : r1 - row_off, c0 - col_off : c1 - col_off] = inside
    return pixels, valid


def _read_resampled(
    dataset: rasterio.io.DatasetReaderBase,
    band_indexes: Sequence[int],
    window: tuple[int, int, int, int],
    needs_mask: bool,
    label: str,
    out_shape: tuple[int, int],
    dtype: np.dtype,
) -> tuple[np.ndarray, np.ndarray]:
    row_off, col_off, height, width = window
    if row_off < 0 or col_off < 0 or row_off + height > dataset.height or col_off + width > dataset.width:
        raise ValueError("a resampled read must lie inside the raster")
    indexes = [i + 1 for i in band_indexes]
    shape = (len(indexes), *out_shape)
    try:
        data = dataset.read(
            indexes, window=Window(col_off, row_off, width, height), out_shape=shape, resampling=Resampling.bilinear
        ).astype(dtype, copy=False)
        valid = np.ones(out_shape, dtype=bool)
        if needs_mask:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NodataShadowWarning)
                masks = dataset.read_masks(indexes, window=Window(col_off, row_off, width, height), out_shape=shape) > 0
            data = np.where(masks, data, data.dtype.type(0))
            valid = masks.all(axis=0)
    except RasterioIOError as exc:
        raise RasterError(f"raster {label!r}: reading failed ({gdal_cause(exc)}); {READ_HINT}") from None
    return data, valid
