"""The run core: a :class:`RunRequest` carried out with the hooks and objects of a :class:`RunContext`.

Every shell is thin over it: the CLI and :func:`~geoclassify.classify_objects` build the request from their own
words, a job service from a stored one, and each passes what it needs in the context (a terminal bar or a job's
status record as the progress hook, a cancel flag, a model it keeps loaded). :func:`classify` does the work and
returns a :class:`RunResult` whose rows stream to whoever consumes them; :func:`run` writes them to the request's
output (or returns them) and is what shells call.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
from rasterio.crs import CRS
from rasterio.enums import Resampling

from . import settings
from .dry_run import DryRunReport, dry_run_report
from .environment import Extent, check_cell_size, parse_crs, parse_processing_mode, parse_resampling
from .errors import ExtentWarning, OutputError, SettingError
from .fields import ResultFields, check_fields, describe
from .hooks import RunHooks, using, warn
from .io.feature_batches import FeatureBatches
from .io.identity import features_identity, image_identity, model_identity
from .io.images import ImageRef, resolve_images
from .io.journal import Journal, keeping_results
from .io.writers import check_output, write_batches
from .model.backends import ChipBackend
from .model.device import Device, choose_device
from .model.runtime import Model, load_model
from .modes.features import classify_features, images_label
from .modes.image_table import classify_images
from .modes.ranking import ResultOptions, check_shapefile_names
from .modes.whole_images import select_images
from .request import RunRequest
from .runners import Execution, check_execution, parse_parallel_factor, runner_for
from .summary import Summary

log = logging.getLogger(__name__)

#: Makes the checkpoint store of a run that writes an output: (output, fingerprint, resume, overwrite, layer).
CheckpointStore = Callable[[str, dict[str, Any], bool, bool, str | None], Journal]


@dataclass
class RunContext:
    """What a run gets besides its request: hooks, and objects already in memory that a request cannot hold.

    ``model`` is a loaded model to use instead of loading ``request.model`` (a service keeps models warm);
    ``features`` a GeoDataFrame to classify instead of reading ``request.input_features``; ``client`` a Dask client
    already connected; ``checkpoints`` where results are saved as they come (default: the journal beside the
    output, which ``resume`` continues).
    """

    hooks: RunHooks = field(default_factory=RunHooks)
    model: Model | None = None
    features: gpd.GeoDataFrame | None = None
    client: Any = None
    checkpoints: CheckpointStore = Journal


@dataclass
class RunResult:
    """A finished classification: its counts, and its rows as a stream of batches in input order."""

    request: RunRequest
    summary: Summary
    rows: Iterator[pd.DataFrame]
    geometry_type: str | None = None
    journal: Journal | None = None
    mode: str = "mosaic"
    total: int = 0
    started: float = field(default_factory=time.perf_counter)
    #: A dry run's report (its rows are none).
    report: DryRunReport | None = None

    def frame(self) -> pd.DataFrame:
        """The rows in memory (a run without an output is never streamed, so they are one batch)."""
        result = next(self.rows)
        result.attrs["summary"] = self.summary
        return result

    def write(self) -> Summary:
        """Write the rows to the request's output, atomically; the saved results stay until it is written."""
        request = self.request
        assert request.output is not None, "a run without an output has nothing to write"
        with keeping_results(self.journal, self.mode, self.total):  # a big layer is read again while it is written
            write_batches(
                self.rows,
                request.output,
                request.output_layer,
                overwrite=request.overwrite or request.resume,
                geometry_type=self.geometry_type,
            )
        if self.journal is not None:
            self.journal.finish()
        summary = self.summary.but(seconds=time.perf_counter() - self.started, output=request.output)
        log.info("wrote %s", summary.line())
        return summary


def run(request: RunRequest, context: RunContext | None = None) -> Summary | pd.DataFrame | DryRunReport:
    """Run ``request``: with an ``output``, write it atomically and return the :class:`Summary`; without, return
    the rows (a GeoDataFrame, or a DataFrame for images without georeference) with the summary in ``attrs``.
    A ``dry_run`` classifies and writes nothing: it returns the :class:`DryRunReport`, with the warnings the run
    gave so far in it rather than shown."""
    context = context or RunContext()
    if request.dry_run:
        seen: list[Warning] = []  # the run's warnings go into the report, through its own hook
        hooks = dataclasses.replace(context.hooks, warning=seen.append)
        with using(hooks), settings.reading():
            result = classify(request, context)
        assert result.report is not None
        return result.report.but(warnings=tuple(dict.fromkeys(str(w) for w in seen)))
    with using(context.hooks), settings.reading():
        result = classify(request, context)
        return result.write() if request.output is not None else result.frame()


@dataclass(frozen=True)
class Environments:
    """The request's environments, parsed and checked before anything is read."""

    mode: str
    cell_size: float | None
    resampling: Resampling
    device: Device
    target_crs: CRS | None
    area: Extent | None
    execution: Execution

    @classmethod
    def of(cls, request: RunRequest, model: Model | None, client: Any = None) -> Environments:
        extent = request.extent
        return cls(
            mode=parse_processing_mode(request.processing_mode),
            cell_size=check_cell_size(request.cell_size),
            resampling=parse_resampling(request.resampling),
            device=choose_device(request.processor_type, request.gpu_id, model.device if model else None),
            target_crs=parse_crs(request.output_crs, "«output_crs»") if request.output_crs is not None else None,
            area=Extent.parse(extent, request.extent_crs) if extent is not None else None,
            execution=check_execution(
                parse_parallel_factor(request.parallel_factor),
                request.retries,
                request.recycle_interval,
                client if client is not None else request.scheduler,
            ),
        )


def classify(request: RunRequest, context: RunContext) -> RunResult:
    """Classify what ``request`` asks, with ``context``'s hooks; the rows are left for the caller to consume."""
    started = time.perf_counter()
    env = Environments.of(request, context.model, context.client)
    features = context.features if context.features is not None else request.input_features
    out = request.output
    if out is not None:
        check_output(out, request.overwrite, request.output_layer, features, request.features_layer)
    # A big layer is never read whole: it is planned from batches of geometries, and its attributes are read again
    # in batches when the output is written.
    options = ResultOptions(request.top_k, request.probabilities, request.min_coverage)
    if features is None and request.where is not None:
        raise SettingError("«where» filters a feature layer; give «input_features», or drop «where»")
    source = FeatureBatches(features, request.features_layer, out, request.where) if features is not None else None
    fields = ResultFields.named(request.class_label_field, request.field_prefix)
    extra = _extra_fields(features, env.mode)
    check_fields(source.fields if source else None, fields, features, out, extra=extra)
    images = request.input_raster[0] if len(request.input_raster) == 1 else list(request.input_raster)
    if request.dry_run:
        refs = resolve_images(images, recursive=request.recursive, asset=request.asset)
        report = dry_run_report(
            request.model,
            context.model,
            dict(request.model_arguments),
            request.trust_code,
            refs,
            source,
            env.area,
            env.cell_size,
        )
        planned = Summary(
            read=report.selected or 0, classified=0, skipped=(report.features or 0) - (report.selected or 0)
        )
        if env.area is not None:
            _warn_extent_misses(env.area, refs, planned, features)
        return RunResult(request, planned, iter(()), report=report)
    model = context.model or load_model(
        request.model, request.model_arguments, trust_code=request.trust_code, device=env.device
    )
    model = _scoring(model, options)
    if request.export_chips is not None:
        model = dataclasses.replace(model, chip_folder=_chip_folder(request.export_chips))
    added = options.added_fields(model.definition.classes, fields, request.field_prefix)
    if added:
        check_fields(source.fields if source else None, fields, features, out, extra=(*extra, *added))
        check_shapefile_names(added, out)
    refs = resolve_images(images, recursive=request.recursive, asset=request.asset)
    total = source.count if source is not None else len(refs)
    journal = _journal(request, context, env, model, refs, source, fields) if out else None
    if request.resume and journal is None:
        raise SettingError("«resume» continues a run that writes an «output» file; give the same «output»")
    mode = env.mode if source is not None else "images"  # what the saved results are of, in messages
    objects = describe(features) if features is not None else "images"
    log.info("classifying %s with %s (%s mode)", objects, model.package.source, env.mode)
    with keeping_results(journal, mode, total):
        if source is None:
            with runner_for(env.execution) as runner:
                table, summary = classify_images(
                    model,
                    refs,
                    fields,
                    env.area,
                    env.cell_size,
                    env.target_crs,
                    env.resampling,
                    options,
                    request.field_prefix,
                    runner=runner if env.execution.distributed else None,  # type: ignore[arg-type]
                    journal=journal,
                )
            rows: Iterator[pd.DataFrame] = iter([table])
        else:
            with runner_for(env.execution) as runner:
                rows, summary = classify_features(
                    model,
                    refs,
                    source,
                    env.mode,
                    fields,
                    env.area,
                    env.cell_size,
                    env.target_crs,
                    runner,
                    journal,
                    env.resampling,
                    options,
                    request.field_prefix,
                )
    if env.area is not None:
        _warn_extent_misses(env.area, refs, summary, features)
    summary = summary.but(seconds=time.perf_counter() - started)
    geometry_type = source.geometry_type if source is not None else None
    return RunResult(request, summary, rows, geometry_type, journal, mode, total, started)


def _journal(
    request: RunRequest,
    context: RunContext,
    env: Environments,
    model: Model,
    refs: Sequence[ImageRef],
    source: FeatureBatches | None,
    fields: ResultFields,
) -> Journal:
    """The run's checkpoint store, under a fingerprint of everything its results depend on. A run without a
    feature layer saves its results by the image's position, so the images' identities (in order) cover it."""
    fingerprint = {
        **request.fingerprint(),
        # Inputs by identity (size, time, content hash), so one replaced at the same path is not mixed in.
        "images": [image_identity(ref) for ref in refs],
        "features": features_identity(source.features) if source is not None else None,
        "count": source.count if source is not None else len(refs),
        "model": model_identity(model.package),
        # batch_size is left out: results do not depend on it, so a resumed run may use another.
        "arguments": {k: str(v) for k, v in model.arguments.items() if k != "batch_size"},
        "fields": list(fields),
        "extent": repr(env.area),
        # The processor is left out: CPU and GPU differ by float noise only, so a run may resume on the other.
    }
    assert request.output is not None
    return context.checkpoints(
        os.fspath(request.output), fingerprint, request.resume, request.overwrite, request.output_layer
    )


def _scoring(model: Model, options: ResultOptions) -> Model:
    """The model, made to hand back every class's probability when the options need them (a copy, so a model a
    service keeps loaded is not changed for its other runs)."""
    options.check_model(model.definition.classes, model.package.source)
    if options.all_scores and isinstance(model.backend, ChipBackend):
        raise SettingError(
            f"{model.package.source}: «top_k» and «probabilities» need every class's probability, and this "
            "package's Python inference function gives only a label and its confidence; drop those options"
        )
    if model.all_scores == options.all_scores:
        return model
    return dataclasses.replace(model, all_scores=options.all_scores)


def _chip_folder(folder: str) -> str:
    """The folder chips are exported to, made if missing (a file there is an error, before any chip is cut)."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"«export_chips» {folder!r} is not a folder that can be made ({exc}); give another") from None
    return str(path.resolve())


def _extra_fields(features: object, mode: str) -> tuple[str, ...]:
    if features is None:
        return ("ImageID", "Error")
    return ("ItemID",) if mode == "items" else ()


def _warn_extent_misses(area: Extent, refs: Sequence[ImageRef], summary: Summary, features: object) -> None:
    """An extent that leaves nothing to classify is almost always a mistake (a swapped axis, another CRS), yet
    the run succeeds with an empty output: say so, and what was missed."""
    where = f"«extent» {area.xmin:.10g} {area.ymin:.10g} {area.xmax:.10g} {area.ymax:.10g}"
    crs = f"in {area.crs.to_string()}" if area.crs is not None else "in the first image's CRS"
    if summary.skipped and not summary.read:
        objects = f"feature of {describe(features)}" if features is not None else "image"  # type: ignore[arg-type]
        missed = f"every {objects}"
    elif features is not None and not select_images(refs, area):
        missed = images_label(refs)
    else:
        return
    warn(ExtentWarning(f"{where} ({crs}) misses {missed}, so nothing is classified; check the numbers and their CRS"))
