"""Uploads into My Content: the multipart body is streamed straight to the item's folder (never held in memory),
stopped as soon as it passes the server's size cap, then checked the way a job would open it: a model loaded and
inspected, a raster opened by GDAL, a layer by OGR (a zipped shapefile unpacked first). What fails is refused with
the reason and leaves nothing behind."""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from geoclassify import GeoclassifyError, inspect_model, load_model

from .config import ServerConfig
from .errors import InputError, TooLarge

FIELD_LIMIT = 64 * 1024
MODEL_SUFFIXES = (".dlpk", ".onnx")
FEATURE_SUFFIXES = (".gpkg", ".geojson", ".json", ".fgb", ".parquet", ".zip", ".csv")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_filename(name: str) -> str:
    base = os.path.basename(name.replace("\\", "/"))
    return _SAFE.sub("_", base).lstrip(".") or "upload"


async def receive(request: Request, folder: Path, cap: int) -> tuple[dict[str, str], Path | None]:
    """Parse a multipart/form-data body: its text fields, and the one file part written into ``folder``."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise InputError("an upload is a multipart/form-data body with a 'file' part (and 'kind', 'name' fields)")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > cap + FIELD_LIMIT:
        raise TooLarge(f"the upload is {int(length):,} bytes; this server takes at most {cap:,}")
    fields: dict[str, str] = {}
    state: dict[str, Any] = {"headers": {}, "field": b"", "value": b"", "name": None, "file": None, "size": 0}
    saved: list[Path] = []

    def on_part_begin() -> None:
        state.update(headers={}, field=b"", value=b"", name=None, file=None, data=bytearray())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].decode("latin-1").lower()] = state["value"]
        state.update(field=b"", value=b"")

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(state["headers"].get("content-disposition", b""))
        state["name"] = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename")
        if filename is not None:
            if saved:
                raise InputError("an upload carries one file")
            path = folder / safe_filename(filename.decode("utf-8", "replace"))
            state["file"] = open(path, "wb")  # noqa: SIM115 (closed in on_part_end or below)
            saved.append(path)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["file"] is not None:
            state["size"] += end - start
            if state["size"] > cap:
                raise TooLarge(f"the upload passed this server's cap of {cap:,} bytes")
            state["file"].write(data[start:end])
        else:
            state["data"] += data[start:end]
            if len(state["data"]) > FIELD_LIMIT:
                raise InputError(f"form field {state['name']!r} is longer than {FIELD_LIMIT} bytes")

    def on_part_end() -> None:
        if state["file"] is not None:
            state["file"].close()
            state["file"] = None
        else:
            fields[state["name"]] = bytes(state["data"]).decode("utf-8", "replace")

    parser = MultipartParser(
        options[b"boundary"],
        callbacks={  # type: ignore[arg-type]
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    finally:
        if state["file"] is not None:
            state["file"].close()
    return fields, (saved[0] if saved else None)


def validate(kind: str, path: Path, config: ServerConfig) -> tuple[Path, dict[str, Any]]:
    """Check an arrived file as a job would open it; returns the item's main file and what is known of it."""
    try:
        if kind == "model":
            return path, _model(path, config)
        if kind == "raster":
            return path, _raster(path)
        if kind == "features":
            return _features(path, config.max_upload)
    except GeoclassifyError as exc:
        raise InputError(f"{path.name} is not a usable {kind}: {exc}") from None
    raise InputError(f"kind {kind!r}: upload a model, raster or features")


def _model(path: Path, config: ServerConfig) -> dict[str, Any]:
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise InputError(f"{path.name}: a model is uploaded as a .dlpk (or a self-describing .onnx)")
    info = inspect_model(load_model(path, trust_code=config.trust_code))
    return {
        "modelName": info["model_name"],
        "framework": info["framework"],
        "modelType": info["model_type"],
        "classes": [c["name"] for c in info["classes"]],
        "arguments": {a["name"]: a["value"] for a in info["arguments"]},
        "inferenceFunction": bool(info["inference_function"]),
    }


def _raster(path: Path) -> dict[str, Any]:
    import rasterio

    try:
        with rasterio.open(path) as dataset:
            if dataset.driver == "VRT" or (
                len(dataset.files) > 1 and any(Path(f).resolve().parent != path.parent.resolve() for f in dataset.files)
            ):
                raise InputError(f"{path.name}: a raster that reads other files (a VRT) cannot be uploaded")
            return {
                "driver": dataset.driver,
                "width": dataset.width,
                "height": dataset.height,
                "bands": dataset.count,
                "dtype": dataset.dtypes[0],
                "crs": dataset.crs.to_string() if dataset.crs else None,
            }
    except rasterio.errors.RasterioError as exc:
        raise InputError(f"{path.name} is not a raster GDAL can open: {exc}") from None


def _features(path: Path, cap: int) -> tuple[Path, dict[str, Any]]:
    if path.suffix.lower() not in FEATURE_SUFFIXES:
        raise InputError(
            f"{path.name}: upload features as {', '.join(FEATURE_SUFFIXES)} (a shapefile zipped with its side files)"
        )
    main = _unzip_shapefile(path, cap) if path.suffix.lower() == ".zip" else path
    if main.suffix.lower() == ".parquet":
        return main, _geoparquet(main)
    import pyogrio

    try:
        layers = pyogrio.list_layers(main)
        layer = str(layers[0][0])
        info = pyogrio.read_info(main, layer=layer)
    except Exception as exc:  # pyogrio raises DataSourceError and friends, all about the file
        raise InputError(f"{path.name} is not a layer OGR can open: {exc}") from None
    if info.get("geometry_type") in (None, "Unknown") and not info.get("features"):
        raise InputError(f"{path.name}: the layer {layer!r} has no geometry")
    return main, {
        "layer": layer,
        "layers": [str(row[0]) for row in layers],
        "features": int(info["features"]),
        "geometryType": info.get("geometry_type"),
        "crs": info.get("crs"),
    }


def _geoparquet(path: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(path)
    except Exception as exc:  # pyarrow's ArrowInvalid and OSError: the file is not Parquet
        raise InputError(f"{path.name} is not a Parquet file: {exc}") from None
    if b"geo" not in (metadata.metadata or {}):
        raise InputError(f"{path.name} is Parquet without GeoParquet's 'geo' metadata")
    return {"layer": None, "features": metadata.num_rows, "format": "GeoParquet"}


def _unzip_shapefile(path: Path, cap: int) -> Path:
    """Unpack the one shapefile of a zip beside it (flat names only: no member may climb out of the folder)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            shapes = [m for m in members if m.filename.lower().endswith(".shp")]
            if len(shapes) != 1:
                raise InputError(f"{path.name}: a zipped shapefile holds exactly one .shp (found {len(shapes)})")
            stem = Path(shapes[0].filename).stem
            if sum(m.file_size for m in members) > cap:
                raise TooLarge(f"{path.name} unpacks to more than this server's cap of {cap:,} bytes")
            for member in members:
                name = Path(member.filename).name
                if Path(name).stem == stem and not name.startswith("."):
                    with archive.open(member) as source, open(path.parent / safe_filename(name), "wb") as target:
                        while chunk := source.read(1 << 20):
                            target.write(chunk)
    except zipfile.BadZipFile:
        raise InputError(f"{path.name} is not a zip file") from None
    path.unlink()
    return path.parent / safe_filename(Path(shapes[0].filename).name)
