"""The web application: the three APIs over one set of stores, one error shape per API, and the workers' life.

Every error a user can cause is answered in the shape of the API it came through (Esri's ``{"error": ...}``, an
OGC exception, a problem document for My Content) with its one-line message; anything else is logged here and
answered "internal error" without a traceback.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from geoclassify import GeoclassifyError, __version__

from ..viewer import router as viewer_router
from . import content, esri, evaluations, ogc
from .config import ServerConfig
from .errors import ServerError
from .services import Services
from .supervisor import Supervisor

log = logging.getLogger("geoclassify.server")


def error_response(request: Request, status: int, message: str, ogc_type: str | None = None) -> JSONResponse:
    path = request.url.path
    if path.startswith("/arcgis"):
        return JSONResponse({"error": {"code": status, "message": message, "details": []}}, status)
    title = HTTPStatus(status).phrase
    body = {"type": ogc_type or "about:blank", "title": title, "status": status, "detail": message}
    media = "application/json" if path.startswith(ogc.PREFIX) else "application/problem+json"
    return JSONResponse(body, status, media_type=media)


def create_app(config: ServerConfig, start_workers: bool = True) -> FastAPI:
    """The server for ``config``; ``start_workers`` False serves the APIs only (jobs wait for workers)."""
    store = Services.open(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        supervisor = None
        if start_workers and config.workers > 0:
            config.save()
            supervisor = Supervisor(config, store.jobs)
            supervisor.start()
        try:
            yield
        finally:
            if supervisor is not None:
                supervisor.stop()

    app = FastAPI(
        title="geoclassify server",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.services = store
    app.include_router(esri.router)
    app.include_router(ogc.router)
    app.include_router(content.router)
    app.include_router(evaluations.router)  # a result's accuracy, kappa and confusion matrix
    app.include_router(viewer_router)  # the map viewer: the page at / (for browsers) and /viewer/...

    @app.get("/", include_in_schema=False)
    def root(request: Request) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/")
        return {
            "name": "geoclassify server",
            "version": __version__,
            "links": {
                "esri": base + esri.PREFIX,
                "ogcapi": base + ogc.PREFIX,
                "content": base + "/api/items",
            },
        }

    @app.exception_handler(GeoclassifyError)
    async def known(request: Request, exc: GeoclassifyError) -> JSONResponse:
        status = exc.status if isinstance(exc, ServerError) else 400
        return error_response(request, status, str(exc), getattr(exc, "ogc_type", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()[:5])
        return error_response(request, 400, f"invalid request: {problems}")

    @app.exception_handler(HTTPException)
    async def http(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(request, exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(request, 500, f"internal error ({type(exc).__name__}); the server's log has the details")

    return app
