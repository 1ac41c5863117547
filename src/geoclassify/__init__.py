"""geoclassify: classify objects in imagery with deep learning, the open "Classify Objects Using Deep Learning".

The public API is :func:`classify_objects` and :func:`inspect_model`, and :func:`evaluate` for how good the
answer is; :func:`load_model` loads a model once for many runs. A run as data is a :class:`RunRequest`, which
:func:`run` carries out with the hooks of a :class:`RunContext` (what the CLI and a job service use). Errors
derive from :class:`GeoclassifyError`.

The names are loaded on first use (PEP 562): ``python -m geoclassify --help`` imports this package, and should
not pay for geopandas, pandas and the model runtimes it never touches.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import GeoclassifyError

if TYPE_CHECKING:
    from .api import classify_objects, inspect_model
    from .evaluation import Evaluation, evaluate
    from .hooks import RunHooks
    from .model.runtime import Model, load_model
    from .request import RunRequest
    from .runs import RunContext, run
    from .summary import Summary

# A library logs, an application decides where it goes (the CLI's --verbose, a service's own handlers).
logging.getLogger(__name__).addHandler(logging.NullHandler())

#: Each public name by the module that defines it.
_LAZY = {
    "classify_objects": ".api",
    "inspect_model": ".api",
    "Evaluation": ".evaluation",
    "evaluate": ".evaluation",
    "RunHooks": ".hooks",
    "Model": ".model.runtime",
    "load_model": ".model.runtime",
    "RunRequest": ".request",
    "RunContext": ".runs",
    "run": ".runs",
    "Summary": ".summary",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value  # once found, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "Evaluation",
    "GeoclassifyError",
    "Model",
    "RunContext",
    "RunHooks",
    "RunRequest",
    "Summary",
    "__version__",
    "classify_objects",
    "evaluate",
    "inspect_model",
    "load_model",
    "run",
]
