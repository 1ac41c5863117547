"""What a person at a terminal sees while a run goes: a progress bar, as the CLI's progress hook."""

from __future__ import annotations

import sys
from typing import Any

from .settings import current


class TerminalProgress:
    """A bar on stderr fed by ``progress(done, total)``; it appears only after a second
    (GEOCLASSIFY_PROGRESS_DELAY), so short runs stay quiet."""

    def __init__(self, unit: str = " objects") -> None:
        self.unit = unit
        self._bar: Any = None

    def __call__(self, done: int, total: int | None) -> None:
        if self._bar is None:
            from tqdm import tqdm  # the terminal's library, only when a bar is wanted

            delay = current().progress_delay
            self._bar = tqdm(total=total, unit=self.unit, delay=delay, file=sys.stderr, dynamic_ncols=True)
        if total is not None and self._bar.total != total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
