"""Image collections without a feature layer: a batch of images per work item, each image one chip.

The same functions classify a batch in this process and on a worker (a local process or a Dask worker), so an
image's row does not depend on where it ran. A work item names its images (paths or URIs) and their positions in
the run; the worker opens each image itself, reads it resampled to the model's chip size and sends back only
numbers and short texts (class index, confidence, coverage, error, footprint as WKB and CRS as WKT), which pickle
small. The whole-image resize is bilinear whatever the Resampling Method says (see
:mod:`geoclassify.modes.whole_images`).
"""

from __future__ import annotations

import contextvars
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import shapely
from rasterio.enums import Resampling

from ..core.chips import ChipSpec, whole_image_window
from ..core.predictions import BatchResult
from ..environment import DEFAULT_RESAMPLING
from ..errors import GeoclassifyError
from ..io.images import ImageRef
from ..io.mosaics import GridSource, mosaic_grid
from ..io.rasters import RasterSource
from ..model.runtime import Model, ModelRecipe

#: Images per work item when the model's batch is smaller: a worker's round trip is worth several images.
IMAGES_PER_WORK = 32


def open_image(
    ref: ImageRef, cell_size: float | None, resampling: Resampling = DEFAULT_RESAMPLING
) -> RasterSource | GridSource:
    """An image on its own grid, or warped with ``resampling`` onto a grid of ``cell_size`` when one is asked for."""
    source = RasterSource(ref.uri, label=ref.image_id)
    if cell_size is None:
        return source
    try:
        return GridSource([source], mosaic_grid([source], cell_size), resampling=resampling)
    except GeoclassifyError:
        source.close()
        raise


def footprint(source: RasterSource | GridSource) -> shapely.Geometry:
    """The image's outline in its own CRS, as a polygon through its four corners."""
    rows, cols = source.shape
    forward = source.transform
    return shapely.Polygon([forward @ (0, 0), forward @ (cols, 0), forward @ (cols, rows), forward @ (0, rows)])


@dataclass(frozen=True)
class ImageWork:
    """Images to classify (``refs``) and their positions in the run (``targets``)."""

    targets: np.ndarray
    refs: tuple[ImageRef, ...]


@dataclass(frozen=True)
class ImageBatch:
    """Per image of a work item: what :class:`BatchResult` holds, and the error text (None: read), the CRS as WKT
    and the footprint as WKB (None: no georeference, or not read)."""

    targets: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    coverage: np.ndarray
    errors: tuple[str | None, ...]
    crs: tuple[str | None, ...]
    footprints: tuple[bytes | None, ...]

    def __len__(self) -> int:
        return len(self.targets)

    def saved(self) -> BatchResult:
        """What the journal keeps: the images that were read. An image that failed is left out, so a resumed run
        tries it again (and says why it fails, if it still does)."""
        read = np.array([e is None for e in self.errors], dtype=bool)
        return BatchResult(self.targets[read], self.labels[read], self.scores[read], self.coverage[read])

    @classmethod
    def joined(cls, parts: Sequence[ImageBatch]) -> ImageBatch:
        """Several work items as one (a Dask partition's), in order."""
        arrays = [np.concatenate([getattr(p, name) for p in parts]) for name in ("targets", "labels", "scores")]
        coverage = np.concatenate([p.coverage for p in parts])
        texts = [tuple(t for p in parts for t in getattr(p, name)) for name in ("errors", "crs", "footprints")]
        return cls(*arrays, coverage, *texts)


@dataclass(frozen=True)
class ImageSetup:
    """What a worker needs before its first image batch: how to load the model, the chip, the cell size and the
    Resampling Method of a warp to it."""

    recipe: ModelRecipe
    spec: ChipSpec
    cell_size: float | None
    resampling: Resampling

    def open(self) -> ImageState:
        """Load the model with one inference thread: a worker's parallelism is its siblings."""
        return ImageState(self.recipe.load(threads=1), self.spec, self.cell_size, self.resampling)


@dataclass
class ImageState:
    """What a worker keeps between batches: the loaded model (images are opened per batch, each its own file)."""

    model: Model
    spec: ChipSpec
    cell_size: float | None
    resampling: Resampling

    def run(self, work: ImageWork) -> ImageBatch:
        return classify_image_batch(self.model, work, self.spec, self.cell_size, self.resampling)


def classify_works_here(
    model: Model,
    works: Iterable[ImageWork],
    spec: ChipSpec,
    cell_size: float | None,
    resampling: Resampling,
    record: Callable[[ImageBatch], None],
) -> None:
    """Classify work items in this process, in order. A model that runs batches side by side gets as many threads,
    each opening and reading its own work's images while another's are classified (reading a photo costs about
    as much as classifying it: serially, the cores took turns); a model that runs one batch at a time gets one."""
    if model.concurrency <= 1:
        for work in works:
            record(classify_image_batch(model, work, spec, cell_size, resampling))
        return
    threads = model.concurrency
    pending: deque[Future[ImageBatch]] = deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="geoclassify-images") as pool:
        try:
            for work in works:
                # Each in a copy of the caller's context: the run's settings and hooks hold in the thread too.
                task = contextvars.copy_context().run
                pending.append(pool.submit(task, classify_image_batch, model, work, spec, cell_size, resampling))
                while len(pending) > 2 * threads:
                    record(pending.popleft().result())
            while pending:
                record(pending.popleft().result())
        finally:
            for future in pending:
                future.cancel()


def image_works(targets: np.ndarray, refs: Sequence[ImageRef], batch_size: int) -> Iterator[ImageWork]:
    """The images at ``targets`` in runs of ``max(batch_size, IMAGES_PER_WORK)``, in order, made as taken."""
    step = max(batch_size, IMAGES_PER_WORK)
    for start in range(0, len(targets), step):
        part = targets[start : start + step]
        yield ImageWork(part, tuple(refs[int(t)] for t in part))


@dataclass
class _Read:
    pixels: np.ndarray
    valid: np.ndarray
    bands: tuple[int, ...]


def classify_image_batch(
    model: Model,
    work: ImageWork,
    spec: ChipSpec,
    cell_size: float | None,
    resampling: Resampling = DEFAULT_RESAMPLING,
) -> ImageBatch:
    """Read every image of ``work`` as one chip and classify them ``model.batch_size`` at a time; an image that
    cannot be read, or lacks the bands the model needs, gets an error text and the others go on."""
    n = len(work.refs)
    labels = np.full(n, -1, dtype=np.int64)
    scores = np.full((n, *model.score_shape), np.nan)
    coverage = np.zeros(n, dtype=np.float64)
    errors: list[str | None] = [None] * n
    crs: list[str | None] = [None] * n
    footprints: list[bytes | None] = [None] * n
    pending: dict[int, _Read] = {}

    def flush() -> None:
        # Images may resolve ExtractBands to different bands (names), so each group is classified on its own.
        for bands in dict.fromkeys(read.bands for read in pending.values()):
            group = [i for i, read in pending.items() if read.bands == bands and coverage[i] > 0]
            if not group:
                continue
            labels[group], scores[group] = model.classify(
                np.stack([pending[i].pixels for i in group]),
                np.stack([pending[i].valid for i in group]),
                bands,
                ids=[f"image {work.refs[i].image_id!r}" for i in group],
                owned=True,
            )
        pending.clear()

    for i, ref in enumerate(work.refs):
        try:
            with open_image(ref, cell_size, resampling) as source:
                bands = source.select_bands(model.definition.extract_bands)
                if model.band_count is not None and len(bands) != model.band_count:
                    raise GeoclassifyError(
                        f"the model takes {model.band_count} bands; image {ref.image_id!r} has "
                        f"{len(bands)} and the EMD has no ExtractBands to choose from them"
                    )
                model.prepare(bands)
                rows, cols = source.shape
                window = whole_image_window(rows, cols, spec)
                if window[2:] == (spec.height, spec.width):
                    pixels, valid = source.read_window(*window)
                else:
                    pixels, valid = source.read_resampled(*window, (spec.height, spec.width))
                coverage[i] = float(valid.mean())
                if source.crs is not None:
                    crs[i] = source.crs.to_wkt()
                    footprints[i] = shapely.to_wkb(footprint(source))
        except GeoclassifyError as exc:
            errors[i] = str(exc)
            continue
        pending[i] = _Read(pixels, valid, bands)
        if len(pending) >= model.batch_size * model.concurrency:  # a batch for each the model runs side by side
            flush()
    flush()
    return ImageBatch(np.asarray(work.targets), labels, scores, coverage, tuple(errors), tuple(crs), tuple(footprints))
