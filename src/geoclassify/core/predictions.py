"""Results as arrays: a batch's (:class:`BatchResult`, what every runner hands back and the journal saves) and a
whole plan's (:class:`Predictions`, in input order).

One type for a batch's four arrays, rather than a tuple unpacked by position wherever results travel, keeps the
worker processes, the Dask partitions, the in-process loop and the journal agreeing on what each array is; a
multi-label model's scores are one more axis of ``scores``, nothing else changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True)
class BatchResult:
    """Per feature of a batch: its position in the input (``targets``), class index (-1: not classified, no valid
    pixel), ``scores`` (the confidence, or every class's probability for multi-label models; NaN where not
    classified) and ``coverage`` (the share of the chip's pixels that are valid)."""

    targets: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    coverage: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)

    @classmethod
    def joined(cls, parts: Sequence[BatchResult]) -> BatchResult:
        """Several batches as one (a Dask partition's), in order."""
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))


@dataclass
class Predictions:
    """Per-feature results in input order; ``class_index`` is -1 where nothing was classified."""

    class_index: np.ndarray
    confidence: np.ndarray
    coverage: np.ndarray
    empty: np.ndarray
    outside: np.ndarray

    @property
    def classified(self) -> np.ndarray:
        return self.class_index >= 0
