"""Write results atomically, never losing anything the user had: to a temporary file beside the target, renamed
into place; into an existing GeoPackage as a temporary layer, renamed in one transaction (:mod:`.geopackage`);
a shapefile as a whole set of files (:mod:`.shapefile`).

After a failure, Ctrl-C or a SIGKILL, an existing output is untouched and the next run writing it removes what the
interrupted one left. An output that is the run's own feature layer is refused. The format follows the file
extension, so ``.gpkg``, ``.shp``, ``.geojson``, ``.fgb``, ``.parquet`` and ``.csv`` all work.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import shapely
from pyogrio.raw import write_arrow

from ..errors import OutputError
from . import geopackage, shapefile
from .datalosses import SHAPEFILE_COVERED, ShapefileCheck, relayed
from .destination import DRIVERS, MULTI_LAYER, check_output, is_geopackage

__all__ = ["DRIVERS", "check_output", "write_batches"]
#: Formats that can hold a table without geometry (images with no georeference).
TABLE_DRIVERS = ("GPKG", "Parquet", "CSV")


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
    """Write batches of rows as one output, atomically: to a temporary file beside ``path``, renamed at the end, or
    as a temporary layer of an existing GeoPackage, renamed to ``layer`` at the end."""
    out = check_output(path, overwrite, layer)
    driver = DRIVERS[out.suffix.lower()]
    frames = iter(batches)
    try:
        if driver in MULTI_LAYER and is_geopackage(out):
            _write_layer(frames, out, driver, layer or out.stem, overwrite, geometry_type)
        else:
            _write_file(frames, out, driver, layer or out.stem, geometry_type)
    finally:
        close = getattr(frames, "close", None)
        if close is not None:  # a layer read again for its rows lets go of the file (it may be this GeoPackage)
            close()
    return out


def _write_layer(
    frames: Iterator[pd.DataFrame], out: Path, driver: str, layer: str, overwrite: bool, geometry_type: str | None
) -> None:
    """Into an existing GeoPackage: a temporary layer beside the others, then given its name in one transaction."""
    temporary = geopackage.temporary_name()
    label = f"output {os.fspath(out)!r}"
    try:
        written = 0
        for frame in frames:
            _check_rows(frame, out, driver)
            _write(frame, out, driver, temporary, written > 0, geometry_type, label)
            written += 1
        if not written:
            raise OutputError(f"{label}: there are no rows to write")
        geopackage.replace_layer(out, temporary, layer, overwrite)
    except BaseException:
        with contextlib.suppress(OutputError):  # else left for the next run to remove
            geopackage.drop_layer(out, temporary)
        raise


def _write_file(frames: Iterator[pd.DataFrame], out: Path, driver: str, layer: str, geometry_type: str | None) -> None:
    """A whole new file in a staging folder beside ``out`` (its name carries this process's id, so a later run can
    tell a dead run's leftover), then moved into place."""
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".partial", dir=out.parent))
    label = f"output {os.fspath(out)!r}"
    check = None
    try:
        temp = staging / out.name
        first = next(frames)
        second = next(frames, None)
        ahead = [first] if second is None else [first, second]
        rows = (_check_rows(frame, out, driver) for frame in itertools.chain(ahead, frames))
        if driver == "ESRI Shapefile":
            check = ShapefileCheck(out, temp)
        if driver in APPENDABLE:
            for i, frame in enumerate(rows):
                _write(frame, temp, driver, layer, i > 0, geometry_type, label)
                if check is not None:
                    check.check(frame)
        elif second is None:  # one batch: the format's own writer, with its own type mapping
            _write(next(rows), temp, driver, layer, geometry_type=geometry_type, label=label)
        else:
            with relayed(label):
                _write_stream(rows, temp, driver, layer, geometry_type)
        if driver == "ESRI Shapefile":
            shapefile.publish(staging, out)
        else:
            os.replace(temp, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if check is not None:
        check.warn()


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


def _mixed(frame: gpd.GeoDataFrame) -> bool:
    """Whether the features have more than one geometry type (asked of shapely: pandas' ``geom_type`` makes a
    string per feature)."""
    kinds = shapely.get_type_id(np.asarray(frame.geometry.values))
    return len(np.unique(kinds[kinds >= 0])) > 1


def _write(
    frame: pd.DataFrame,
    temp: Path,
    driver: str,
    layer: str,
    append: bool = False,
    geometry_type: str | None = None,
    label: str = "output",
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
        elif isinstance(frame, gpd.GeoDataFrame) and driver in ("GPKG", "FlatGeobuf") and _mixed(frame):
            options["geometry_type"] = "Unknown"
        with relayed(label, SHAPEFILE_COVERED if driver == "ESRI Shapefile" else ()):
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
