"""Tuning knobs from ``GEOCLASSIFY_*`` environment variables, read once per run into one :class:`Settings`.

They are read when a run starts (or when code outside a run needs one), never at import: a bad value is one
clear error naming the variable instead of a traceback while Python imports the package, a long-lived process
sees the environment it runs in, and everything in one run sees the same values.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import SettingError

#: Extracted packages larger than this are refused (GEOCLASSIFY_MAX_PACKAGE_BYTES).
DEFAULT_MAX_PACKAGE_BYTES = 8 * 1024**3


@dataclass(frozen=True)
class Settings:
    """Every knob, with its default; :meth:`from_environ` reads them from the environment."""

    #: Layers of at least this many features are streamed rather than read whole (0: every layer).
    stream_features: int = 250_000
    #: Rows per batch when a big layer is streamed.
    stream_batch: int = 65_536
    #: Results are saved whenever this many features are waiting (and at least every second).
    journal_features: int = 4096
    #: Seconds before a terminal progress bar appears, so short runs stay quiet.
    progress_delay: float = 1.0
    #: Seconds to wait for a Dask scheduler to answer.
    scheduler_timeout: float = 20.0
    #: Most bytes a model package may unpack to.
    max_package_bytes: int = DEFAULT_MAX_PACKAGE_BYTES
    #: Where extracted and converted packages are kept.
    cache_dir: Path = Path.home() / ".cache" / "geoclassify"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        cache = env.get("GEOCLASSIFY_CACHE_DIR", "").strip()
        base = env.get("XDG_CACHE_HOME", "").strip()
        return cls(
            stream_features=_int(env, "GEOCLASSIFY_STREAM_FEATURES", cls.stream_features, minimum=0),
            stream_batch=_int(env, "GEOCLASSIFY_STREAM_BATCH", cls.stream_batch),
            journal_features=_int(env, "GEOCLASSIFY_JOURNAL_FEATURES", cls.journal_features),
            progress_delay=_float(env, "GEOCLASSIFY_PROGRESS_DELAY", cls.progress_delay, above=-1e-9),
            scheduler_timeout=_float(env, "GEOCLASSIFY_SCHEDULER_TIMEOUT", cls.scheduler_timeout),
            max_package_bytes=_int(env, "GEOCLASSIFY_MAX_PACKAGE_BYTES", cls.max_package_bytes),
            cache_dir=(
                Path(cache).expanduser()
                if cache
                else (Path(base) / "geoclassify" if base else Path.home() / ".cache" / "geoclassify")
            ),
        )


_CURRENT: contextvars.ContextVar[Settings | None] = contextvars.ContextVar("geoclassify_settings", default=None)


def current() -> Settings:
    """The run's settings; outside a run (``inspect``, a worker process) the environment's, read now."""
    return _CURRENT.get() or Settings.from_environ()


@contextlib.contextmanager
def reading(settings: Settings | None = None) -> Iterator[Settings]:
    """Run the block with ``settings`` (default: read from the environment once, now)."""
    chosen = settings or Settings.from_environ()
    token = _CURRENT.set(chosen)
    try:
        yield chosen
    finally:
        _CURRENT.reset(token)


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    text = env.get(name, "").strip()
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


def _float(env: Mapping[str, str], name: str, default: float, above: float = 0.0) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > above or value == float("inf"):
        raise SettingError(f"{name}={text!r}: give a number above {max(above, 0):g}, or unset it (default {default:g})")
    return value
