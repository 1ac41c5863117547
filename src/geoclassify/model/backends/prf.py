"""Host for Esri's Python raster function (PRF) API for object classification: the EMD's ``InferenceFunction``.

ArcGIS loads the ``.py`` an EMD names, takes the class named like the module, and talks to it through
``initialize``, ``getParameterInfo``, ``getConfiguration`` and ``vectorize``. Two forms are in use and both run
here unchanged:

- the **wrapper** (Esri's ``ObjectClassifier``/``ArcGISObjectClassifier``): ``initialize(**kwargs)``,
  ``getParameterInfo()``, and ``vectorize`` returning ``{"output_vectors": <FeatureSet JSON>}``;
- the **child** it delegates to (``ChildObjectDetector``): ``initialize(model, model_as_file)``,
  ``getParameterInfo(required_parameters)`` and ``vectorize`` returning ``(polygons, scores, labels)``. For this
  form geoclassify plays Esri's wrapper itself.

The function is the package's own code, so nothing of it is imported unless the user says they trust it. When it
fails, the user sees their own traceback (only the frames in the package's files), never Esri's "returned nothing".
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
import sys
import tempfile
import threading
import traceback
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ...errors import (
    GeoclassifyError,
    InferenceError,
    ModelPackageError,
    UnsupportedModelError,
    UntrustedCodeError,
)
from ..arguments import ArgumentSpec
from ..device import CPU, Device, torch_device
from ..packages import ModelPackage
from .dialects import arcgis_learn_export
from .package_code import OutsidePackageImport, PackageScope, package_code, public_name, release
from .prf_parameters import argument_spec, emd_overrides, standard_parameters

__all__ = ["PythonFunctionBackend"]

#: How an EMD names a function installed with ArcGIS Pro rather than shipped in the package.
BUNDLED_PREFIX = "[functions]"


class PythonFunctionBackend:
    """Runs an Esri Python inference function on raw chips; it normalises them and names their classes itself."""

    framework = "Python inference function"

    def __init__(self, package: ModelPackage, trust_code: bool = False, device: Device = CPU) -> None:
        self.package = package
        self.device = device
        self.path = _function_path(package)
        if not trust_code:
            raise UntrustedCodeError(
                f"{package.source}: the model's InferenceFunction {self.path.name} is Python code from the package "
                f"({self.path}); geoclassify runs it only if you trust where the package came from. If you do, "
                "pass «trust_code»."
            )
        self.folder = self.path.parent
        #: One call into this function at a time (Esri's are not written to be thread-safe); other backends, and
        #: other loads of this package, run side by side.
        self._lock = threading.RLock()
        self._roots = tuple({str(self.folder), str(package.root.resolve())})
        self._classes: dict[str, int] = {}
        for position, info in enumerate(package.definition.classes):
            self._classes.setdefault(info.name, position)
        self._emd_file, temporary = _emd_file(package)
        self._scope = PackageScope(self.folder, package.boundary, _identifier(self.path.stem))
        weakref.finalize(self, release, self._scope.namespace, temporary)
        module = self._import()
        self.class_name, cls = _pick_class(module, self.path)
        self.instance = self._call(cls, "__init__")
        self.form = "child" if _is_child(self.instance, self.class_name) else "wrapper"
        if not callable(getattr(self.instance, "vectorize", None)):
            raise ModelPackageError(
                f"{self.path}: class {self.class_name!r} has no vectorize(); an object classification function "
                "needs vectorize (and usually getParameterInfo and getConfiguration)"
            )
        self._parameters: list[Mapping[str, Any]] | None = None
        self._initialize()

    # -- loading ------------------------------------------------------------------------------------------------

    def _import(self) -> ModuleType:
        """Import the file as a module of the backend's own namespace (see ``package_imports``), so two packages'
        functions and helpers never replace each other."""
        try:
            module = self._scope.function_module(self.path)
        except ImportError as exc:
            raise ModelPackageError(f"{self.package.source}: {exc}") from None
        try:
            with self._lock, package_code(self._scope):
                module.__spec__.loader.exec_module(module)
        except (Exception, SystemExit) as exc:
            raise ModelPackageError(
                f"{self.package.source}: importing the inference function {self.path.name} failed"
                f"{_missing_module_hint(exc)}:\n{self._own_traceback(exc)}"
            ) from exc
        return module

    def _initialize(self) -> None:
        """Esri's calls: the wrapper gets keywords (model, and device: the GPU id or -1), the child (model,
        model_as_file), after its GPU is chosen as Esri's wrapper chooses it (spec §3.2)."""
        if not callable(getattr(self.instance, "initialize", None)):
            return
        if self.form == "child":
            if self.device.gpu:
                _select_gpu(self.device)
            self._call(self.instance.initialize, "initialize", args=(self._emd_file, True))
        else:
            self._call(
                self.instance.initialize,
                "initialize",
                kwargs={"model": self._emd_file, "device": self.device.esri_device},
            )

    # -- arguments and configuration ----------------------------------------------------------------------------

    def argument_specs(self) -> list[ArgumentSpec]:
        """The function's getParameterInfo without what ArcGIS fills itself (rasters, model, device)."""
        specs = []
        for parameter in self._parameter_info():
            spec = argument_spec(parameter, self.path)
            if spec is not None:
                specs.append(spec)
        return specs

    def _parameter_info(self) -> list[Mapping[str, Any]]:
        if self._parameters is None:
            method = getattr(self.instance, "getParameterInfo", None)
            if not callable(method):
                parameters: Any = []
            elif self.form == "child":
                parameters = self._call(method, "getParameterInfo", args=(self._standard_parameters(),))
            else:
                parameters = self._call(method, "getParameterInfo")
            if not isinstance(parameters, Sequence) or isinstance(parameters, str):
                raise ModelPackageError(
                    f"{self.path}: {self.class_name}.getParameterInfo() returned {type(parameters).__name__}; "
                    "it must return a list of parameter dicts"
                )
            self._parameters = [p for p in parameters if isinstance(p, Mapping)]
        return self._parameters

    def _standard_parameters(self) -> list[dict[str, Any]]:
        return standard_parameters(self.package.definition.batch_size is None)

    def configure(self, arguments: dict[str, object]) -> dict[str, object]:
        """Hand the function its scalars through getConfiguration (it keeps them, as in ArcGIS) and return the EMD
        keys its answer overrides: chip size, bands, crop mode, blackening, batch size."""
        method = getattr(self.instance, "getConfiguration", None)
        if not callable(method):
            return {}
        scalars = {name: value for name, value in arguments.items() if value is not None}
        configuration = self._call(method, "getConfiguration", kwargs=scalars)
        if configuration is None:
            return {}
        if not isinstance(configuration, Mapping):
            raise ModelPackageError(
                f"{self.path}: {self.class_name}.getConfiguration() returned {type(configuration).__name__}; "
                "it must return a dict (tx, ty, extractBands, ...)"
            )
        return emd_overrides(configuration, self.path, self.class_name)

    # -- classification -----------------------------------------------------------------------------------------

    def classify_chips(self, chips: np.ndarray, valid: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Call vectorize per batch, as ArcGIS does: a tuple of [bands, ty, tx] chips and one of uint8 masks."""
        count = len(chips)
        indexes = np.empty(count, dtype=np.int64)
        confidences = np.empty(count, dtype=np.float64)
        step = max(int(batch_size), 1)
        for start in range(0, count, step):
            stop = min(start + step, count)
            block = chips[start:stop]
            masks = np.repeat(valid[start:stop, None], block.shape[1], axis=1).astype(np.uint8)
            labels, scores = self._vectorize(
                {"rasters_pixels": tuple(block), "rasters_mask": tuple(masks)}, stop - start
            )
            indexes[start:stop] = [self._class_index(label) for label in labels]
            confidences[start:stop] = scores
        return indexes, confidences

    def _vectorize(self, pixel_blocks: dict[str, Any], count: int) -> tuple[list[str], list[float]]:
        result = self._call(self.instance.vectorize, "vectorize", kwargs=pixel_blocks, error=InferenceError)
        if isinstance(result, Mapping):
            labels, scores = self._read_feature_set(result)
        elif isinstance(result, tuple | list) and len(result) == 3:
            labels, scores = self._read_child_result(result)
        else:
            expected = (
                "(polygons, scores, labels)"
                if self.form == "child"
                else '{"output_vectors": <FeatureSet JSON>} (or a child\'s (polygons, scores, labels))'
            )
            raise InferenceError(
                f"{self.path.name}: {self.class_name}.vectorize() returned {_shown(result)}; it must return {expected}"
            )
        if len(labels) != count:
            raise InferenceError(
                f"{self.path.name}: {self.class_name}.vectorize() returned {len(labels)} results for a batch of "
                f"{count} chips; it must return one per chip, in the order of rasters_pixels"
            )
        return labels, scores

    def _read_child_result(self, result: Sequence[Any]) -> tuple[list[str], list[float]]:
        """A child's ``(polygons, scores, labels)``; the polygons are chip corners, which features replace."""
        _, scores, labels = result
        try:
            names, values = [str(label) for label in labels], list(scores)
        except TypeError:
            raise InferenceError(
                f"{self.path.name}: {self.class_name}.vectorize() must return (polygons, scores, labels) with one "
                f"score and one label per chip; got scores {_shown(scores)} and labels {_shown(labels)}"
            ) from None
        if len(values) != len(names):
            raise InferenceError(
                f"{self.path.name}: {self.class_name}.vectorize() returned {len(names)} labels but {len(values)} "
                "scores; it must return one of each per chip"
            )
        return names, [self._confidence(value) for value in values]

    def _read_feature_set(self, result: Mapping[str, Any]) -> tuple[list[str], list[float]]:
        """Esri's wrapper output: ``{"output_vectors": FeatureSet JSON}``, one feature per chip, in order.

        Tolerant as ArcGIS is: Confidence often arrives as a string, the attributes say ``OID`` where the fields
        say ``FID``, and the label is ``Label`` or ``Classname`` (any case).
        """
        try:
            vectors = result["output_vectors"]
            feature_set = json.loads(vectors) if isinstance(vectors, str | bytes) else vectors
            features = feature_set["features"]
            attributes = [{str(k).lower(): v for k, v in feature["attributes"].items()} for feature in features]
        except (TypeError, KeyError, AttributeError, json.JSONDecodeError) as exc:
            raise InferenceError(
                f"{self.path.name}: {self.class_name}.vectorize() did not return "
                f'{{"output_vectors": <FeatureSet JSON with features[].attributes>}} ({type(exc).__name__}: {exc})'
            ) from None
        labels, scores = [], []
        for number, values in enumerate(attributes, 1):
            label = next((values[k] for k in ("label", "classname", "class") if values.get(k) is not None), None)
            if label is None:
                raise InferenceError(
                    f"{self.path.name}: feature {number} of the FeatureSet that {self.class_name}.vectorize() "
                    f"returned has no Label or Classname attribute (it has: {', '.join(values) or 'none'})"
                )
            labels.append(str(label))
            scores.append(self._confidence(values.get("confidence")))
        return labels, scores

    def _confidence(self, value: Any) -> float:
        """A returned confidence as a number; none given stays empty (NaN). A NaN or infinite one means the model
        behind the function failed on that chip, so its label is not one to keep."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return float("nan")
        try:
            number = float(value)
        except (TypeError, ValueError):
            multi = " (';'-joined multi-label confidences are not supported)" if ";" in str(value) else ""
            raise InferenceError(
                f"{self.path.name}: {self.class_name}.vectorize() returned the confidence {value!r}, which is not "
                f"a number{multi}"
            ) from None
        if not math.isfinite(number):
            raise InferenceError(
                f"{self.package.source}: {self.path.name}: {self.class_name}.vectorize() returned the confidence "
                f"{value!r}: NaN or infinite scores are a model failure, not a class; check the model and how the "
                "function normalises its chips"
            )
        return number

    def _class_index(self, label: str) -> int:
        """Position in the EMD's Classes, found by Name: the function answers with names, geoclassify with both."""
        position = self._classes.get(label)
        if position is None:
            multi = (
                "; ';'-joined multi-label answers (MultiLabeled_Tiles) are not supported, one label per feature is"
                if ";" in label
                else ""
            )
            raise InferenceError(
                f"{self.path.name}: {self.class_name}.vectorize() returned the label {label!r}, which is not among "
                f"the EMD's Classes ({', '.join(self._classes) or 'none'}); Classes must name every label the "
                f"function returns{multi}"
            )
        return position

    # -- calling the package's code -----------------------------------------------------------------------------

    def _call(
        self,
        function: Any,
        method: str,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        error: type[GeoclassifyError] = ModelPackageError,
    ) -> Any:
        """Call into the package; its failure becomes ``error`` carrying its own traceback."""
        try:
            with self._lock, package_code(self._scope):
                return function(*args, **(kwargs or {}))
        except (Exception, SystemExit) as exc:
            raise error(
                f"{self.package.source}: the inference function {self.path.name} failed in "
                f"{self.class_name}.{method}():\n"
                f"{self._own_traceback(exc)}"
            ) from exc

    def _own_traceback(self, exc: BaseException) -> str:
        """Where the user's code failed: the frames in the package's files (paths relative to the package), then
        the error line. geoclassify's own frames would only hide them."""
        frames = []
        for frame in traceback.extract_tb(exc.__traceback__):
            relative = self._package_relative(frame.filename)
            if relative is not None:
                _ = frame.line  # read the source line while the real path is still set
                frame.filename = relative
                frames.append(frame)
        header = "  in the package's code (innermost last):\n" if frames else ""
        lines = traceback.format_list(frames) + traceback.format_exception_only(type(exc), exc)
        return header + "".join(lines).rstrip()

    def _package_relative(self, filename: str) -> str | None:
        real = os.path.realpath(filename)
        for root in self._roots:
            if real.startswith(root + os.sep):
                return os.path.relpath(real, root)
        return None

    def describe(self) -> dict[str, object]:
        return {
            "runtime": "Esri Python inference function",
            "file": str(self.path),
            "class": self.class_name,
            "form": self.form,
        }


# -- helpers --------------------------------------------------------------------------------------------------


def _function_path(package: ModelPackage) -> Path:
    """The function's file beside the EMD; a function installed with ArcGIS Pro cannot be, so it is refused."""
    given = str(package.definition.inference_function or "").strip()
    if given.lower().startswith(BUNDLED_PREFIX):
        raise UnsupportedModelError(_bundled_message(package, given))
    return package.resolve("InferenceFunction")


def _bundled_message(package: ModelPackage, given: str) -> str:
    return (
        f"{package.source}: InferenceFunction {given!r} points at the copy of Esri's function bundled inside "
        "ArcGIS Pro, not at a file in this package. It needs ArcGIS's own function and arcgis.learn (with arcpy), "
        "which geoclassify cannot run. Export the model to ONNX instead, once, where arcgis.learn is installed: "
        + arcgis_learn_export(package.definition)
    )


def _emd_file(package: ModelPackage) -> tuple[str, str | None]:
    """The EMD path handed to ``initialize`` (Esri's functions open it themselves), and a temporary file to delete.

    An inline EMD has no file, so one is written; its working folder may hold unrelated .emd files.
    """
    origin = package.origin
    inline = origin.lstrip().startswith("{") or not origin
    if not inline:
        if origin.lower().endswith(".emd") and Path(origin).is_file():
            return origin, None
        emds = sorted(package.root.glob("*.emd"))
        if len(emds) == 1:
            return str(emds[0]), None
    handle, name = tempfile.mkstemp(prefix="geoclassify-", suffix=".emd")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(dict(package.definition.raw), out)
    return name, name


def _missing_module_hint(exc: BaseException) -> str:
    if isinstance(exc, OutsidePackageImport):
        return f" because it imports {exc.name!r}: {exc}"
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return ""
    name = public_name(exc.name)
    if name != exc.name:
        return f" because the package has no module {name!r}"
    top = name.partition(".")[0]
    if top in ("arcpy", "arcgis"):
        return f" because it imports {top}, which exists only inside ArcGIS; run it there, or export the model to ONNX"
    return f" because it imports {name!r}, which is not installed in this Python ({sys.executable})"


def _pick_class(module: ModuleType, path: Path) -> tuple[str, type]:
    """ArcGIS's rule: the class named like the module; else the child's conventional name."""
    for name in (path.stem, "ChildObjectDetector"):
        candidate = getattr(module, name, None)
        if inspect.isclass(candidate):
            return name, candidate
    found = sorted(n for n, v in vars(module).items() if inspect.isclass(v) and v.__module__ == module.__name__)
    raise ModelPackageError(
        f"{path}: no class named {path.stem!r} (like the module, as ArcGIS expects) or 'ChildObjectDetector'; "
        f"the file defines: {', '.join(found) or 'no class'}"
    )


def _is_child(instance: object, class_name: str) -> bool:
    """A child's getParameterInfo takes the standard parameter list; a wrapper's takes nothing."""
    method = getattr(instance, "getParameterInfo", None)
    if not callable(method):
        return class_name == "ChildObjectDetector"
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return class_name == "ChildObjectDetector"
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind in positional for p in parameters)


def _identifier(text: str) -> str:
    return re.sub(r"\W", "_", text)


def _shown(value: Any) -> str:
    if value is None:
        return "None"
    text = repr(value)
    return f"{type(value).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"


def _select_gpu(device: Device) -> None:
    """What Esri's wrapper does before a child's ``initialize`` when the device is a GPU: PCI bus order for CUDA's
    numbering and, when PyTorch is there (the frameworks Esri ships are built on it), that GPU as the current one.
    A child decides itself whether it uses CUDA."""
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    try:
        import torch
    except ImportError:
        return
    torch.cuda.set_device(torch_device(device, torch))
