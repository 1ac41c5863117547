"""Write results atomically: to a temporary file beside the target, then rename into place.

After a failure or Ctrl-C no partial file is left and an existing output is untouched. The format
follows the file extension, so ``.gpkg``, ``.shp``, ``.geojson``, ``.fgb`` and ``.parquet`` all work.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
from pyogrio.raw import write_arrow

from .errors import OutputError, OutputExistsError

DRIVERS = {
    ".gpkg": "GPKG",
    ".shp": "ESRI Shapefile",
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".fgb": "FlatGeobuf",
    ".parquet": "Parquet",
    ".geoparquet": "Parquet",
    ".csv": "CSV",
}
#: Formats that can hold a table without geometry (images with no georeference).
TABLE_DRIVERS = ("GPKG", "Parquet", "CSV")
#: Files that make up one shapefile; an overwrite removes stale ones the new output did not write.
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".shp.xml")


def check_output(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Fail before any work is done when the output cannot be written where it was asked."""
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in DRIVERS:
        known = ", ".join(sorted(DRIVERS))
        raise OutputError(
            f"output {os.fspath(out)!r}: unknown format {suffix or '(no extension)'!r}; use one of {known}"
        )
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output {os.fspath(out)!r}: folder {os.fspath(parent)!r} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output {os.fspath(out)!r}: folder {os.fspath(parent)!r} is not writable")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"output {os.fspath(out)!r} exists; pass --overwrite to replace it")
    if out.is_dir():
        raise OutputError(f"output {os.fspath(out)!r} is a folder; give a file name such as result.gpkg")
    return out


def write_output(
    frame: pd.DataFrame, path: str | os.PathLike[str], layer: str | None = None, overwrite: bool = False
) -> Path:
    """Write ``frame`` (a GeoDataFrame, or a plain table) to ``path`` in the format its extension names, atomically."""
    return write_batches([frame], path, layer, overwrite)


#: Formats OGR appends batches to. FlatGeobuf, GeoJSON (through OGR's Arrow stream writer) and Parquet (through
#: pyarrow's ParquetWriter) are streamed instead, so no format gathers a big output in memory.
APPENDABLE = ("GPKG", "ESRI Shapefile", "CSV")


def write_batches(
    batches: Iterable[pd.DataFrame],
    path: str | os.PathLike[str],
    layer: str | None = None,
    overwrite: bool = False,
    geometry_type: str | None = None,
) -> Path:
    """Write batches of rows as one output, atomically: to a temporary file beside ``path``, renamed at the end."""
    out = check_output(path, overwrite)
    driver = DRIVERS[out.suffix.lower()]
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent or "."))
    try:
        temp = staging / out.name
        frames = iter(batches)
        first = next(frames)
        second = next(frames, None)
        ahead = [first] if second is None else [first, second]
        rows = (_check_rows(frame, out, driver) for frame in itertools.chain(ahead, frames))
        if driver in APPENDABLE:
            for i, frame in enumerate(rows):
                _write(frame, temp, driver, layer or out.stem, append=i > 0, geometry_type=geometry_type)
        elif second is None:  # one batch: the format's own writer, with its own type mapping
            _write(next(rows), temp, driver, layer or out.stem, geometry_type=geometry_type)
        else:
            _write_stream(rows, temp, driver, layer or out.stem, geometry_type)
        if driver == "ESRI Shapefile":
            _replace_shapefile(staging, out)
        else:
            os.replace(temp, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _check_rows(frame: pd.DataFrame, out: Path, driver: str) -> pd.DataFrame:
    if not isinstance(frame, gpd.GeoDataFrame) and driver not in TABLE_DRIVERS:
        raise OutputError(
            f"output {os.fspath(out)!r}: the rows have no geometry (the images carry no georeference), which "
            f"{driver} cannot hold; write a table instead: .csv, .parquet or .gpkg"
        )
    return frame


def _write_stream(
    frames: Iterator[pd.DataFrame], temp: Path, driver: str, layer: str, geometry_type: str | None
) -> None:
    """Write batches of a GeoDataFrame as one Arrow stream: one schema (the first batch's), every batch cast to it."""
    first = next(frames)
    if not isinstance(first, gpd.GeoDataFrame):
        raise OutputError(f"cannot write {driver} output in batches without geometry")
    geometry = first.geometry.name
    head = pa.table(first.to_arrow(geometry_encoding="WKB", index=False))
    schema = head.schema

    failure: list[BaseException] = []

    def batches() -> Iterator[pa.RecordBatch]:
        # The writer pulls batches from C, where a Python exception would lose its type: keep it to raise again.
        try:
            yield from head.to_batches()
            for frame in frames:
                table = pa.table(frame.to_arrow(geometry_encoding="WKB", index=False))
                try:
                    yield from table.cast(schema).to_batches()
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise OutputError(
                        f"cannot write {driver} output: a batch does not fit the first one's fields ({exc})"
                    ) from None
        except BaseException as exc:
            failure.append(exc)
            raise

    try:
        if driver == "Parquet":
            with pq.ParquetWriter(temp, _with_geo_metadata(schema, first)) as writer:
                for batch in batches():
                    writer.write_batch(batch)
            return
        write_arrow(
            pa.RecordBatchReader.from_batches(schema, batches()),
            temp,
            layer=layer,
            driver=driver,
            geometry_name=geometry,
            geometry_type=geometry_type or "Unknown",
            crs=first.crs.to_wkt() if first.crs is not None else None,
        )
    except Exception as exc:
        if failure:
            raise failure[0] from None
        if isinstance(exc, (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError, ValueError)):
            raise OutputError(f"cannot write {driver} output: {exc}") from None
        raise
    if failure:
        raise failure[0]


def _with_geo_metadata(schema: pa.Schema, frame: gpd.GeoDataFrame) -> pa.Schema:
    """GeoParquet's metadata; the geometry types are not known until the end, which the spec allows (``[]``)."""
    column: dict[str, object] = {"encoding": "WKB", "geometry_types": []}
    if frame.crs is not None:
        column["crs"] = frame.crs.to_json_dict()
    geo = {"version": "1.0.0", "primary_column": frame.geometry.name, "columns": {frame.geometry.name: column}}
    return schema.with_metadata({**(schema.metadata or {}), b"geo": json.dumps(geo)})


def _write(
    frame: pd.DataFrame, temp: Path, driver: str, layer: str, append: bool = False, geometry_type: str | None = None
) -> None:
    try:
        if driver == "Parquet":
            frame.to_parquet(temp, index=False)
            return
        if driver == "CSV":
            table = frame
            if isinstance(frame, gpd.GeoDataFrame):
                geometry = frame.geometry.name
                table = pd.DataFrame(frame.drop(columns=geometry))
                table["WKT"] = frame.geometry.to_wkt()
            table.to_csv(temp, index=False, mode="a" if append else "w", header=not append)
            return
        options: dict[str, object] = {"append": append} if append else {}
        if driver != "ESRI Shapefile":
            # Keep each feature's own geometry type: no silent Polygon -> MultiPolygon promotion.
            options["promote_to_multi"] = False
        if driver == "GPKG":
            options["layer"] = layer
        if geometry_type is not None and isinstance(frame, gpd.GeoDataFrame):
            options["geometry_type"] = geometry_type
        elif (
            isinstance(frame, gpd.GeoDataFrame)
            and len(set(frame.geom_type.dropna())) > 1
            and driver in ("GPKG", "FlatGeobuf")
        ):
            options["geometry_type"] = "Unknown"
        pyogrio.write_dataframe(frame, temp, driver=driver, **options)
    except (
        pyogrio.errors.DataSourceError,
        pyogrio.errors.DataLayerError,
        pyogrio.errors.FieldError,
        pyogrio.errors.GeometryError,
        OSError,
        ValueError,
    ) as exc:
        raise OutputError(f"cannot write {driver} output: {exc}") from None


def _replace_shapefile(staging: Path, out: Path) -> None:
    stem = out.name[: -len(out.suffix)]
    written = {p.name[len(stem) :].lower(): p for p in staging.iterdir() if p.name.startswith(stem)}
    for part in SHAPEFILE_PARTS:
        old = out.with_name(stem + part)
        if part not in written and old.exists():
            old.unlink()
    # The .shp goes last so a reader never sees a new .shp with old attribute files.
    for part, file in sorted(written.items(), key=lambda item: item[0] == ".shp"):
        os.replace(file, out.with_name(stem + part))
