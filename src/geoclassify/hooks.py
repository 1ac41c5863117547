"""What a caller hears from a run and how it steers it: progress, cancellation, warnings.

A shell (the CLI's progress bar, a job service's status record) sets :class:`RunHooks` for the run it starts;
the run's loops report through :func:`advance` and are stopped through the cancel check it polls, between
batches. The hooks live in a context variable, so two runs in two threads (or two asyncio tasks) of one
service each hear their own, and code deep in the pipeline needs no hook parameter threaded through it.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .errors import RunCancelled


@dataclass(frozen=True)
class RunHooks:
    """``progress(done, total)`` after each batch (``total`` None while unknown); ``cancelled()`` polled between
    batches: once it returns True the run stops with :class:`RunCancelled`; ``warning(w)`` receives each
    warning about the user's data or settings instead of Python's ``warnings`` machinery."""

    progress: Callable[[int, int | None], None] | None = None
    cancelled: Callable[[], bool] | None = None
    warning: Callable[[Warning], None] | None = None


NO_HOOKS = RunHooks()
_CURRENT: contextvars.ContextVar[RunHooks | None] = contextvars.ContextVar("geoclassify_hooks", default=None)


def current() -> RunHooks:
    return _CURRENT.get() or NO_HOOKS


@contextlib.contextmanager
def using(hooks: RunHooks) -> Iterator[RunHooks]:
    """Run the block with ``hooks``; the caller's are back afterwards."""
    token = _CURRENT.set(hooks)
    try:
        yield hooks
    finally:
        _CURRENT.reset(token)


@contextlib.contextmanager
def tracking(total: int | None) -> Iterator[Callable[[int], None]]:
    """An ``advance(n)`` for a loop of ``total`` objects (None: not known yet), called after each batch: it tells
    the progress hook how far the run is and stops the run there if its caller cancelled it."""
    hooks = current()
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if hooks.progress is not None:
            hooks.progress(done, total)
        check_cancelled()

    yield advance


def check_cancelled() -> None:
    """Stop here if the caller asked to cancel."""
    cancelled = current().cancelled
    if cancelled is not None and cancelled():
        raise RunCancelled("the run was cancelled")


def warn(warning: Warning, stacklevel: int = 2) -> None:
    """Report a warning to the run's hook, or to Python's warnings when no hook takes them."""
    hook = current().warning
    if hook is not None:
        hook(warning)
    else:
        warnings.warn(warning, stacklevel=stacklevel + 1)
