"""geoclassify as a raster-analysis server: Esri's GP job REST API and OGC API - Processes over one job store.

The service is a shell over the run core, as the CLI is: a submitted job is a :class:`geoclassify.RunRequest`
stored as JSON in SQLite (:mod:`.jobs`), carried out by worker processes (:mod:`.worker`) that call
:func:`geoclassify.run` with hooks for progress and cancellation, and published into the user's content
(:mod:`.items`). The web layer (:mod:`.app`, :mod:`.esri`, :mod:`.ogc`, :mod:`.content`) only translates.
It needs the ``serve`` extra (FastAPI, uvicorn); nothing else in geoclassify imports this package.
"""
