"""The Python API: ``classify_objects`` and ``inspect_model``. The CLI and any service call only these."""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from rasterio.crs import CRS
from rasterio.enums import Resampling

from .environment import Extent, check_cell_size, parse_crs, parse_processing_mode, parse_resampling
from .errors import (
    CRSMismatchError,
    ExtentWarning,
    GeoclassifyError,
    GeoclassifyWarning,
    NoOverlapWarning,
    RunInterrupted,
    SettingError,
    UnreferencedImagesWarning,
)
from .fields import DEFAULT_LABEL_FIELD, ResultFields, check_fields, describe, result_columns
from .io.feature_batches import FeatureBatches
from .io.identity import features_identity, image_identity, model_identity
from .io.images import ImageRef, resolve_images
from .io.journal import Journal
from .io.rasters import RasterSource
from .io.writers import check_output, write_batches
from .model.device import choose_device
from .model.runtime import Model, load_model
from .modes.collection import classify_items, classify_mosaic
from .modes.whole_images import classify_whole_images, select_images, to_crs
from .progress import Summary, progress_bar
from .runners.local import Predictions, chip_spec
from .runners.processes import Execution, check_execution, parse_parallel_factor

PathLike = str | os.PathLike[str]
Images = PathLike | Sequence[PathLike]
__all__ = ["DEFAULT_LABEL_FIELD", "classify_objects", "inspect_model", "sample_paths"]


def classify_objects(
    image: Images,
    model: PathLike | Model,
    features: PathLike | gpd.GeoDataFrame | None = None,
    out: PathLike | None = None,
    *,
    features_layer: str | None = None,
    out_layer: str | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
    field_prefix: str = "",
    arguments: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    recursive: bool = False,
    asset: str | None = None,
    processing_mode: str = "mosaic",
    extent: Sequence[float] | Extent | None = None,
    extent_crs: str | CRS | None = None,
    cell_size: float | None = None,
    resampling: str | Resampling = "nearest",
    out_crs: str | CRS | None = None,
    trust_code: bool = False,
    parallel_factor: str | int | None = None,
    retries: int = 0,
    recycle_interval: int | None = None,
    resume: bool = False,
    scheduler: Any = None,
    processor_type: str | None = None,
    gpu_id: int | None = None,
) -> pd.DataFrame | Summary:
    """Classify objects in imagery with ``model``: Esri's "Classify Objects Using Deep Learning".

    ``image`` is a raster, a folder, a list file, a glob pattern, a VRT or a STAC Item(Collection) (or a list of
    them). With ``features``, every feature is classified on the collection (``processing_mode`` "mosaic") or on
    each image that covers it ("items"); without, each image is one object. The environments ``extent``
    (``extent_crs``, default the raster's CRS), ``cell_size``, ``resampling`` (Esri's Resampling Method: "nearest",
    the default, "bilinear" or "cubic", for images warped onto a mosaic's grid or to ``cell_size``) and
    ``out_crs`` behave as Esri's, and so do the
    execution ones: ``parallel_factor`` (worker processes, or a share of the cores such as "50%"), ``retries`` (a
    failed batch is run again that many times) and ``recycle_interval`` (workers replaced after that many batches).
    ``scheduler`` runs the batches on a Dask cluster instead: a scheduler address (``"tcp://host:8786"``),
    ``"local"`` or ``"local:N"`` (a local cluster of N worker processes), or a ``dask.distributed.Client``.
    ``processor_type`` "CPU" (the default) or "GPU" and ``gpu_id`` (default 0) are Esri's Processor Type and GPU
    ID: on a GPU, the model runs through CUDA (``geoclassify[gpu]``), in every worker.
    A run with features writing ``out`` saves its results as it goes; after it is killed, the same call with
    ``resume=True`` classifies only what is missing.

    Returns the rows (a GeoDataFrame, or a DataFrame for images without georeference) or, when ``out`` is given,
    writes them there atomically and returns the run's :class:`Summary`.
    """
    started = time.perf_counter()
    mode = parse_processing_mode(processing_mode)
    cell_size = check_cell_size(cell_size)
    method = parse_resampling(resampling)
    device = choose_device(processor_type, gpu_id, model.device if isinstance(model, Model) else None)
    target_crs = parse_crs(out_crs, "«output_crs»") if out_crs is not None else None
    area = extent if isinstance(extent, Extent) or extent is None else Extent.parse(extent, extent_crs)
    execution = check_execution(parse_parallel_factor(parallel_factor), retries, recycle_interval, scheduler)
    if out is not None:
        check_output(out, overwrite, out_layer, features, features_layer)
    source = None
    if features is not None:
        # A big layer is never read whole: it is planned from batches of geometries, and its attributes are read
        # again in batches when the output is written.
        source = FeatureBatches(features, features_layer, out)
    total = source.count if source is not None else 0
    columns = source.fields if source is not None else None
    fields = ResultFields.named(label_field, field_prefix)
    check_fields(columns, fields, features, out, extra=_extra_fields(features, mode))
    loaded = model if isinstance(model, Model) else load_model(model, arguments, trust_code=trust_code, device=device)
    refs = resolve_images(image, recursive=recursive, asset=asset)
    journal = None
    if out is not None and features is not None:
        fingerprint = {
            "mode": mode,
            # Inputs by identity (size, time, content hash), so one replaced at the same path is not mixed in.
            "images": [image_identity(ref) for ref in refs],
            "features": features_identity(features),
            "layer": features_layer,
            "count": total,
            "model": model_identity(loaded.package),
            # batch_size is left out: results do not depend on it, so a resumed run may use another.
            "arguments": {k: str(v) for k, v in loaded.arguments.items() if k != "batch_size"},
            "fields": list(fields),
            "extent": repr(area),
            "cell_size": cell_size,
            "resampling": method.name,
            # The processor is left out: CPU and GPU differ by float noise only, so a run may resume on the other.
        }
        journal = Journal(out, fingerprint, resume, overwrite)
    elif resume:
        raise SettingError("«resume» works for runs with a feature layer and an «output» file")
    with contextlib.ExitStack() as scope, _keeping_results(journal, mode, total):
        if execution.scheduler is not None and source is not None:
            from .runners.cluster import hold_cluster

            execution = hold_cluster(execution, scope)
        if source is None:
            if execution.distributed:
                warnings.warn(
                    "«parallel_factor» and «scheduler» apply to feature layers; the images are classified in this "
                    "process, one after another",
                    GeoclassifyWarning,
                    stacklevel=3,
                )
            table, summary = _classify_images(loaded, refs, fields, area, cell_size, target_crs, progress, method)
            rows: Iterator[pd.DataFrame] = iter([table])
        else:
            rows, summary = _classify_features(
                loaded,
                refs,
                source,
                mode,
                fields,
                area,
                cell_size,
                target_crs,
                progress,
                execution,
                journal,
                resampling=method,
            )
    if area is not None:
        _warn_extent_misses(area, refs, summary, features)
    summary = Summary(**{**summary.__dict__, "seconds": time.perf_counter() - started})
    if out is None:
        result = next(rows)  # layers are streamed only into files, so this is the one batch
        result.attrs["summary"] = summary
        return result
    geometry_type = source.geometry_type if source is not None else None
    with _keeping_results(journal, mode, total):  # a big layer is read again while the output is written
        write_batches(rows, out, out_layer, overwrite=overwrite or resume, geometry_type=geometry_type)
    if journal is not None:
        journal.finish()
    return Summary(**{**summary.__dict__, "seconds": time.perf_counter() - started, "output": os.fspath(out)})


@contextlib.contextmanager
def _keeping_results(journal: Journal | None, mode: str, total: int) -> Iterator[None]:
    """On Ctrl-C or a failure, save what the journal holds and say how to go on from it."""
    try:
        yield
    except KeyboardInterrupt:
        saved = journal.settle() if journal is not None else 0
        if not saved:
            raise
        done = f"{saved} of {total} features" if mode == "mosaic" else f"{saved} results (feature and image)"
        raise RunInterrupted(f"interrupted; {done} are saved: run the same command with «resume» to continue") from None
    except GeoclassifyError as exc:
        saved = journal.settle() if journal is not None else 0
        if not saved:
            raise
        # The same exception goes on, its class and attributes intact; only its message gains the way forward, on
        # the same line unless the message has several (a model's traceback).
        message = exc.message
        message += "\n" if "\n" in message else (" " if message.endswith(".") else ". ")
        exc.args = (
            f"{message}The {saved} {'features' if mode == 'mosaic' else 'results'} classified before the failure "
            "are saved; fix the cause and run the same command with «resume» to go on from there.",
            *exc.args[1:],
        )
        raise
    except BaseException:  # any other failure: keep what was saved, and leave no journal when nothing was
        if journal is not None:
            journal.settle()
        raise


def _extra_fields(features: PathLike | gpd.GeoDataFrame | None, mode: str) -> tuple[str, ...]:
    if features is None:
        return ("ImageID", "Error")
    return ("ItemID",) if mode == "items" else ()


def _images_label(refs: Sequence[ImageRef]) -> str:
    return f"raster {refs[0].image_id!r}" if len(refs) == 1 else f"any of the {len(refs)} images"


def _processing_crs(refs: Sequence[ImageRef]) -> CRS | None:
    """The CRS chips are cut in: the first image's (the mosaic grid takes it too)."""
    with RasterSource(refs[0].uri, label=refs[0].image_id) as first:
        return first.crs


def _classify_features(
    model: Model,
    refs: Sequence[ImageRef],
    source: FeatureBatches,
    mode: str,
    fields: ResultFields,
    area: Extent | None,
    cell_size: float | None,
    target_crs: CRS | None,
    progress: bool,
    execution: Execution,
    journal: Journal | None = None,
    resampling: Resampling = Resampling.nearest,
) -> tuple[Iterator[gpd.GeoDataFrame], Summary]:
    """Classify the features; the output rows come as batches, read again from the layer when it is streamed."""
    features = source.features
    if area is not None:
        source.reach = area.polygon_in(source.crs, _processing_crs(refs))
    if target_crs is not None and source.crs is None:
        raise CRSMismatchError(
            f"{describe(features)} has no coordinate system, so it cannot be written in "
            f"{target_crs.to_string()} («output_crs»)"
        )
    if mode == "mosaic":
        predictions = classify_mosaic(
            model, refs, source, features, cell_size, progress, execution, journal, resampling
        )
        feature, extra = None, None
    else:
        items = classify_items(model, refs, source, features, cell_size, progress, execution, journal, resampling)
        predictions, feature = items.predictions, items.feature
        ids = np.array([ref.image_id for ref in refs] + [None], dtype=object)
        extra = pd.DataFrame({"ItemID": pd.array(ids[items.item], dtype="string")})
    _warn_no_overlap(predictions, features, refs)
    skipped = source.count - source.selected
    if feature is None:
        summary = _mosaic_summary(predictions, skipped)
    else:
        classified = predictions.classified
        summary = Summary(
            read=source.selected,
            classified=int(np.unique(feature[classified]).size),
            outside=int(source.selected - np.unique(feature[classified | predictions.empty]).size),
            empty=int(predictions.empty.sum()),
            rows=len(feature),
            skipped=skipped,
        )
    return source.rows(_result_columns(model, predictions, fields), target_crs, feature, extra), summary


def _result_columns(model: Model, predictions: Predictions, fields: ResultFields) -> pd.DataFrame:
    return result_columns(
        model.definition.classes,
        predictions.class_index,
        predictions.confidence,
        predictions.coverage,
        fields,
        model.arguments.get("score_threshold"),
    )


def _mosaic_summary(predictions: Predictions, skipped: int) -> Summary:
    classified = predictions.classified
    return Summary(
        read=len(classified),
        classified=int(classified.sum()),
        outside=int((~classified & ~predictions.empty).sum()),
        empty=int(predictions.empty.sum()),
        skipped=skipped,
    )


def _warn_extent_misses(
    area: Extent, refs: Sequence[ImageRef], summary: Summary, features: PathLike | gpd.GeoDataFrame | None
) -> None:
    """An extent that leaves nothing to classify is almost always a mistake (a swapped axis, another CRS), yet
    the run succeeds with an empty output: say so, and what was missed."""
    where = f"«extent» {area.xmin:.10g} {area.ymin:.10g} {area.xmax:.10g} {area.ymax:.10g}"
    crs = f"in {area.crs.to_string()}" if area.crs is not None else "in the first image's CRS"
    if summary.skipped and not summary.read:
        objects = f"feature of {describe(features)}" if features is not None else "image"
        missed = f"every {objects}"
    elif features is not None and not select_images(refs, area):
        missed = _images_label(refs)
    else:
        return
    warnings.warn(
        f"{where} ({crs}) misses {missed}, so nothing is classified; check the numbers and their CRS",
        ExtentWarning,
        stacklevel=3,
    )


def _warn_no_overlap(predictions: Predictions, features: PathLike | gpd.GeoDataFrame, refs: Sequence[ImageRef]) -> None:
    if len(predictions.class_index) and not predictions.classified.any() and predictions.outside.any():
        warnings.warn(
            f"no feature of {describe(features)} overlaps {_images_label(refs)}; every label is empty. "
            "Check that the features and the raster cover the same place.",
            NoOverlapWarning,
            stacklevel=4,
        )


def _classify_images(
    model: Model,
    refs: Sequence[ImageRef],
    fields: ResultFields,
    area: Extent | None,
    cell_size: float | None,
    target_crs: CRS | None,
    progress: bool,
    resampling: Resampling = Resampling.nearest,
) -> tuple[pd.DataFrame, Summary]:
    skipped = 0
    if area is not None:
        kept = select_images(refs, area)
        skipped = len(refs) - len(kept)
        refs = kept
    with progress_bar(len(refs), progress, "classifying images", unit=" images") as advance:
        results = classify_whole_images(model, refs, cell_size, advance, resampling)
    class_index = np.array([r.class_index for r in results], dtype=np.int64)
    columns = result_columns(
        model.definition.classes,
        class_index,
        np.array([np.broadcast_to(r.confidence, model.score_shape) for r in results]).reshape(-1, *model.score_shape),
        np.array([r.coverage for r in results]),
        fields,
        model.arguments.get("score_threshold"),
    )
    table = pd.DataFrame({"ImageID": pd.array([r.ref.image_id for r in results], dtype="string")})
    table = pd.concat([table, columns], axis=1)
    table["Error"] = pd.array([r.error for r in results], dtype="string")
    placed = [r for r in results if r.footprint is not None]
    summary = Summary(
        read=len(results),
        classified=int((class_index >= 0).sum()),
        outside=int(sum(r.error is None and r.class_index < 0 for r in results)),
        errors=sum(r.error is not None for r in results),
        skipped=skipped,
        unit="images",
    )
    if not placed:
        return table, summary
    crs = target_crs or placed[0].crs
    geometry = [to_crs(r.footprint, r.crs, crs) if r.footprint is not None else None for r in results]
    unplaced = sum(g is None for g in geometry)
    if unplaced:
        warnings.warn(
            f"{unplaced} of {len(results)} images have no georeference; their rows have no geometry",
            UnreferencedImagesWarning,
            stacklevel=3,
        )
    return gpd.GeoDataFrame(table, geometry=gpd.GeoSeries(geometry, crs=crs.to_wkt()), crs=crs.to_wkt()), summary


def inspect_model(
    model: PathLike | Model, arguments: Mapping[str, Any] | None = None, trust_code: bool = False
) -> dict[str, Any]:
    """What a model is and how it will be run, as plain data (the CLI's ``inspect --json``)."""
    loaded = model if isinstance(model, Model) else load_model(model, arguments, trust_code=trust_code)
    definition = loaded.definition
    spec = chip_spec(loaded)
    stats = definition.normalization
    own: dict[str, Any] | None = getattr(loaded.backend, "normalisation", None)  # a dialect's own (Keras)
    if own is not None:
        normalisation: dict[str, Any] = own
    elif stats is not None:
        normalisation = {
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
        "model_output": definition.model_output
        or getattr(loaded.backend, "model_output", None)
        or "auto (probabilities if rows sum to 1, else logits)",
        "multi_label": loaded.multi_label,
        "inference_function": definition.inference_function,
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


def sample_paths() -> dict[str, Path]:
    """The bundled sample's files (orthophoto, house footprints, roof-damage model)."""
    from .sample import DATA_DIR, FEATURES, IMAGE, MODEL

    return {"image": DATA_DIR / IMAGE, "features": DATA_DIR / FEATURES, "model": DATA_DIR / MODEL}
