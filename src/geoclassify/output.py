"""Write results atomically: to a temporary file beside the target, then rename into place.

After a failure or Ctrl-C no partial file is left and an existing output is untouched. The format
follows the file extension, so ``.gpkg``, ``.shp``, ``.geojson``, ``.fgb`` and ``.parquet`` all work.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio

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


#: Formats written batch by batch; the others (FlatGeobuf, GeoJSON, Parquet) cannot be appended to, so their
#: batches are gathered and written once.
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
        gathered: list[pd.DataFrame] = []
        written = 0
        for frame in batches:
            if not isinstance(frame, gpd.GeoDataFrame) and driver not in TABLE_DRIVERS:
                raise OutputError(
                    f"output {os.fspath(out)!r}: the rows have no geometry (the images carry no georeference), which "
                    f"{driver} cannot hold; write a table instead: .csv, .parquet or .gpkg"
                )
            if driver in APPENDABLE:
                _write(frame, temp, driver, layer or out.stem, append=written > 0, geometry_type=geometry_type)
                written += 1
            else:
                gathered.append(frame)
        if gathered:
            whole = pd.concat(gathered) if len(gathered) > 1 else gathered[0]
            if isinstance(gathered[0], gpd.GeoDataFrame):
                whole = gpd.GeoDataFrame(whole, geometry=gathered[0].geometry.name, crs=gathered[0].crs)
            _write(whole, temp, driver, layer or out.stem, geometry_type=geometry_type)
        if driver == "ESRI Shapefile":
            _replace_shapefile(staging, out)
        else:
            os.replace(temp, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


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
