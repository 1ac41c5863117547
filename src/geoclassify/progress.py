"""What a person at a terminal sees: a progress bar on long runs and one summary line at the end."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """Counts and timing of one run; ``line()`` is what the CLI prints last."""

    features_read: int
    classified: int
    outside: int
    empty: int
    seconds: float
    output: str | None = None

    @property
    def rate(self) -> float:
        return self.features_read / self.seconds if self.seconds > 0 else float("inf")

    def line(self) -> str:
        text = (
            f"{self.features_read} features read, {self.classified} classified, "
            f"{self.outside} outside the raster or on NoData only, {self.empty} with empty geometry; "
            f"{self.seconds:.2f} s, {self.rate:,.0f} features/s"
        )
        return text + (f" -> {self.output}" if self.output else "")


@contextmanager
def progress_bar(total: int, enabled: bool, description: str = "classifying") -> Iterator[Callable[[int], None]]:
    """Yield an ``advance(n)`` callback; the bar appears only after a second (GEOCLASSIFY_PROGRESS_DELAY), so
    short runs stay quiet."""
    if not enabled:
        yield lambda _n: None
        return
    from tqdm import tqdm

    with tqdm(
        total=total,
        desc=description,
        unit=" features",
        delay=float(os.environ.get("GEOCLASSIFY_PROGRESS_DELAY", "1.0")),
        file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:
        yield bar.update
