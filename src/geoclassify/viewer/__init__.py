"""The map viewer of ``geoclassify serve``: a page at ``/`` where a user signs in with their token, sees their
imagery, layers and results on a MapLibre map, and runs Classify Objects Using Deep Learning through the server's
own Esri GP REST API, as any client would.

The page is static (ES modules and a vendored MapLibre GL JS, nothing fetched from the internet); what it needs
beyond the server's APIs (tiles, a layer's bounds and class counts, a feature's attributes) is under
``/viewer/api`` in :mod:`.routes`. It builds on :mod:`geoclassify.server` and needs the same ``serve`` extra.
"""

from .routes import router

__all__ = ["router"]
