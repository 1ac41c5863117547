"""geoclassify: classify objects in imagery with deep learning, the open "Classify Objects Using Deep Learning".

The public API is :func:`classify_objects` and :func:`inspect_model`, and :func:`evaluate` for how good the
answer is; :func:`load_model` loads a model once for many runs. A run as data is a :class:`RunRequest`, which
:func:`run` carries out with the hooks of a :class:`RunContext` (what the CLI and a job service use). Errors
derive from :class:`GeoclassifyError`.
"""

from __future__ import annotations

import logging

from ._version import __version__
from .api import classify_objects, inspect_model
from .errors import GeoclassifyError
from .evaluation import Evaluation, evaluate
from .hooks import RunHooks
from .model.runtime import Model, load_model
from .request import RunRequest
from .runs import RunContext, run
from .summary import Summary

# A library logs, an application decides where it goes (the CLI's --verbose, a service's own handlers).
logging.getLogger(__name__).addHandler(logging.NullHandler())

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
