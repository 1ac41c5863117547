"""geoclassify: classify objects in imagery with deep learning, the open "Classify Objects Using Deep Learning".

The public API is :func:`classify_objects` and :func:`inspect_model`; :func:`load_model` loads a model once
for many runs. Errors derive from :class:`GeoclassifyError`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import classify_objects, inspect_model
from .errors import GeoclassifyError
from .model import Model, load_model
from .progress import Summary

__all__ = ["GeoclassifyError", "Model", "Summary", "__version__", "classify_objects", "inspect_model", "load_model"]
