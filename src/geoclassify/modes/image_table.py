"""No feature layer: the run's rows, one per image, with its footprint when the image is georeferenced."""

from __future__ import annotations

from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
from rasterio.crs import CRS
from rasterio.enums import Resampling

from ..environment import Extent
from ..errors import UnreferencedImagesWarning
from ..fields import ResultFields
from ..hooks import tracking, warn
from ..io.images import ImageRef
from ..io.journal import Journal
from ..model.runtime import Model
from ..summary import Summary
from .ranking import DEFAULT_OPTIONS, ResultOptions, below_coverage, class_counts, option_columns
from .whole_images import ImageRunner, classify_whole_images, select_images, to_crs


def classify_images(
    model: Model,
    refs: Sequence[ImageRef],
    fields: ResultFields,
    area: Extent | None,
    cell_size: float | None,
    target_crs: CRS | None,
    resampling: Resampling,
    options: ResultOptions = DEFAULT_OPTIONS,
    prefix: str = "",
    *,
    runner: ImageRunner | None = None,
    journal: Journal | None = None,
) -> tuple[pd.DataFrame, Summary]:
    """Each image one object: a table (images without georeference) or a layer of footprints in ``target_crs``
    (default: the first georeferenced image's CRS). ``runner`` runs the images on workers (default: here);
    ``journal`` saves results as they come, by the image's position among those selected."""
    skipped = 0
    if area is not None:
        kept = select_images(refs, area)
        skipped = len(refs) - len(kept)
        refs = kept
    with tracking(len(refs)) as advance:
        results = classify_whole_images(model, refs, cell_size, advance, resampling, runner, journal)
    class_index = np.array([r.class_index for r in results], dtype=np.int64)
    coverage = np.array([r.coverage for r in results], dtype=np.float64).reshape(-1)
    low = below_coverage(class_index, coverage, options)
    if low is not None:
        class_index = np.where(low, -1, class_index)
    columns = option_columns(
        model.definition.classes,
        class_index,
        np.array([np.broadcast_to(r.confidence, model.score_shape) for r in results]).reshape(-1, *model.score_shape),
        coverage,
        fields,
        model.arguments.get("score_threshold"),
        options,
        model.multi_label,
        low,
        prefix=prefix,
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
        low_coverage=int(low.sum()) if low is not None else 0,
        per_class=class_counts(columns[fields.label], model.definition.classes, model.multi_label),
    )
    if not placed:
        return table, summary
    crs = target_crs or placed[0].crs
    geometry = [to_crs(r.footprint, r.crs, crs) if r.footprint is not None else None for r in results]
    unplaced = sum(g is None for g in geometry)
    if unplaced:
        warn(
            UnreferencedImagesWarning(
                f"{unplaced} of {len(results)} images have no georeference; their rows have no geometry"
            )
        )
    return gpd.GeoDataFrame(table, geometry=gpd.GeoSeries(geometry, crs=crs.to_wkt()), crs=crs.to_wkt()), summary
