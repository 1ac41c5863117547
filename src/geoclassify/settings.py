"""Tuning knobs read from ``GEOCLASSIFY_*`` environment variables, at the moment they are used.

They are read when needed, never at import: a bad value then becomes one clear error naming the variable
(instead of a traceback while Python imports the package), and a long-lived process sees the value of the
environment it runs in.
"""

from __future__ import annotations

import os

from .errors import SettingError


def env_int(name: str, default: int, minimum: int = 1) -> int:
    """An integer setting of at least ``minimum``; unset or empty means ``default``."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise SettingError(
            f"{name}={text!r}: give a whole number of at least {minimum}, or unset it (default {default})"
        )
    return value


def env_float(name: str, default: float, minimum: float = 0.0) -> float:
    """A number above ``minimum``; unset or empty means ``default``."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > minimum or value == float("inf"):
        raise SettingError(f"{name}={text!r}: give a number above {minimum:g}, or unset it (default {default:g})")
    return value


def stream_features() -> int:
    """Layers of at least this many features are streamed rather than read whole (0: every layer)."""
    return env_int("GEOCLASSIFY_STREAM_FEATURES", 250_000, minimum=0)


def stream_batch() -> int:
    """Rows per batch when a big layer is streamed."""
    return env_int("GEOCLASSIFY_STREAM_BATCH", 65_536)


def journal_features() -> int:
    """Results are saved whenever this many features are waiting (and at least every second)."""
    return env_int("GEOCLASSIFY_JOURNAL_FEATURES", 4096)


def progress_delay() -> float:
    """Seconds before a progress bar appears, so short runs stay quiet."""
    return env_float("GEOCLASSIFY_PROGRESS_DELAY", 1.0, minimum=-1e-9)
