"""The viewer's HTTP face: the page at ``/`` (for browsers; API clients asking ``/`` for JSON still get the
server's landing document), its static files, and ``/viewer/api/...``: the signed-in user, the layers list, one
layer's details, raster and vector tiles, a feature's attributes. Every API route takes the server's tokens and
reads only what :mod:`.sources` resolves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match
from starlette.types import Scope

from geoclassify import __version__
from geoclassify.server.errors import InputError, NotFound
from geoclassify.server.results import FORMATS
from geoclassify.server.services import Services, current_user, services
from geoclassify.server.users import User

from .classified import result_details
from .rasters import raster_info, raster_tile
from .sources import Source, listing, resolve
from .vectors import FID, VectorCache, feature

STATIC = Path(__file__).parent / "static"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
#: The files the page may load: what is in static/ when the server starts, nothing built from a request.
ASSETS = {p.relative_to(STATIC).as_posix(): p for p in STATIC.rglob("*") if p.is_file() and p.suffix in MEDIA_TYPES}
MVT = "application/vnd.mapbox-vector-tile"


class PageRoute(APIRoute):
    """Matches only requests that accept HTML, so ``GET /`` from an API client falls through to the JSON one."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            accept = dict(scope.get("headers") or []).get(b"accept", b"").decode("latin-1")
            if "text/html" not in accept:
                return Match.NONE, {}
        return match, child


router = APIRouter(include_in_schema=False)
page = APIRouter(route_class=PageRoute, include_in_schema=False)
UserDep = Annotated[User, Depends(current_user)]


@page.get("/")
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type=MEDIA_TYPES[".html"], headers={"Cache-Control": "no-cache"})


router.include_router(page)


@router.get("/viewer/static/{name:path}")
def asset(name: str) -> FileResponse:
    path = ASSETS.get(name)
    if path is None:
        raise NotFound(f"the viewer has no file {name!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers={"Cache-Control": "no-cache"})


def _cache(store: Services) -> VectorCache:
    return VectorCache(store.config.state / "viewer" / "tiles")


def _raster_cache(store: Services) -> Path:
    return store.config.state / "viewer" / "rasters"


@router.get("/viewer/api/me")
def me(request: Request, user: UserDep) -> dict[str, Any]:
    """Who the token belongs to, and what the server offers the page."""
    store = services(request)
    return {
        "user": user.name,
        "admin": user.admin,
        "version": __version__,
        "formats": list(FORMATS),
        "dataRoots": len(store.config.data_roots),
        "maxUpload": store.config.max_upload,
    }


@router.get("/viewer/api/layers")
async def layers(request: Request, user: UserDep) -> dict[str, Any]:
    return {"layers": await run_in_threadpool(listing, services(request), user)}


def _details(store: Services, source: Source) -> dict[str, Any]:
    data = source.describe()
    if source.kind == "raster":
        info = raster_info(source.path, source.name, _raster_cache(store))
        data["raster"] = {k: v for k, v in info.items() if k != "display"}
    elif source.kind in ("features", "result"):
        keep: list[str] = []
        if source.kind == "result" and source.item is not None:
            details = result_details(store, source.item)
            keep = [details[k] for k in ("labelField", "valueField", "confidenceField", "coverageField")]
            data["result"] = details
        vector = _cache(store).info(source.path, source.layer, source.name, keep)
        data["vector"] = {k: vector[k] for k in ("bounds", "count", "drawn", "geometryTypes", "fields", "levels")}
        if "result" in data:
            label = data["result"]["labelField"]
            counts = _cache(store).counts(source.path, source.layer, label) if label in vector["fields"] else {}
            data["result"]["counts"] = counts
    return data


@router.get("/viewer/api/layer")
async def layer_details(
    request: Request, user: UserDep, src: str, layer: Annotated[str | None, Query()] = None
) -> dict[str, Any]:
    """A layer's details; for a feature layer or a result this makes its tiles (once), and a result's carry its
    class counts, classes and colours."""
    store = services(request)
    source = await run_in_threadpool(resolve, store, user, src, layer)
    return await run_in_threadpool(_details, store, source)


@router.get("/viewer/api/results")
async def results(request: Request, user: UserDep) -> dict[str, Any]:
    """My Content's results with the model that made them and their class counts."""
    store = services(request)

    def build() -> list[dict[str, Any]]:
        rows = []
        for item in store.items.list(user, "result"):
            details = result_details(store, item)
            label = details["labelField"]
            try:
                counts = _cache(store).counts(item.path, item.info.get("layer"), label)
            except InputError:
                counts = {}
            rows.append({**resolve(store, user, f"item:{item.id}").describe(), "result": {**details, "counts": counts}})
        return rows

    return {"results": await run_in_threadpool(build)}


def _tile_response(data: bytes | None, media_type: str, gzip: bool = False) -> Response:
    if data is None:
        return Response(status_code=204, headers={"Cache-Control": "private, max-age=60"})
    headers = {"Cache-Control": "private, max-age=300"}
    if gzip and data[:2] == b"\x1f\x8b":
        headers["Content-Encoding"] = "gzip"
    return Response(data, media_type=media_type, headers=headers)


@router.get("/viewer/api/tiles/raster/{z}/{x}/{y}.png")
async def raster_tiles(request: Request, user: UserDep, z: int, x: int, y: int, src: str) -> Response:
    store = services(request)
    source = await run_in_threadpool(resolve, store, user, src)
    if source.kind != "raster":
        raise InputError(f"src {src!r} is a {source.kind}, not a raster")
    if not (0 <= z <= 30 and 0 <= x < 2**z and 0 <= y < 2**z):
        return _tile_response(None, "image/png")
    tile = await run_in_threadpool(raster_tile, source.path, source.name, _raster_cache(store), z, x, y)
    return _tile_response(tile, "image/png")


@router.get("/viewer/api/tiles/vector/{level}/{z}/{x}/{y}.pbf")
async def vector_tiles(
    request: Request,
    user: UserDep,
    level: int,
    z: int,
    x: int,
    y: int,
    src: str,
    layer: Annotated[str | None, Query()] = None,
) -> Response:
    store = services(request)
    source = await run_in_threadpool(resolve, store, user, src, layer)
    if source.kind not in ("features", "result"):
        raise InputError(f"src {src!r} is a {source.kind}, not a feature layer")
    data = await run_in_threadpool(_cache(store).tile, source.path, source.layer, level, z, x, y)
    return _tile_response(data, MVT, gzip=True)


@router.get("/viewer/api/feature")
async def feature_attributes(
    request: Request,
    user: UserDep,
    src: str,
    fid: Annotated[int, Query(alias=FID)],
    layer: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    """One feature's attributes, for the popup."""
    store = services(request)
    source = await run_in_threadpool(resolve, store, user, src, layer)
    if source.kind not in ("features", "result"):
        raise InputError(f"src {src!r} is a {source.kind}, not a feature layer")
    return {"fid": fid, "attributes": await run_in_threadpool(feature, source.path, source.layer, fid)}
