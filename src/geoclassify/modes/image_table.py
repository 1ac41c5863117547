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
from ..fields import ResultFields, result_columns
from ..hooks import tracking, warn
from ..io.images import ImageRef
from ..model.runtime import Model
from ..summary import Summary
from .whole_images import classify_whole_images, select_images, to_crs


def classify_images(
    model: Model,
    refs: Sequence[ImageRef],
    fields: ResultFields,
    area: Extent | None,
    cell_size: float | None,
    target_crs: CRS | None,
    resampling: Resampling,
) -> tuple[pd.DataFrame, Summary]:
    """Each image one object: a table (images without georeference) or a layer of footprints in ``target_crs``
    (default: the first georeferenced image's CRS)."""
    skipped = 0
    if area is not None:
        kept = select_images(refs, area)
        skipped = len(refs) - len(kept)
        refs = kept
    with tracking(len(refs)) as advance:
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
        warn(
            UnreferencedImagesWarning(
                f"{unplaced} of {len(results)} images have no georeference; their rows have no geometry"
            )
        )
    return gpd.GeoDataFrame(table, geometry=gpd.GeoSeries(geometry, crs=crs.to_wkt()), crs=crs.to_wkt()), summary
