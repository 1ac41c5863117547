"""A model ready to classify chips: package + runtime + checked arguments, agreeing with its EMD.

Every disagreement between the EMD and the model file (chip size, band count, class count) is found
here, at load time, before a single raster block is read.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from ..errors import DuplicateClassValueWarning, InferenceError, ModelMismatchError
from .arguments import ArgumentSpec, resolve_arguments
from .backends import Backend, ChipBackend, create_backend, to_probabilities
from .device import CPU, Device
from .emd import ModelDefinition, parse_emd
from .packages import ModelPackage, open_package
from .preprocess import Preprocessor
from .tta import transforms

#: Batch size when neither the EMD's BatchSize nor a batch_size argument gives one.
DEFAULT_BATCH_SIZE = 16
#: Multi-label models' argument, as arcgis.learn's FeatureClassifier offers it.
SCORE_THRESHOLD = ArgumentSpec(
    "score_threshold",
    "float",
    0.5,
    "multi-label: a class is in the label when its probability reaches this",
    minimum=0.0,
    maximum=1.0,
)


@dataclass
class Model:
    """What the pipeline needs from a model: chip geometry, bands, and chips to class index and confidence.

    ``definition`` is the EMD as the run uses it: a Python inference function may override chip size, bands,
    crop mode, blackening and batch size through ``getConfiguration``, as in ArcGIS.
    """

    package: ModelPackage
    backend: Backend | ChipBackend
    arguments: dict[str, Any]
    specs: list[ArgumentSpec] = field(repr=False)
    chip_height: int = 0
    chip_width: int = 0
    definition: ModelDefinition = field(default=None, repr=False)  # type: ignore[assignment]
    trust_code: bool = False
    device: Device = CPU
    #: Hand back every class's probability, not only the winner's (``top_k`` > 1 or ``probabilities``).
    all_scores: bool = False
    #: Write every chip it classifies to this folder (``export_chips``), as it receives them.
    chip_folder: str | None = None
    _preprocessors: dict[tuple[int, ...], Callable[..., np.ndarray]] = field(default_factory=dict, repr=False)
    _threads: ThreadPoolExecutor | None = field(default=None, repr=False)
    #: Several threads may classify at once (image collections in this process): one pool is made, not one each.
    _threads_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.definition is None:
            self.definition = self.package.definition
        # Asked once: isinstance against a Protocol walks its attributes, tens of microseconds a batch.
        self._by_chip = isinstance(self.backend, ChipBackend)

    @property
    def batch_size(self) -> int:
        return int(self.arguments.get("batch_size") or self.definition.batch_size or DEFAULT_BATCH_SIZE)

    @property
    def multi_label(self) -> bool:
        """A multi-label model answers with every class's probability; labels are those reaching score_threshold."""
        return self.definition.multi_label and not self._by_chip

    @property
    def score_shape(self) -> tuple[int, ...]:
        """Shape of one chip's confidence: a number, or (multi-label) one probability per class."""
        return (len(self.definition.classes),) if self.multi_label or self.keeps_probabilities else ()

    @property
    def keeps_probabilities(self) -> bool:
        """Whether ``classify`` answers with every class's probability for a single-label model (a Python
        inference function gives only its label and confidence)."""
        return self.all_scores and not self._by_chip

    @property
    def band_count(self) -> int | None:
        """Chip channels: ExtractBands' length, else what the model's input declares."""
        if self.definition.extract_bands is not None:
            return len(self.definition.extract_bands)
        shape = getattr(self.backend, "input_shape", None)
        return shape[1] if shape else None

    def recipe(self) -> ModelRecipe:
        """How to load this same model in another process (runtimes' sessions cannot be pickled)."""
        if not self.package.origin:
            raise InferenceError(
                f"{self.package.source}: this model was built in memory, so worker processes cannot "
                "load it; give the package's path instead"
            )
        return ModelRecipe(
            self.package.origin, dict(self.arguments), self.trust_code, self.device, self.all_scores, self.chip_folder
        )

    def prepare(self, band_indexes: tuple[int, ...]) -> None:
        """Check, before any pixel is read, that chips of these raster bands can be fed to the model."""
        if not self._by_chip and band_indexes not in self._preprocessors:
            own = getattr(self.backend, "preprocessor", None)  # a dialect with its own chip preparation (Keras)
            self._preprocessors[band_indexes] = (
                own(self.definition, band_indexes, self.arguments)
                if own is not None
                else Preprocessor.for_model(self.definition, band_indexes)
            )

    def classify(
        self,
        chips: np.ndarray,
        valid: np.ndarray,
        band_indexes: tuple[int, ...],
        ids: Sequence[object] = (),
        owned: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Class index (position in Classes) and confidence (multi-label: every probability) for raw chips (bands
        from ``band_indexes``, invalid pixels 0); ``ids`` name the chips in error messages; ``owned`` lets
        normalisation overwrite ``chips``."""
        if self.chip_folder is not None:
            from .chip_export import write_chips  # only a run that exports chips needs it

            write_chips(self.chip_folder, chips, ids)
        try:
            if self._by_chip:
                # Inference functions were written for ArcGIS, which hands them float32 pixels.
                chips = chips.astype(np.float32, copy=False)
                return self.backend.classify_chips(chips, valid, self.batch_size)  # type: ignore[union-attr]
            self.prepare(band_indexes)
            preprocess = self._preprocessors[band_indexes]
            probs = self.predict(chips, lambda part: preprocess(part, in_place=owned))
            keep = self.multi_label or self.keeps_probabilities
            return probs.argmax(axis=1), probs if keep else probs.max(axis=1)
        except InferenceError as exc:
            if not ids:
                raise
            rows = getattr(exc, "rows", None)
            named = f": {describe_ids([ids[r] for r in rows])}" if rows is not None and len(ids) == len(chips) else ""
            raise InferenceError(f"{exc}{named}\nThe batch held {describe_ids(ids)}.") from None

    def predict(self, batch: np.ndarray, prepare: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        """Probabilities (batch, classes), with TTA when asked, for a stack of *normalised* chips, or of raw ones
        that ``prepare`` normalises (call by call, see :meth:`_run`)."""
        if self.arguments.get("test_time_augmentation"):
            if prepare is not None:  # the views are of normalised chips, normalised once
                batch = prepare(batch)
            square = self.chip_height == self.chip_width
            views = transforms(self.definition.image_space_used, square)
            probs = sum(self._predict_plain(view(batch)) for view in views)
            return probs / len(views)
        return self._predict_plain(batch, prepare)

    def _predict_plain(
        self, batch: np.ndarray, prepare: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> np.ndarray:
        """``prepare`` normalises raw chips, call by call (see :meth:`_run`); without it ``batch`` is normalised."""
        step = self.batch_size
        starts = range(0, len(batch), step)
        chunks = (batch[start : start + step] for start in starts)
        run = partial(self._run, prepare=prepare)
        pool = self._pool() if len(starts) > 1 else None
        # A runtime that runs one thread per call runs batches side by side instead (see ``concurrency``).
        results = pool.map(run, chunks) if pool is not None else map(run, chunks)
        parts = []
        for start, scores in zip(starts, results, strict=True):
            self._check_classes(scores.shape[1])
            self._check_finite(scores, start)
            output = self.definition.model_output or getattr(self.backend, "model_output", None)
            parts.append(to_probabilities(scores, output, self.definition.multi_label))
        return np.concatenate(parts) if parts else np.zeros((0, len(self.definition.classes)))

    def _run(self, chips: np.ndarray, prepare: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
        """Scores of one batch, in calls of the runtime's size (its ``pixels_per_call``: on the CPU, four 224-px
        chips, whose activations then stay nearer the core), each call's raw chips normalised just before it, while
        they are in the core's caches too."""
        pixels = getattr(self._runtime, "pixels_per_call", None)
        size = max(1, pixels // (chips.shape[2] * chips.shape[3])) if pixels and chips.ndim == 4 else len(chips)
        predict = self.backend.predict  # type: ignore[union-attr]
        parts = [chips[start : start + size] for start in range(0, len(chips), size)] if size < len(chips) else [chips]
        scores = [predict(prepare(part) if prepare is not None else part) for part in parts]
        return scores[0] if len(scores) == 1 else np.concatenate(scores)

    @property
    def _runtime(self) -> object:
        """The backend whose runtime runs the calls: Keras runs through its ONNX conversion."""
        return getattr(self.backend, "onnx", self.backend)

    @property
    def concurrency(self) -> int:
        """Batches the runtime runs side by side well: more than one for a session with one thread per call."""
        return int(getattr(self._runtime, "concurrency", 1))

    def _pool(self) -> ThreadPoolExecutor | None:
        if self.concurrency <= 1:
            return None
        with self._threads_lock:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self.concurrency, thread_name_prefix="geoclassify-predict")
        return self._threads

    def _check_finite(self, scores: np.ndarray, start: int) -> None:
        """NaN or infinite scores have no argmax that means anything: the model failed on those chips, and they
        must not leave as labels. The error carries the rows (of the whole batch) so the caller can name them."""
        finite = np.isfinite(scores)
        if finite.all():
            return
        bad = np.flatnonzero(~finite.all(axis=1))
        error = InferenceError(
            f"{self.package.source}: the model failed: it returned NaN or infinite scores, which name no class (check "
            f"the model and its normalisation, NormalizationStats and DataRange), for {len(bad)} of {len(scores)} chips"
        )
        error.rows = (bad + start).tolist()  # type: ignore[attr-defined]
        raise error

    def _check_classes(self, count: int) -> None:
        expected = len(self.definition.classes)
        if count != expected:
            raise InferenceError(
                f"{self.package.source}: the model returns {count} scores per chip but the EMD lists "
                f"{expected} Classes; the class list must match the model's outputs, in order"
            )


@dataclass(frozen=True)
class ModelRecipe:
    """A picklable way to load a model again: where it came from, its arguments, whether its code is trusted, and
    the processor it runs on (so worker processes and Dask workers use the GPU the run was given)."""

    origin: str
    arguments: dict[str, Any]
    trust_code: bool = False
    device: Device = CPU
    all_scores: bool = False
    chip_folder: str | None = None

    def load(self, threads: int | None = None) -> Model:
        with warnings.catch_warnings():
            # The process that made the recipe loaded the same package and warned already.
            warnings.simplefilter("ignore", DuplicateClassValueWarning)
            model = load_model(
                self.origin, self.arguments, threads=threads, trust_code=self.trust_code, device=self.device
            )
        model.all_scores, model.chip_folder = self.all_scores, self.chip_folder
        return model


def describe_ids(ids: Sequence[object], limit: int = 20) -> str:
    """``features 3, 4, 9`` (at most ``limit`` named)."""
    shown = ", ".join(str(i) for i in list(ids)[:limit])
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return f"{shown}{more}"


def load_model(
    model: str | os.PathLike[str] | ModelPackage,
    arguments: Mapping[str, Any] | None = None,
    threads: int | None = None,
    trust_code: bool = False,
    device: Device = CPU,
) -> Model:
    """Open a model package, load its runtime on ``device``, and check that model and EMD agree.

    A package with a Python inference function runs its code, so it is refused unless ``trust_code``.
    """
    package = model if isinstance(model, ModelPackage) else open_package(model)
    backend = create_backend(package, threads=threads, trust_code=trust_code, device=device)
    if isinstance(backend, ChipBackend):
        specs = backend.argument_specs()
        values = resolve_arguments(specs, arguments)
        overrides = backend.configure(values)
        definition = parse_emd({**package.definition.raw, **overrides}, package.source)
        if definition.image_height is None or definition.image_width is None:
            raise ModelMismatchError(
                f"{package.source}: no chip size: neither the EMD (ImageHeight/ImageWidth) nor the inference "
                "function's getConfiguration (ty/tx) gives one"
            )
        return Model(
            package,
            backend,
            values,
            specs,
            definition.image_height,
            definition.image_width,
            definition,
            trust_code,
            device=device,
        )
    definition = package.definition
    height, width = _chip_size(package, backend)
    _check_bands(package, backend)
    classes = (
        backend.output_classes if backend.output_classes is not None else _dry_run(package, backend, height, width)
    )
    if classes is not None and classes != len(definition.classes):
        raise ModelMismatchError(
            f"{package.source}: the model outputs {classes} classes but the EMD lists "
            f"{len(definition.classes)} Classes; fix Classes so it matches the model's outputs, in order",
            "Classes",
        )
    specs = backend.argument_specs(definition.batch_size or DEFAULT_BATCH_SIZE, definition.test_time_augmentation)
    if definition.multi_label:
        specs.append(SCORE_THRESHOLD)
    values = resolve_arguments(specs, arguments)
    return Model(package, backend, values, specs, height, width, trust_code=trust_code, device=device)


def _chip_size(package: ModelPackage, backend: Backend) -> tuple[int, int]:
    definition = package.definition
    _, _, model_h, model_w = backend.input_shape
    for key, emd_value, model_value in (
        ("ImageHeight", definition.image_height, model_h),
        ("ImageWidth", definition.image_width, model_w),
    ):
        if emd_value is not None and model_value is not None and emd_value != model_value:
            raise ModelMismatchError(
                f"{package.source}: {key} is {emd_value} but the model takes chips of "
                f"{model_h}x{model_w} pixels (height x width); fix {key} in the EMD",
                key,
            )
    height = definition.image_height or model_h
    width = definition.image_width or model_w
    if height is None or width is None:
        raise ModelMismatchError(
            f"{package.source}: no chip size: the EMD lacks ImageHeight/ImageWidth and the model's input "
            "size is open; add ImageHeight and ImageWidth to the EMD",
            "ImageHeight",
        )
    return height, width


def _dry_run(package: ModelPackage, backend: Backend, height: int, width: int) -> int | None:
    """Run one blank chip through a model that does not declare its shapes, to learn its class count now
    rather than after the first raster block."""
    bands = package.definition.extract_bands
    channels = len(bands) if bands is not None else backend.input_shape[1]
    if channels is None:
        return None
    try:
        scores = backend.predict(np.zeros((1, channels, height, width), dtype=np.float32))
    except InferenceError as exc:
        raise ModelMismatchError(
            f"{package.source}: the model does not run on one {channels} x {height} x {width} chip (bands x height x "
            f"width, from the EMD): {exc}"
        ) from None
    return int(scores.shape[1])


def _check_bands(package: ModelPackage, backend: Backend) -> None:
    bands: Sequence[int | str] | None = package.definition.extract_bands
    model_c = backend.input_shape[1]
    if bands is not None and model_c is not None and len(bands) != model_c:
        raise ModelMismatchError(
            f"{package.source}: ExtractBands selects {len(bands)} bands but the model takes {model_c}; "
            "fix ExtractBands in the EMD",
            "ExtractBands",
        )
