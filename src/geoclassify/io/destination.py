"""Where an output may be written: its format, its folder, what it would replace, and what runs killed while
writing it left behind.

Nothing the user has is replaced without ``--overwrite``: an existing GeoPackage gains a layer (only a layer of the
same name needs ``--overwrite``), and a shapefile claims every file of its set (a ``.dbf`` of that name may be
another program's table). The run's own feature layer is never an output, whatever the flags.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import geopandas as gpd

from ..errors import GeoclassifyWarning, OutputError, OutputExistsError
from ..hooks import warn
from . import geopackage, shapefile
from .images import is_remote
from .layers import list_layers

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
#: Of the formats written, the one that holds several layers: a new layer joins the file's others.
MULTI_LAYER = ("GPKG",)
PathLike = str | os.PathLike[str]


def check_output(
    path: PathLike,
    overwrite: bool,
    layer: str | None = None,
    source: PathLike | gpd.GeoDataFrame | None = None,
    source_layer: str | None = None,
) -> Path:
    """Fail before any work is done when the output cannot be written where it was asked, or would replace
    something without ``overwrite``, or is the feature layer ``source`` (``source_layer``) itself; and tidy what
    runs killed while writing this output left (their staging folders and temporary layers)."""
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
    if out.is_dir():
        raise OutputError(f"output {os.fspath(out)!r} is a folder; give a file name such as result.gpkg")
    driver = DRIVERS[suffix]
    _remove_leftovers(out, driver)
    if source is not None and not isinstance(source, gpd.GeoDataFrame):
        _check_not_input(out, driver, layer or out.stem, os.fspath(source), source_layer)
    if driver == "GPKG":
        _check_geopackage(out, layer or out.stem, overwrite)
    elif driver == "ESRI Shapefile":
        _check_shapefile(out, overwrite)
    elif out.exists() and not overwrite:
        raise OutputExistsError(f"output {os.fspath(out)!r} exists; pass «overwrite» to replace it")
    return out


def _check_geopackage(out: Path, layer: str, overwrite: bool) -> None:
    """A new layer joins an existing GeoPackage; a layer of that name is replaced only with ``overwrite``."""
    if not out.exists():
        return
    if not is_geopackage(out):
        if not overwrite:
            raise OutputExistsError(
                f"output {os.fspath(out)!r} exists; pass «overwrite» to replace it (it is no GeoPackage that a "
                "layer could be added to)"
            )
        return
    found = geopackage.find_layer(out, layer)
    if found is not None and not overwrite:
        raise OutputExistsError(
            f"output {os.fspath(out)!r} exists with a layer {found!r}; pass «overwrite» to replace that layer (the "
            "file's other layers are kept), or give another «output_layer»"
        )


def is_geopackage(out: Path) -> bool:
    """Whether ``out`` is a GeoPackage with content to keep (an empty file is not)."""
    if not out.is_file() or out.stat().st_size == 0:
        return False
    try:
        geopackage.layers(out)
    except OutputError:
        return False
    return True


def _check_shapefile(out: Path, overwrite: bool) -> None:
    """Every file of the set the output would write is someone's: ``out.dbf`` alone may be another program's table."""
    taken = shapefile.existing_parts(out)
    if taken and not overwrite:
        names = ", ".join(repr(p.name) for p in taken)
        raise OutputExistsError(
            f"output {os.fspath(out)!r} exists or would replace files of that name ({names}); pass «overwrite» "
            "to replace them all"
        )


def _check_not_input(out: Path, driver: str, layer: str, source: str, source_layer: str | None) -> None:
    """Writing the layer being read would destroy it, whatever the flags: refused, with paths resolved (links, a
    folder of shapefiles) and layer names compared as the format does (a GeoPackage ignores case)."""
    if is_remote(source) or not out.exists():
        return
    read = Path(source)
    if read.is_dir():  # OGR reads a folder of shapefiles as one dataset, a layer per .shp
        names = list_layers(read) if source_layer is None else [source_layer]
        read, source_layer = read / f"{names[0] if names else ''}.shp", None
    if not read.exists() or not os.path.samefile(read, out):
        return
    if driver in MULTI_LAYER:
        names = [source_layer] if source_layer is not None else list_layers(read)[:1]
        if not names or names[0].lower() != layer.lower():
            return
        raise OutputError(
            f"output {os.fspath(out)!r} layer {layer!r} is the feature layer this run reads ({source!r} layer "
            f"{names[0]!r}); give another «output_layer» or «output»: a run never overwrites its own input"
        )
    raise OutputError(
        f"output {os.fspath(out)!r} is the feature layer this run reads ({source!r}); give another «output»: a run "
        "never overwrites its own input"
    )


def _staging_pattern(out: Path) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(out.name)}\.(\d+)\.[a-z0-9_]+\.partial$")


def _remove_leftovers(out: Path, driver: str) -> None:
    """What runs killed while writing ``out`` left: staging folders (a shapefile's complete new set, caught while
    it was moved into place, is moved the rest of the way) and a GeoPackage's temporary layers."""
    folder = out.parent if str(out.parent) else Path(".")
    pattern = _staging_pattern(out)
    for name in os.listdir(folder):
        match = pattern.match(name)
        staging = folder / name
        if not match or not staging.is_dir() or geopackage.process_alive(int(match.group(1))):
            continue
        if driver == "ESRI Shapefile" and shapefile.finish_interrupted(staging, out):
            warn(
                GeoclassifyWarning(
                    f"output {os.fspath(out)!r}: a run killed while replacing it had written the new files in full; "
                    "their move into place is now finished"
                )
            )
        shutil.rmtree(staging, ignore_errors=True)
    if driver == "GPKG" and is_geopackage(out):
        geopackage.remove_leftovers(out)
