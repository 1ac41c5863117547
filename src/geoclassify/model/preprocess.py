"""Turn raw chip pixels into model input exactly as the EMD says, as one fused multiply-add per channel.

Esri zeroes NoData and out-of-raster pixels *before* normalising, so zeros reach the model as
``-mean/std``; we keep that order so a package behaves as it did in ArcGIS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ModelDefinitionError
from .emd import IMAGENET_MEAN, IMAGENET_STD, ModelDefinition


@dataclass(frozen=True)
class Preprocessor:
    """``x * scale + offset`` per channel, after an optional clip to the EMD's DataRange."""

    scale: np.ndarray
    offset: np.ndarray
    clip: tuple[float, float] | None = None

    @classmethod
    def for_model(cls, definition: ModelDefinition, band_indexes: Sequence[int]) -> Preprocessor:
        """Build the transform for chips whose channels are the raster bands ``band_indexes`` (0-based)."""
        stats = definition.normalization
        if stats is not None:
            for b in band_indexes:
                if b >= len(stats.band_min):
                    raise ModelDefinitionError(
                        f"{definition.source}: NormalizationStats has no statistics for band index {b}; "
                        "the statistics are indexed by raster band. Fix the EMD."
                    )
            low = np.array([stats.band_min[b] for b in band_indexes], dtype=np.float64)
            high = np.array([stats.band_max[b] for b in band_indexes], dtype=np.float64)
            mean = np.array([stats.scaled_mean[b] for b in band_indexes], dtype=np.float64)
            std = np.array([stats.scaled_std[b] for b in band_indexes], dtype=np.float64)
            # ((x - low) / (high - low) - mean) / std, folded into one scale and offset.
            scale = 1.0 / ((high - low) * std)
            offset = (-low / (high - low) - mean) / std
        else:
            if len(band_indexes) != 3:
                raise ModelDefinitionError(
                    f"{definition.source}: the EMD has no NormalizationStats, so ImageNet normalisation "
                    f"applies, which is defined for 3 bands; ExtractBands selects {len(band_indexes)}. "
                    "Add NormalizationStats to the EMD."
                )
            mean = np.array(IMAGENET_MEAN, dtype=np.float64)
            std = np.array(IMAGENET_STD, dtype=np.float64)
            scale = 1.0 / std
            offset = -mean / std
        return cls(
            scale=scale.astype(np.float32).reshape(1, -1, 1, 1),
            offset=offset.astype(np.float32).reshape(1, -1, 1, 1),
            clip=definition.data_range,
        )

    def __call__(self, chips: np.ndarray, in_place: bool = False) -> np.ndarray:
        """Normalise a (batch, bands, height, width) stack to float32; ``in_place`` reuses a float32 stack the
        caller owns. Other types (chips keep the raster's) are scaled into a new float32 array in the same pass.

        Band by band with plain numbers: broadcasting a (1, bands, 1, 1) scale made numpy's inner loops a chip row
        long and cost half as much again on small chips."""
        chips = np.asarray(chips)
        out = chips if in_place and chips.dtype == np.float32 else np.empty(chips.shape, dtype=np.float32)
        scale, offset = self.scale.ravel(), self.offset.ravel()
        for band in range(chips.shape[1]):
            target = out[:, band]
            if self.clip is not None:
                np.clip(chips[:, band], self.clip[0], self.clip[1], out=target)
                target *= scale[band]
            else:
                np.multiply(chips[:, band], scale[band], out=target, dtype=np.float32)
            target += offset[band]
        return out
