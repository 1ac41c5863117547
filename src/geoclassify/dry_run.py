"""``dry_run``: what a run would classify, and with what chips, before anything is classified.

A run that is wrong in its inputs (a ``where`` that keeps nothing, an extent in another CRS, chips far bigger or
smaller on the ground than the objects) is cheaper to see before hours of inference than after. The report reads
the features' geometries, opens the first image and the model's EMD, and does not load the model's runtime when the
EMD gives the chip size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import shapely

from .environment import Extent
from .io.feature_batches import FeatureBatches
from .io.images import ImageRef
from .io.rasters import RasterSource
from .model.packages import open_package
from .model.runtime import Model, load_model
from .modes.features import processing_crs

#: How many image names the report lists before it says "and N more".
SHOWN_IMAGES = 5


@dataclass(frozen=True)
class DryRunReport:
    """What a run would do: its objects, images, chip size in pixels and on the ground, and the warnings it gave.

    ``features`` is None when each image is one object; ``selected`` is how many features the extent keeps.
    """

    model: str
    images: tuple[str, ...]
    chip: tuple[int, int]
    cell_size: tuple[float, float] | None
    units: str | None
    features: int | None = None
    selected: int | None = None
    empty: int = 0
    warnings: tuple[str, ...] = ()
    #: The first image's height and width in pixels (what a whole image is resized from).
    first_image: tuple[int, int] | None = None

    @property
    def ground_size(self) -> tuple[float, float] | None:
        """The chip's height and width on the ground, in the raster CRS's units."""
        if self.cell_size is None:
            return None
        return self.chip[0] * self.cell_size[1], self.chip[1] * self.cell_size[0]

    def but(self, **changes: object) -> DryRunReport:
        return replace(self, **changes)  # type: ignore[arg-type]

    def line(self) -> str:
        """The report as the CLI prints it: one line per fact, nothing classified."""
        shown = ", ".join(self.images[:SHOWN_IMAGES])
        more = f" and {len(self.images) - SHOWN_IMAGES} more" if len(self.images) > SHOWN_IMAGES else ""
        lines = ["dry run, nothing classified"]
        if self.features is None:
            lines.append(f"objects: {len(self.images)} images, each one object")
        else:
            kept = f", {self.selected} of them in the extent" if self.selected is not None else ""
            empty = f", {self.empty} with empty geometry" if self.empty else ""
            lines.append(f"features: {self.features}{kept}{empty}")
        lines.append(f"images: {len(self.images)} ({shown}{more})")
        lines.append(self._chip_line())
        lines.append(f"model: {self.model}")
        lines.append(f"warnings: {len(self.warnings)}")
        lines.extend(f"  {text}" for text in self.warnings)
        return "\n".join(lines)

    def _chip_line(self) -> str:
        unit = f" {self.units}" if self.units else ""
        pixels = f"{self.chip[1]} x {self.chip[0]} px"
        if self.features is None and self.first_image is not None:
            # Each image is one chip: the whole image, resized; its size on the ground is the image's.
            height, width = self.first_image
            line = f"chips: each whole image resized to {pixels} (the first is {width} x {height} px"
            if self.cell_size is not None:
                line += f" = {width * self.cell_size[0]:.6g} x {height * self.cell_size[1]:.6g}{unit} on the ground"
            return line + ")"
        ground = self.ground_size
        if ground is None or self.cell_size is None:
            return f"chips: {pixels} (the raster has no georeference, so no size on the ground)"
        return (
            f"chips: {pixels} = {ground[1]:.6g} x {ground[0]:.6g}{unit} on the ground "
            f"(cell size {self.cell_size[0]:.6g}{unit})"
        )


def dry_run_report(
    request_model: str,
    model: Model | None,
    arguments: dict[str, str],
    trust_code: bool,
    refs: Sequence[ImageRef],
    source: FeatureBatches | None,
    area: Extent | None,
    cell_size: float | None,
) -> DryRunReport:
    """Plan the run as far as knowing its objects and chips: the features' geometries are read (to apply the
    extent and count empty ones), the first image is opened for its cell size; the model's runtime is loaded only
    when neither a loaded ``model`` nor the EMD gives the chip size (it then comes from the model file)."""
    chip = _chip_size(request_model, model, arguments, trust_code)
    with RasterSource(refs[0].uri, label=refs[0].image_id) as first:
        crs = first.crs
        shape = first.shape
        res = (cell_size, cell_size) if cell_size is not None else tuple(abs(v) for v in first.cell_size)
        units = _units(crs) if crs is not None else None
        if crs is None and cell_size is None:
            res = None  # type: ignore[assignment]  # pixels with no size on the ground
    report = DryRunReport(
        model=request_model,
        images=tuple(ref.image_id for ref in refs),
        chip=chip,
        cell_size=res,  # type: ignore[arg-type]
        units=units,
        first_image=(int(shape[0]), int(shape[1])),
    )
    if source is None:
        return report
    if area is not None:
        source.reach = area.polygon_in(source.crs, processing_crs(refs))
    empty = selected = 0
    for batch in source:
        selected += len(batch)
        empty += int(shapely.is_empty(batch.geometry.array).sum() + batch.geometry.isna().sum())
    return report.but(features=source.count, selected=selected if area is not None else None, empty=empty)


def _chip_size(request_model: str, model: Model | None, arguments: dict[str, str], trust_code: bool) -> tuple[int, int]:
    if model is not None:
        return model.chip_height, model.chip_width
    definition = open_package(request_model).definition
    if definition.image_height is not None and definition.image_width is not None:
        return definition.image_height, definition.image_width
    loaded = load_model(request_model, arguments, trust_code=trust_code)
    return loaded.chip_height, loaded.chip_width


def _units(crs: object) -> str | None:
    """The CRS's linear unit as a short word (m, ft, degree)."""
    if getattr(crs, "is_geographic", False):
        return "degrees"
    factor = getattr(crs, "linear_units", None)
    return {"metre": "m", "meter": "m", "foot": "ft", "US survey foot": "ft (US)"}.get(str(factor), factor or None)
