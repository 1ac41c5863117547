"""A host for Esri's Python raster function (PRF) API for object classification (`InferenceFunction`).

ArcGIS loads the ``.py`` an EMD names, takes the class named like the module, and talks to it through
``initialize``, ``getParameterInfo``, ``getConfiguration`` and ``vectorize``. Two forms exist: Esri's wrapper
(``ObjectClassifier``/``ArcGISObjectClassifier``, whose ``vectorize`` returns FeatureSet JSON) and the child it
delegates to (``ChildObjectDetector``, returning ``(polygons, scores, labels)``). Both run here, unchanged. The
function is the package's own code, so it runs only when the user says they trust it.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import tempfile
import traceback
from typing import Any

import numpy as np

from ..arguments import ArgumentSpec, ArgumentType
from ..errors import InferenceError, ModelPackageError, UnsupportedModelError, UntrustedCodeError
from ..package import ModelPackage

#: Parameters ArcGIS fills itself; the rest of getParameterInfo are the model arguments.
HOST_PARAMETERS = ("rasters", "model", "device")
#: EMD keys that getConfiguration may override, by the names it returns them under.
CONFIGURATION_KEYS = {
    "tx": "ImageWidth",
    "ty": "ImageHeight",
    "extractBands": "ExtractBands",
    "CropSizeFixed": "CropSizeFixed",
    "BlackenAroundFeature": "BlackenAroundFeature",
    "batch_size": "BatchSize",
}


class PythonFunctionBackend:
    """Runs an Esri Python inference function on raw chips (it normalises them itself)."""

    framework = "Esri Python inference function"

    def __init__(self, package: ModelPackage, trust_code: bool = False) -> None:
        definition = package.definition
        given = str(definition.inference_function)
        if given.strip().lower().startswith("[functions]"):
            raise UnsupportedModelError(
                f"{package.source}: InferenceFunction {given!r} points at the copy of Esri's function inside an "
                "ArcGIS Pro install, which needs arcgis.learn and arcpy; this package carries no function of its own. "
                'Export the model to ONNX (see the README) and set "Framework": "ONNX".'
            )
        self.path = package.resolve("InferenceFunction")
        self.package = package
        if not trust_code:
            raise UntrustedCodeError(
                f"{package.source}: the model runs Python code from the package ({self.path.name}); geoclassify runs "
                "it only if you trust where the package came from: pass --trust-code (API: trust_code=True)"
            )
        self.classes = {c.name: i for i, c in enumerate(definition.classes)}
        module = self._import()
        self.class_name, cls = self._pick_class(module)
        self.instance = cls()
        self.child = self._is_child(cls)
        self._initialize()

    # -- loading ---------------------------------------------------------------------------------------------

    def _import(self) -> Any:
        folder = str(self.path.parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)  # helper modules shipped beside the function import as in ArcGIS
        name = f"geoclassify_function_{abs(hash(str(self.path)))}"
        spec = importlib.util.spec_from_file_location(name, self.path)
        if spec is None or spec.loader is None:
            raise ModelPackageError(f"{self.path}: not a Python file that can be imported")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ModelPackageError(
                f"{self.package.source}: importing {self.path.name} failed:\n{self._own_traceback(exc)}"
            ) from None
        return module

    def _pick_class(self, module: Any) -> tuple[str, type]:
        for name in (self.path.stem, "ChildObjectDetector"):
            cls = getattr(module, name, None)
            if inspect.isclass(cls):
                return name, cls
        found = ", ".join(n for n, v in vars(module).items() if inspect.isclass(v) and v.__module__ == module.__name__)
        raise ModelPackageError(
            f"{self.path}: no class named {self.path.stem!r} (like the module, as ArcGIS expects) or "
            f"'ChildObjectDetector'; the file defines: {found or 'no class'}"
        )

    @staticmethod
    def _is_child(cls: type) -> bool:
        """The child's getParameterInfo takes the standard parameter list; the wrapper's takes nothing."""
        method = getattr(cls, "getParameterInfo", None)
        if method is None:
            return False
        parameters = [p for p in inspect.signature(method).parameters.values() if p.name != "self"]
        return bool(parameters)

    def _emd_path(self) -> str:
        emds = sorted(self.package.root.glob("*.emd"))
        if emds:
            return str(emds[0])
        # An inline EMD has no file, and the function expects a path: give it one.
        with tempfile.NamedTemporaryFile("w", suffix=".emd", delete=False) as handle:
            json.dump(dict(self.package.definition.raw), handle)
        return handle.name

    def _initialize(self) -> None:
        emd = self._emd_path()
        if self.child:
            self._call("initialize", emd, True)
        else:
            self._call("initialize", model=emd, device=-1)

    # -- the PRF calls -----------------------------------------------------------------------------------------

    def _standard_parameters(self) -> list[dict[str, Any]]:
        parameters = [
            {"name": "rasters", "dataType": "rasters", "required": True, "displayName": "Rasters"},
            {
                "name": "model",
                "dataType": "string",
                "required": True,
                "displayName": "Input Model Definition (EMD) File",
            },
            {"name": "device", "dataType": "numeric", "required": False, "displayName": "Device ID"},
        ]
        if self.package.definition.batch_size is None:
            parameters.append(
                {
                    "name": "batch_size",
                    "dataType": "numeric",
                    "required": False,
                    "value": 4,
                    "displayName": "Batch Size",
                }
            )
        return parameters

    def _parameter_info(self) -> list[dict[str, Any]]:
        if self.child:
            return list(self._call("getParameterInfo", self._standard_parameters()) or [])
        return list(self._call("getParameterInfo") or [])

    def argument_specs(self) -> list[ArgumentSpec]:
        specs = []
        for parameter in self._parameter_info():
            name = parameter.get("name")
            if not name or name in HOST_PARAMETERS:
                continue
            default = parameter.get("value")
            kind: ArgumentType = {"numeric": "float", "boolean": "bool"}.get(str(parameter.get("dataType")), "str")
            if kind == "float" and (isinstance(default, int) or (isinstance(default, str) and default.isdigit())):
                kind, default = "int", int(default)
            description = str(parameter.get("description") or parameter.get("displayName") or "")
            specs.append(ArgumentSpec(name, kind, default, description))
        return specs

    def configure(self, arguments: dict[str, object]) -> dict[str, object]:
        configuration = self._call("getConfiguration", **arguments) or {}
        overrides: dict[str, object] = {}
        for key, emd_key in CONFIGURATION_KEYS.items():
            if configuration.get(key) is not None:
                value = configuration[key]
                overrides[emd_key] = list(value) if emd_key == "ExtractBands" else int(value)
        return overrides

    def classify_chips(self, chips: np.ndarray, valid: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        labels: list[int] = []
        scores: list[float] = []
        for start in range(0, len(chips), batch_size):
            block = chips[start : start + batch_size]
            masks = np.repeat(valid[start : start + batch_size, None].astype(np.uint8), block.shape[1], axis=1)
            pixel_blocks = {"rasters_pixels": tuple(block), "rasters_mask": tuple(masks)}
            names, confidences = self._vectorize(pixel_blocks, len(block))
            for name, confidence in zip(names, confidences, strict=True):
                if name not in self.classes:
                    raise InferenceError(
                        f"{self.path.name}: the function returned the label {name!r}, which is not among the EMD's "
                        f"Classes ({', '.join(self.classes)}); the class list must name every label it returns"
                    )
                labels.append(self.classes[name])
                scores.append(float(confidence))
        return np.array(labels, dtype=np.int64), np.array(scores, dtype=np.float64)

    def _vectorize(self, pixel_blocks: dict[str, Any], count: int) -> tuple[list[str], list[float]]:
        result = self._call("vectorize", **pixel_blocks)
        if self.child:
            if not isinstance(result, tuple | list) or len(result) != 3:
                raise InferenceError(
                    f"{self.path.name}: vectorize returned {type(result).__name__}; a "
                    "ChildObjectDetector returns (polygons, scores, labels)"
                )
            _, confidences, names = result
            names, confidences = [str(n) for n in names], [float(c) for c in confidences]
        else:
            names, confidences = self._read_feature_set(result)
        if len(names) != count:
            raise InferenceError(
                f"{self.path.name}: vectorize returned {len(names)} results for {count} chips; "
                "it must return one per chip, in order"
            )
        return names, confidences

    def _read_feature_set(self, result: Any) -> tuple[list[str], list[float]]:
        """Esri's wrapper output: ``{"output_vectors": FeatureSet JSON}``, Confidence as a string, OID or FID."""
        try:
            vectors = result["output_vectors"]
            feature_set = json.loads(vectors) if isinstance(vectors, str) else vectors
            attributes = [f["attributes"] for f in feature_set["features"]]
        except (TypeError, KeyError, json.JSONDecodeError) as exc:
            raise InferenceError(
                f"{self.path.name}: vectorize did not return output_vectors FeatureSet JSON "
                f"({type(exc).__name__}: {exc})"
            ) from None
        names = [str(a.get("Label", a.get("Classname", a.get("Class")))) for a in attributes]
        return names, [float(a.get("Confidence", "nan")) for a in attributes]

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        function = getattr(self.instance, method, None)
        if function is None:
            if method in ("getConfiguration", "initialize"):
                return None
            raise ModelPackageError(
                f"{self.path}: class {self.class_name!r} has no {method}(); an object "
                "classification function needs getParameterInfo, getConfiguration and vectorize"
            )
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            raise InferenceError(
                f"{self.path.name}: {self.class_name}.{method}() raised an error:\n{self._own_traceback(exc)}"
            ) from None

    def _own_traceback(self, exc: BaseException) -> str:
        """The traceback frames in the package's own files, then the error: where the user's code failed."""
        root = str(self.path.parent)
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(root)]
        lines = traceback.format_list(frames) + traceback.format_exception_only(type(exc), exc)
        return "".join(lines).rstrip()

    def describe(self) -> dict[str, object]:
        return {
            "runtime": "Esri Python inference function (geoclassify host)",
            "file": str(self.path),
            "class": self.class_name,
            "form": "child" if self.child else "wrapper",
        }
