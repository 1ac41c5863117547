"""Running a package's Python code in a process that also runs other things, in other threads.

Package code prints (progress, "loading weights"), but stdout belongs to geoclassify (``--json``). Redirecting
``sys.stdout`` for the duration of a call would send every other thread's output to stderr meanwhile, and would
need one lock around every package's every call. Instead, once, ``sys.stdout`` becomes a router that sends a
write to stderr when the thread (or context) writing is inside package code, and everywhere else to the stream it
replaced. What package code may import, and how its helpers stay its own, is ``package_imports``; neither edits
``sys.path``. Calls into one backend are serialised by the backend (Esri's functions are not written to be
thread-safe); different packages, or two loads of one, run side by side.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from .package_imports import (
    OutsidePackageImport,
    PackageScope,
    current,
    entered,
    install_finder,
    public_name,
    release,
    sweep_released,
)

__all__ = ["OutsidePackageImport", "PackageScope", "package_code", "public_name", "release"]

_install_lock = threading.Lock()


@contextlib.contextmanager
def package_code(scope: PackageScope) -> Iterator[None]:
    """Run ``scope``'s code in the current context: its imports as ``package_imports`` says, its prints to stderr.
    It takes no lock: the caller serialises what must not run twice at once."""
    sweep_released()
    install_finder()
    route_stdout()
    with entered(scope):
        yield


class StdoutRouter:
    """``sys.stdout`` for the whole process: package code's writes (and everything it asks of the stream:
    ``isatty``, ``fileno``, ``encoding``, ``buffer``) go to the current ``sys.stderr``; everyone else's to the
    stream this replaced. Decided per write from the writing context, so threads never disturb each other."""

    __slots__ = ("_stream",)

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def _target(self) -> TextIO:
        if current.get() is not None and sys.stderr is not None:
            return sys.stderr
        return self._stream

    def write(self, text: str) -> int:
        return self._target().write(text)

    def writelines(self, lines: Iterable[str]) -> None:
        self._target().writelines(lines)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:
        if name == "_stream":  # not set yet (copy, unpickling): no recursion through _target
            raise AttributeError(name)
        return getattr(self._target(), name)

    def __repr__(self) -> str:
        return f"<geoclassify stdout router over {self._stream!r}>"


def route_stdout() -> None:
    """Put the router in place unless it is there; again over whatever replaced it since (pytest's capture, a
    caller's ``redirect_stdout``), which it then serves as it served the stream before. None stays None: there is
    nowhere to print to."""
    if isinstance(sys.stdout, StdoutRouter) or sys.stdout is None:
        return
    with _install_lock:
        if not isinstance(sys.stdout, StdoutRouter) and sys.stdout is not None:
            sys.stdout = StdoutRouter(sys.stdout)
