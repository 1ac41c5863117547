"""The two tasks as data: their parameters (for Esri's task JSON and OGC's process description alike) and how a
submitted set of parameters becomes a stored job: a :class:`geoclassify.RunRequest` for a classification, a
model reference for a model-info query. Both APIs submit through :func:`plan_job`, so they accept the same
parameters with the same checks and messages."""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoclassify import GeoclassifyError, RunRequest

from .config import ServerConfig
from .errors import Conflict, InputError, ServerError
from .inputs import Resolver, parse_reference
from .items import check_name, file_stem

CLASSIFY = "ClassifyObjectsUsingDeepLearning"
MODEL_INFO = "QueryDeepLearningModelInfo"
TASKS = (CLASSIFY, MODEL_INFO)

_REFERENCE = {
    "type": "object",
    "description": 'An item of My Content ({"itemId": ID}), a file under a data root ({"uri": PATH}) or, on a server '
    'started with --allow-remote, a public http(s) address ({"url": URL}).',
    "properties": {"itemId": {"type": "string"}, "uri": {"type": "string"}, "url": {"type": "string"}},
    "minProperties": 1,
}
_CONTEXT = {
    "type": "object",
    "properties": {
        "extent": {"description": "{xmin, ymin, xmax, ymax, spatialReference} or [xmin, ymin, xmax, ymax]"},
        "cellSize": {"type": "number", "exclusiveMinimum": 0},
        "outSR": {"description": '{"wkid": N} or {"wkt": TEXT}'},
        "resamplingMethod": {"type": "string", "enum": ["NEAREST", "BILINEAR", "CUBIC"]},
        "processorType": {"type": "string", "enum": ["CPU", "GPU"]},
        "gpuId": {"type": "integer", "minimum": 0},
        "parallelProcessingFactor": {"type": "string", "description": 'N workers or a share of the cores, "50%"'},
        "retryOnFailures": {"type": "integer", "minimum": 0},
        "recycleInterval": {"type": "integer", "minimum": 1},
    },
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Parameter:
    """One task parameter: Esri's name, type and direction, and the JSON Schema OGC describes it with."""

    name: str
    display: str
    data_type: str
    schema: dict[str, Any]
    required: bool = False
    default: Any = None
    output: bool = False
    description: str = ""

    def esri(self) -> dict[str, Any]:
        kind = "Derived" if self.output else ("Required" if self.required else "Optional")
        return {
            "name": self.name,
            "dataType": self.data_type,
            "displayName": self.display,
            "description": self.description,
            "direction": "esriGPParameterDirectionOutput" if self.output else "esriGPParameterDirectionInput",
            "defaultValue": self.default,
            "parameterType": f"esriGPParameterType{kind}",
            "category": "",
        }


PARAMETERS: dict[str, tuple[Parameter, ...]] = {
    CLASSIFY: (
        Parameter(
            "inputRaster",
            "Input Raster",
            "GPString",
            {"oneOf": [_REFERENCE, {"type": "array", "items": _REFERENCE, "minItems": 1}]},
            required=True,
            description="The imagery: one reference, or a list of them.",
        ),
        Parameter(
            "inputFeatures",
            "Input Features",
            "GPString",
            {**_REFERENCE, "properties": {**_REFERENCE["properties"], "layer": {"type": "string"}}},
            description="Points, lines or polygons, one object each; without it each image is one object.",
        ),
        Parameter(
            "outputFeatureClass",
            "Output Classified Objects",
            "GPString",
            {"oneOf": [{"type": "string"}, {"type": "object"}]},
            required=True,
            description='The result\'s name in My Content: a name, or {"serviceProperties": {"name": ...}}.',
        ),
        Parameter(
            "model",
            "Model Definition",
            "GPString",
            {"oneOf": [_REFERENCE, {"type": "object", "description": "the EMD JSON itself"}]},
            required=True,
            description="A .dlpk (or .emd, .onnx) item or file, or the EMD JSON itself.",
        ),
        Parameter(
            "modelArguments",
            "Model Arguments",
            "GPString",
            {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
            description="Name to value, as QueryDeepLearningModelInfo lists them.",
        ),
        Parameter(
            "classLabelField",
            "Class Label Field",
            "GPString",
            {"type": "string", "default": "ClassLabel"},
            default="ClassLabel",
        ),
        Parameter(
            "processAllRasterItems",
            "Process All Raster Items",
            "GPBoolean",
            {"type": "boolean", "default": False},
            default=False,
            description="true: each image separately (one row per feature and image); false: one mosaic.",
        ),
        Parameter("context", "Context", "GPString", _CONTEXT, description="Analysis environments."),
        Parameter(
            "outObjects",
            "Output Classified Objects",
            "GPFeatureRecordSetLayer",
            {"type": "object"},
            output=True,
            description="The result item: its itemId, and the features inline when few.",
        ),
    ),
    MODEL_INFO: (
        Parameter("model", "Model", "GPString", {"oneOf": [_REFERENCE, {"type": "object"}]}, required=True),
        Parameter(
            "outModelInfo",
            "Model Info",
            "GPString",
            {"type": "object"},
            output=True,
            description='{"modelInfo": JSON text}: the model\'s EMD keys and, in ParameterInfo, its arguments.',
        ),
    ),
}

TITLES = {
    CLASSIFY: "Classify Objects Using Deep Learning",
    MODEL_INFO: "Query Deep Learning Model Info",
}
DESCRIPTIONS = {
    CLASSIFY: "Runs a trained deep learning model on the imagery under each feature (or on each image) and writes "
    "the class label and confidence onto every feature, as a new result item in My Content.",
    MODEL_INFO: "Reads a deep learning model package and returns its definition and the arguments it takes.",
}


#: The run's settings in this API's words, for the run core's messages (``«cell_size»`` is ``context.cellSize``).
REST_WORDS = {
    "input_raster": "inputRaster",
    "input_features": "inputFeatures",
    "features_layer": "inputFeatures layer",
    "output": "outputFeatureClass",
    "output_layer": "outputFeatureClass",
    "model": "model",
    "model_arguments": "modelArguments",
    "class_label_field": "classLabelField",
    "processing_mode": "processAllRasterItems",
    "extent": "context.extent",
    "extent_crs": "context.extent.spatialReference",
    "cell_size": "context.cellSize",
    "output_crs": "context.outSR",
    "resampling": "context.resamplingMethod",
    "processor_type": "context.processorType",
    "gpu_id": "context.gpuId",
    "parallel_factor": "context.parallelProcessingFactor",
    "retries": "context.retryOnFailures",
    "recycle_interval": "context.recycleInterval",
    "trust_code": "a server started with --trust-code",
}


def user_message(exc: GeoclassifyError | Warning) -> str:
    """The error's message with settings named as this API names them (where the run core marks them)."""
    render = getattr(exc, "render", None)
    return render(REST_WORDS) if callable(render) else str(exc)


def inputs_of(task: str) -> tuple[Parameter, ...]:
    return tuple(p for p in PARAMETERS[task] if not p.output)


@dataclass(frozen=True)
class JobPlan:
    """What :class:`.jobs.JobStore.submit` stores for one submission."""

    process: str
    request: str
    output_name: str | None
    inputs: dict[str, Any]
    uses: list[str]
    max_attempts: int


def plan_job(
    task: str, params: Mapping[str, Any], resolver: Resolver, config: ServerConfig, job_id: str, default_name: bool
) -> JobPlan:
    """Check and resolve ``params``; ``default_name`` gives an unnamed output Esri's default name (OGC), where
    Esri's own API requires outputFeatureClass."""
    known = {p.name for p in inputs_of(task)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise InputError(f"{task} has no parameter {', '.join(unknown)}; it takes {', '.join(sorted(known))}")
    if task == MODEL_INFO:
        model = resolver.model(params.get("model"))
        request = json.dumps({"model": model, "trust_code": config.trust_code})
        return JobPlan(task, request, None, dict(params), resolver.used, 1 + config.worker_retries)
    name = output_name(params.get("outputFeatureClass"), default_name)
    features, layer = resolver.features(params.get("inputFeatures"))
    context = environment(params.get("context"))
    try:
        request = RunRequest.build(
            resolver.rasters(params.get("inputRaster")),
            resolver.model(params.get("model")),
            features,
            # The result is written in the job's own folder and moved into My Content when the job succeeds.
            config.state / "jobs" / job_id / f"{file_stem(name)}.gpkg",
            features_layer=layer,
            output_layer=file_stem(name),
            model_arguments=model_arguments(params.get("modelArguments")),
            class_label_field=_text(params.get("classLabelField"), "classLabelField") or "ClassLabel",
            processing_mode="items"
            if boolean(params.get("processAllRasterItems"), "processAllRasterItems")
            else "mosaic",
            scheduler=config.scheduler,
            trust_code=config.trust_code,
            **context,
        )
    except ServerError:
        raise
    except GeoclassifyError as exc:
        raise InputError(user_message(exc)) from None
    max_attempts = 1 + max(request.retries, config.worker_retries)
    return JobPlan(task, request.to_json(), name, dict(params), resolver.used, max_attempts)


def output_name(value: Any, default: bool) -> str:
    """outputFeatureClass: a name, or Esri's ``{"serviceProperties": {"name": ...}}``; an existing item is refused
    (a new name must be chosen, as in ArcGIS)."""
    ref = value
    if isinstance(value, str) and value.strip().startswith("{"):
        ref = parse_reference(value, "outputFeatureClass")
    if isinstance(ref, dict):
        if ref.get("itemProperties", {}).get("itemId") or ref.get("itemId"):
            raise Conflict("outputFeatureClass names an existing item; results go to a new item: give a new name")
        ref = (ref.get("serviceProperties") or {}).get("name") or ref.get("name")
    if ref in (None, ""):
        if not default:
            raise InputError("outputFeatureClass is required: the name of the result in My Content")
        suffix = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(6))
        return f"{CLASSIFY}_{suffix}"
    return check_name(ref, "outputFeatureClass")


def model_arguments(value: Any) -> dict[str, str]:
    data = parse_reference(value, "modelArguments") if isinstance(value, str) else value
    if data in (None, ""):
        return {}
    if not isinstance(data, dict):
        raise InputError('modelArguments must be an object of names and values, e.g. {"batch_size": "4"}')
    return {str(k): json.dumps(v) if isinstance(v, bool) else str(v) for k, v in data.items()}


def boolean(value: Any, param: str) -> bool:
    if value in (None, ""):
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InputError(f"{param} must be true or false, not {value!r}")


def _text(value: Any, param: str) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InputError(f"{param} must be text")
    return value


def environment(value: Any) -> dict[str, Any]:
    """Esri's context keys as RunRequest settings."""
    context = parse_reference(value, "context") if isinstance(value, str) else value
    if context in (None, ""):
        return {}
    if not isinstance(context, dict):
        raise InputError('context must be an object, e.g. {"cellSize": 0.5}')
    unknown = sorted(set(context) - set(_CONTEXT["properties"]))
    if unknown:
        raise InputError(
            f"context has no key {', '.join(unknown)}; this server knows {', '.join(_CONTEXT['properties'])}"
        )
    settings: dict[str, Any] = {}
    if context.get("extent") is not None:
        settings["extent"], settings["extent_crs"] = _extent(context["extent"])
    if context.get("cellSize") is not None:
        settings["cell_size"] = _number(context["cellSize"], "context cellSize")
    if context.get("outSR") is not None:
        settings["output_crs"] = spatial_reference(context["outSR"], "context outSR")
    for key, setting in (("resamplingMethod", "resampling"), ("processorType", "processor_type")):
        if context.get(key) is not None:
            settings[setting] = str(context[key])
    if context.get("parallelProcessingFactor") not in (None, ""):
        settings["parallel_factor"] = str(context["parallelProcessingFactor"])
    for key, setting in (("retryOnFailures", "retries"), ("recycleInterval", "recycle_interval"), ("gpuId", "gpu_id")):
        if context.get(key) not in (None, ""):
            settings[setting] = _integer(context[key], f"context {key}")
    return settings


def _extent(value: Any) -> tuple[tuple[float, float, float, float], str | None]:
    if isinstance(value, list | tuple) and len(value) == 4:
        return tuple(_number(v, "context extent") for v in value), None  # type: ignore[return-value]
    if isinstance(value, dict) and all(k in value for k in ("xmin", "ymin", "xmax", "ymax")):
        box = tuple(_number(value[k], f"context extent {k}") for k in ("xmin", "ymin", "xmax", "ymax"))
        sr = value.get("spatialReference")
        return box, spatial_reference(sr, "context extent spatialReference") if sr else None  # type: ignore[return-value]
    raise InputError("context extent must be {xmin, ymin, xmax, ymax[, spatialReference]} or [xmin, ymin, xmax, ymax]")


def spatial_reference(value: Any, param: str) -> str:
    """Esri's ``{"wkid": N}`` (``latestWkid`` first) or ``{"wkt": ...}``, a bare code, or a CRS string."""
    if isinstance(value, dict):
        code = value.get("latestWkid") or value.get("wkid")
        if code is not None:
            value = code
        elif isinstance(value.get("wkt"), str):
            return value["wkt"]
        else:
            raise InputError(f'{param} must be {{"wkid": N}} or {{"wkt": TEXT}}')
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        code = int(value)
        return f"EPSG:{code}" if code < 100000 else f"ESRI:{code}"
    if isinstance(value, str) and value.strip():
        return value
    raise InputError(f'{param} must be {{"wkid": N}} or {{"wkt": TEXT}}')


def _number(value: Any, param: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{param} must be a number, not {value!r}") from None


def _integer(value: Any, param: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise InputError(f"{param} must be a whole number, not {value!r}") from None
    return number


def staging_folder(config: ServerConfig, job_id: str) -> Path:
    return config.state / "jobs" / job_id
