"""The Python API: ``classify_objects`` and ``inspect_model``, a shell over the run core like the CLI.

``classify_objects`` keeps its keywords (Esri's tool, in Python); it turns them into a
:class:`~geoclassify.RunRequest` and the in-memory objects a request cannot hold into a
:class:`~geoclassify.RunContext`, and runs them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
from rasterio.crs import CRS
from rasterio.enums import Resampling

from .dry_run import DryRunReport
from .environment import Extent
from .fields import DEFAULT_LABEL_FIELD
from .hooks import RunHooks
from .model.inspection import describe_model
from .model.runtime import Model, load_model
from .progress import TerminalProgress
from .request import RunRequest
from .runs import RunContext, run
from .sample import DATA_DIR, FEATURES, IMAGE, MODEL
from .summary import Summary

PathLike = str | os.PathLike[str]
Images = PathLike | Sequence[PathLike]
__all__ = ["DEFAULT_LABEL_FIELD", "classify_objects", "inspect_model", "request_of", "sample_paths"]


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
    where: str | None = None,
    top_k: int = 1,
    probabilities: bool = False,
    min_coverage: float | None = None,
    dry_run: bool = False,
    export_chips: PathLike | None = None,
) -> pd.DataFrame | Summary | DryRunReport:
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
    A run writing ``out`` (with features or without) saves its results as it goes; after it is killed, the same
    call with ``resume=True`` classifies only what is missing.
    ``where`` (an OGR SQL WHERE clause) keeps only the features it selects; ``top_k`` adds the runner-up classes
    (``ClassLabel_2``, ``Confidence_2``, ...), ``probabilities`` one ``Prob_<class>`` field per class, and
    ``min_coverage`` (0 to 1) leaves a feature whose chip holds less valid raster unclassified, saying why in
    ``Unclassified``. ``export_chips`` (a folder) receives every chip as the model does. ``dry_run`` classifies
    nothing and returns a :class:`~geoclassify.dry_run.DryRunReport`.

    Returns the rows (a GeoDataFrame, or a DataFrame for images without georeference) or, when ``out`` is given,
    writes them there atomically and returns the run's :class:`Summary`.
    """
    request, context = request_of(**locals())
    try:
        return run(request, context)
    finally:
        if isinstance(context.hooks.progress, TerminalProgress):
            context.hooks.progress.close()


def request_of(
    image: Images,
    model: PathLike | Model,
    features: PathLike | gpd.GeoDataFrame | None = None,
    out: PathLike | None = None,
    **keywords: Any,
) -> tuple[RunRequest, RunContext]:
    """The request ``classify_objects`` makes of its arguments, and the context that holds what a request cannot:
    a loaded model, a GeoDataFrame, a Dask client, a progress bar."""
    hooks = RunHooks(progress=TerminalProgress()) if keywords.pop("progress", False) else RunHooks()
    context = RunContext(hooks=hooks)
    if isinstance(model, Model):
        if keywords.get("processor_type") is None and keywords.get("gpu_id") is None:  # where it was loaded
            keywords["processor_type"] = model.device.processor_type
            keywords["gpu_id"] = model.device.gpu_id if model.device.processor_type == "GPU" else None
        context.model, model = model, model.package.source
    if isinstance(features, gpd.GeoDataFrame):
        context.features, features = features, None
    scheduler = keywords.get("scheduler")
    if scheduler is not None and not isinstance(scheduler, str):
        context.client, keywords["scheduler"] = scheduler, None
    extent = keywords.get("extent")
    if isinstance(extent, Extent):
        keywords["extent"] = (extent.xmin, extent.ymin, extent.xmax, extent.ymax)
        keywords["extent_crs"] = extent.crs.to_string() if extent.crs is not None else keywords.get("extent_crs")
    for name in ("extent_crs", "out_crs"):
        if isinstance(keywords.get(name), CRS):
            keywords[name] = keywords[name].to_wkt()
    if keywords.get("processor_type") is None:
        keywords.pop("processor_type", None)
    if isinstance(keywords.get("resampling"), Resampling):
        keywords["resampling"] = keywords["resampling"].name
    request = RunRequest.from_keywords(image=image, model=model, features=features, out=out, **keywords)
    return request, context


def inspect_model(
    model: PathLike | Model, arguments: Mapping[str, Any] | None = None, trust_code: bool = False
) -> dict[str, Any]:
    """What a model is and how it will be run, as plain data (the CLI's ``inspect --json``)."""
    loaded = model if isinstance(model, Model) else load_model(model, arguments, trust_code=trust_code)
    return describe_model(loaded)


def sample_paths() -> dict[str, Path]:
    """The bundled sample's files (orthophoto, house footprints, roof-damage model)."""
    return {"image": DATA_DIR / IMAGE, "features": DATA_DIR / FEATURES, "model": DATA_DIR / MODEL}
