"""The run core's entry: :func:`run` takes a :class:`RunRequest` and a :class:`RunContext` and does the work.

Every shell is thin over it: the CLI and :func:`classify_objects` build the request from their own words, a job
service from a stored request, and each passes the hooks it needs (a terminal bar, a job's status record, a
cancel flag) in the context.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import pandas as pd

from .hooks import RunHooks, using
from .model.runtime import Model
from .progress import Summary
from .request import RunRequest


@dataclass
class RunContext:
    """What a run gets besides its request: hooks, and objects already in memory that a request cannot hold.

    ``model`` is a loaded model to use instead of loading ``request.model`` again (a service keeps models warm);
    ``features`` a GeoDataFrame to classify instead of reading ``request.input_features``; ``client`` a Dask
    client already connected; ``progress_bar`` a terminal bar on stderr.
    """

    hooks: RunHooks = field(default_factory=RunHooks)
    model: Model | None = None
    features: gpd.GeoDataFrame | None = None
    client: Any = None
    progress_bar: bool = False


def run(request: RunRequest, context: RunContext | None = None) -> Summary | pd.DataFrame:
    """Run ``request``: with an ``output``, write it atomically and return the :class:`Summary`; without, return
    the rows (a GeoDataFrame, or a DataFrame for images without georeference) with the summary in ``attrs``."""
    from .api import classify_objects  # the API's keyword form is the run's body until the core takes it over

    context = context or RunContext()
    keywords = dict(
        features_layer=request.features_layer,
        out_layer=request.output_layer,
        label_field=request.class_label_field,
        field_prefix=request.field_prefix,
        arguments=dict(request.model_arguments),
        overwrite=request.overwrite,
        progress=context.progress_bar,
        recursive=request.recursive,
        asset=request.asset,
        processing_mode=request.processing_mode,
        extent=request.extent,
        extent_crs=request.extent_crs,
        cell_size=request.cell_size,
        resampling=request.resampling,
        out_crs=request.output_crs,
        trust_code=request.trust_code,
        parallel_factor=request.parallel_factor,
        retries=request.retries,
        recycle_interval=request.recycle_interval,
        resume=request.resume,
        scheduler=context.client if context.client is not None else request.scheduler,
        processor_type=request.processor_type,
        gpu_id=request.gpu_id,
    )
    images = request.input_raster[0] if len(request.input_raster) == 1 else list(request.input_raster)
    features = context.features if context.features is not None else request.input_features
    model = context.model if context.model is not None else request.model
    with using(context.hooks), warnings.catch_warnings(record=context.hooks.warning is not None) as caught:
        if context.hooks.warning is not None:
            warnings.simplefilter("always")
        try:
            return classify_objects(images, model, features, request.output, **keywords)
        finally:
            for item in caught or ():
                context.hooks.warning(item.message)
