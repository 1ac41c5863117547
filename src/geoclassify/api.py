"""The Python API: ``classify_objects`` and ``inspect_model``. The CLI and any service call only these."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, overload

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj.exceptions import CRSError

from .errors import CRSMismatchError, NoOverlapWarning, OutputError
from .features import read_features
from .model import Model, load_model
from .output import check_output, write_output
from .pipeline import Predictions, chip_spec, classify_geometries
from .progress import Summary, progress_bar
from .raster import RasterSource

#: Fields added to every output row, besides the label field.
RESULT_FIELDS = ("ClassValue", "Confidence", "Coverage")
DEFAULT_LABEL_FIELD = "ClassLabel"

PathLike = str | os.PathLike[str]


@overload
def classify_objects(
    image: PathLike,
    model: PathLike | Model,
    features: PathLike | gpd.GeoDataFrame,
    out: None = None,
    **options: Any,
) -> gpd.GeoDataFrame: ...


@overload
def classify_objects(
    image: PathLike,
    model: PathLike | Model,
    features: PathLike | gpd.GeoDataFrame,
    out: PathLike,
    **options: Any,
) -> Summary: ...


def classify_objects(
    image: PathLike,
    model: PathLike | Model,
    features: PathLike | gpd.GeoDataFrame,
    out: PathLike | None = None,
    *,
    features_layer: str | None = None,
    out_layer: str | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
    arguments: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> gpd.GeoDataFrame | Summary:
    """Classify every feature on ``image`` with ``model``; Esri's "Classify Objects Using Deep Learning".

    Returns the features with ``label_field``, ``ClassValue``, ``Confidence`` and ``Coverage`` added, or,
    when ``out`` is given, writes them there (atomically) and returns the run's :class:`Summary`.
    """
    started = time.perf_counter()
    if out is not None:
        check_output(out, overwrite)
    loaded = model if isinstance(model, Model) else load_model(model, arguments)
    frame = features if isinstance(features, gpd.GeoDataFrame) else read_features(features, features_layer)
    _check_fields(frame, label_field, features, out)
    with RasterSource(image) as raster:
        geometries = _to_raster_crs(frame, raster, features)
        with progress_bar(len(frame), progress) as advance:
            predictions = classify_geometries(loaded, raster, geometries, advance)
    if len(frame) and not predictions.classified.any() and predictions.outside.any():
        warnings.warn(
            f"no feature of {_name(features)} overlaps raster {os.fspath(image)!r}; every label is empty. "
            "Check that the features and the raster cover the same place.",
            NoOverlapWarning,
            stacklevel=2,
        )
    result = _attach(frame, predictions, loaded, label_field)
    summary = Summary(
        features_read=len(frame),
        classified=int(predictions.classified.sum()),
        outside=int((~predictions.classified & ~predictions.empty).sum()),
        empty=int(predictions.empty.sum()),
        seconds=time.perf_counter() - started,
        output=os.fspath(out) if out is not None else None,
    )
    if out is None:
        result.attrs["summary"] = summary
        return result
    write_output(result, out, layer=out_layer, overwrite=overwrite)
    return Summary(**{**summary.__dict__, "seconds": time.perf_counter() - started})


def inspect_model(model: PathLike | Model, arguments: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a model is and how it will be run, as plain data (the CLI's ``inspect --json``)."""
    loaded = model if isinstance(model, Model) else load_model(model, arguments)
    definition = loaded.definition
    spec = chip_spec(loaded)
    stats = definition.normalization
    if stats is not None:
        normalisation: dict[str, Any] = {
            "kind": "NormalizationStats",
            "formula": "((x - band_min) / (band_max - band_min) - scaled_mean) / scaled_std, per ExtractBands index",
            "band_min": list(stats.band_min),
            "band_max": list(stats.band_max),
            "scaled_mean": list(stats.scaled_mean),
            "scaled_std": list(stats.scaled_std),
        }
    else:
        normalisation = {
            "kind": "ImageNet",
            "formula": "(x - 255 * mean) / (255 * std)",
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
        }
    return {
        "source": loaded.package.source,
        "model_name": definition.model_name,
        "framework": definition.framework,
        "model_type": definition.model_type or "ObjectClassification",
        "runtime": loaded.backend.describe(),
        "chip_size": {"height": spec.height, "width": spec.width},
        "extract_bands": list(definition.extract_bands) if definition.extract_bands is not None else "all",
        "crop_size_fixed": spec.fixed,
        "blacken_around_feature": spec.blacken,
        "image_space": definition.image_space_used,
        "model_output": definition.model_output or "auto (probabilities if rows sum to 1, else logits)",
        "data_range": list(definition.data_range) if definition.data_range else None,
        "normalisation": normalisation,
        "cell_size_range": {
            "min": definition.min_cell_size.__dict__ if definition.min_cell_size else None,
            "max": definition.max_cell_size.__dict__ if definition.max_cell_size else None,
        },
        "classes": [
            {"position": i, "value": c.value, "name": c.name, "color": list(c.color) if c.color else None}
            for i, c in enumerate(definition.classes)
        ],
        "arguments": [
            {
                "name": s.name,
                "type": s.type,
                "default": s.default,
                "value": loaded.arguments[s.name],
                "description": s.description,
            }
            for s in loaded.specs
        ],
    }


def _name(features: PathLike | gpd.GeoDataFrame) -> str:
    return "the features" if isinstance(features, gpd.GeoDataFrame) else repr(os.fspath(features))


def _check_fields(
    frame: gpd.GeoDataFrame, label_field: str, features: PathLike | gpd.GeoDataFrame, out: PathLike | None
) -> None:
    if not label_field or not label_field.strip():
        raise OutputError("the label field name is empty; give --label-field a name such as ClassLabel")
    if out is not None and os.fspath(out).lower().endswith(".shp") and len(label_field) > 10:
        raise OutputError(
            f"--label-field {label_field!r} is longer than the 10 characters a shapefile field can have; "
            "choose a shorter name or another output format"
        )
    existing = {str(c).lower(): str(c) for c in frame.columns if c != frame.geometry.name}
    for name in (label_field, *RESULT_FIELDS):
        if name.lower() in existing:
            hint = "choose another --label-field" if name == label_field else "rename or drop that field"
            raise OutputError(
                f"{_name(features)} already has a field {existing[name.lower()]!r}, which the output "
                f"needs for {name}; {hint}"
            )
    if len({label_field.lower(), *(f.lower() for f in RESULT_FIELDS)}) != 1 + len(RESULT_FIELDS):
        raise OutputError(f"--label-field {label_field!r} clashes with an output field; choose another name")


def _to_raster_crs(frame: gpd.GeoDataFrame, raster: RasterSource, features: PathLike | gpd.GeoDataFrame) -> np.ndarray:
    """Copies of the geometries in the raster's CRS; the frame itself keeps the originals."""
    if raster.crs is None and frame.crs is None:
        return frame.geometry.to_numpy()
    if raster.crs is None:
        raise CRSMismatchError(
            f"raster {raster.path!r} has no coordinate system but {_name(features)} has one "
            f"({frame.crs.to_string()}); assign the raster its CRS (e.g. gdal_edit.py -a_srs)"
        )
    if frame.crs is None:
        raise CRSMismatchError(
            f"{_name(features)} has no coordinate system but raster {raster.path!r} has one "
            f"({raster.crs.to_string()}); assign the layer its CRS (e.g. ogr2ogr -a_srs)"
        )
    if frame.crs == raster.crs:
        return frame.geometry.to_numpy()
    problem = ""
    if frame.crs.is_geographic and len(frame):
        minx, miny, maxx, maxy = frame.total_bounds
        if min(minx, miny) < -360 or max(maxx, maxy) > 360:
            problem = f"its coordinates ({minx:.6g}, {miny:.6g}, {maxx:.6g}, {maxy:.6g}) are not degrees"
    if not problem:
        with np.errstate(all="ignore"):
            try:
                moved = frame.geometry.to_crs(raster.crs.to_wkt()).to_numpy()
            except (CRSError, ValueError, shapely.errors.GEOSException) as exc:
                moved, problem = None, str(exc)
        if moved is not None and not np.isfinite(shapely.get_coordinates(moved)).all():
            problem = "some coordinates fall outside the area where the two systems convert"
        if not problem:
            return moved
    raise CRSMismatchError(
        f"cannot reproject {_name(features)} from {frame.crs.to_string()} to the CRS of raster {raster.path!r} "
        f"({raster.crs.to_string()}): {problem}. Check the layer's CRS (a GeoJSON without one is read as WGS 84)."
    )


def _attach(frame: gpd.GeoDataFrame, predictions: Predictions, model: Model, label_field: str) -> gpd.GeoDataFrame:
    classes = model.definition.classes
    names = np.array([c.name for c in classes] + [None], dtype=object)
    values = np.array([c.value for c in classes] + [0], dtype=np.int64)
    index = predictions.class_index
    classified = index >= 0
    result = frame.copy()
    result[label_field] = pd.array(names[index], dtype="string")
    result["ClassValue"] = pd.array(np.where(classified, values[index], 0), dtype="Int64")
    result.loc[~classified, "ClassValue"] = pd.NA
    result["Confidence"] = predictions.confidence
    result["Coverage"] = predictions.coverage
    # Keep the geometry column last, where GIS users expect it.
    geometry = result.geometry.name
    ordered = [c for c in result.columns if c != geometry] + [geometry]
    return gpd.GeoDataFrame(result[ordered], geometry=geometry, crs=frame.crs)


def sample_paths() -> dict[str, Path]:
    """The bundled sample's files (orthophoto, house footprints, roof-damage model)."""
    from .sample import DATA_DIR, FEATURES, IMAGE, MODEL

    return {"image": DATA_DIR / IMAGE, "features": DATA_DIR / FEATURES, "model": DATA_DIR / MODEL}
