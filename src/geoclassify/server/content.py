"""My Content over HTTP: ``/api/items`` (list, upload) and ``/api/items/{id}`` (get, rename, delete, data)."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from .errors import InputError
from .items import KINDS, Item, check_name
from .results import FORMATS, convert
from .services import current_user, services
from .uploads import receive, validate
from .users import User

router = APIRouter(prefix="/api/items", tags=["My Content"])
UserDep = Annotated[User, Depends(current_user)]


class Rename(BaseModel):
    name: str


def describe(request: Request, item: Item) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/")
    return {
        **item.describe(),
        "links": {"self": f"{base}/api/items/{item.id}", "data": f"{base}/api/items/{item.id}/data"},
    }


@router.get("")
def list_items(request: Request, user: UserDep, kind: str | None = None) -> dict[str, Any]:
    return {"items": [describe(request, i) for i in services(request).items.list(user, kind)]}


@router.post("", status_code=201)
async def upload(request: Request, user: UserDep) -> dict[str, Any]:
    """multipart/form-data: ``file``, ``kind`` (model, raster or features) and optionally ``name``."""
    store = services(request)
    folder = store.items.incoming()
    try:
        fields, path = await receive(request, folder, store.config.max_upload)
        kind = fields.get("kind", "")
        if kind not in KINDS or kind == "result":
            raise InputError("kind: upload a model, raster or features (results are made by jobs)")
        if path is None:
            raise InputError("the upload has no file part")
        name = check_name(fields.get("name") or Path(path).stem)
        main, info = await run_in_threadpool(validate, kind, path, store.config)
        item = await run_in_threadpool(store.items.add, user.name, name, kind, folder, main, info)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return describe(request, item)


@router.get("/{item_id}")
def get_item(request: Request, item_id: str, user: UserDep) -> dict[str, Any]:
    return describe(request, services(request).items.get(item_id, user))


@router.patch("/{item_id}")
def rename_item(request: Request, item_id: str, body: Rename, user: UserDep) -> dict[str, Any]:
    return describe(request, services(request).items.rename(item_id, user, body.name))


@router.delete("/{item_id}", status_code=204)
def delete_item(request: Request, item_id: str, user: UserDep) -> Response:
    services(request).items.delete(item_id, user)
    return Response(status_code=204)


@router.get("/{item_id}/data")
def item_data(
    request: Request, item_id: str, user: UserDep, format: Annotated[str | None, Query()] = None
) -> FileResponse:
    """The item's file; a result also in another format (gpkg, geojson, fgb, parquet, csv)."""
    store = services(request)
    item = store.items.get(item_id, user)
    if item.kind != "result":
        if format not in (None, Path(item.path).suffix.lstrip(".").lower()):
            raise InputError(f"format: a {item.kind} item is returned as it was uploaded")
        return FileResponse(item.path, filename=Path(item.path).name)
    fmt = format or "gpkg"
    scratch = store.config.state / "tmp"
    scratch.mkdir(exist_ok=True)
    path = convert(item.path, item.info.get("layer"), fmt, scratch)
    cleanup = None if path == Path(item.path) else BackgroundTask(_remove, path)
    filename = f"{Path(item.path).stem}{FORMATS[fmt][1]}"
    return FileResponse(path, media_type=FORMATS[fmt][0], filename=filename, background=cleanup)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
