"""What a person at a terminal sees: a progress bar on long runs and one summary line at the end."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .hooks import check_cancelled, current
from .settings import progress_delay


@dataclass(frozen=True)
class Summary:
    """Counts and timing of one run; ``line()`` is what the CLI prints last.

    ``read`` counts the objects: features, or images when there is no feature layer (``unit``).
    """

    read: int
    classified: int
    outside: int = 0
    empty: int = 0
    errors: int = 0
    rows: int | None = None
    skipped: int = 0
    seconds: float = 0.0
    output: str | None = None
    unit: str = "features"

    @property
    def rate(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else float("inf")

    def line(self) -> str:
        # Objects the extent left out were read too: they are counted with the rest, then set apart.
        text = f"{self.read + self.skipped} {self.unit} read"
        if self.skipped:
            text += f", {self.skipped} outside the extent left out"
        if self.unit == "images":
            text += f", {self.classified} classified, {self.errors} unreadable, {self.outside} without valid pixels"
        else:
            text += (
                f", {self.classified} classified, {self.outside} outside the raster or on NoData only, "
                f"{self.empty} with empty geometry"
            )
        if self.rows is not None:
            text += f", {self.rows} rows (one per feature and image that covers it)"
        text += f"; {self.seconds:.2f} s, {self.rate:,.0f} {self.unit}/s"
        return text + (f" -> {self.output}" if self.output else "")


@contextmanager
def progress_bar(
    total: int | None, enabled: bool, description: str = "classifying", unit: str = " features"
) -> Iterator[Callable[[int], None]]:
    """Yield an ``advance(n)`` callback, called after each batch: it moves the terminal bar (when ``enabled``;
    it appears only after a second, GEOCLASSIFY_PROGRESS_DELAY, so short runs stay quiet), tells the run's
    progress hook, and stops the run there if its caller cancelled it."""
    hooks = current()
    done = 0

    def told(n: int) -> None:
        nonlocal done
        done += n
        if hooks.progress is not None:
            hooks.progress(done, total)
        check_cancelled()

    if not enabled:
        yield told
        return
    from tqdm import tqdm

    delay = progress_delay()
    with tqdm(total=total, desc=description, unit=unit, delay=delay, file=sys.stderr, dynamic_ncols=True) as bar:

        def advance(n: int) -> None:
            bar.update(n)
            told(n)

        yield advance
