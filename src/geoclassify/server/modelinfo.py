"""QueryDeepLearningModelInfo's answer: the model as Esri's task describes it, its arguments in ``ParameterInfo``
the way a Python raster function's ``getParameterInfo`` lists them (so clients fill their argument tables)."""

from __future__ import annotations

from typing import Any

ESRI_TYPES = {"int": "numeric", "float": "numeric", "bool": "boolean", "str": "string"}


def model_info(info: dict[str, Any]) -> dict[str, Any]:
    """From :func:`geoclassify.inspect_model`'s data, without the server's own paths."""
    return {
        "Framework": info["framework"],
        "ModelType": info["model_type"],
        "ModelName": info["model_name"],
        "InferenceFunction": info["inference_function"],
        "ImageHeight": info["chip_size"]["height"],
        "ImageWidth": info["chip_size"]["width"],
        "ExtractBands": info["extract_bands"],
        "CropSizeFixed": int(bool(info["crop_size_fixed"])),
        "BlackenAroundFeature": int(bool(info["blacken_around_feature"])),
        "ImageSpaceUsed": info["image_space"],
        "Classes": [{"Value": c["value"], "Name": c["name"], "Color": c["color"]} for c in info["classes"]],
        "ParameterInfo": [
            {
                "name": a["name"],
                "dataType": ESRI_TYPES.get(str(a["type"]), "string"),
                "value": _text(a["value"]),
                "defaultValue": _text(a["default"]),
                "required": False,
                "displayName": a["name"].replace("_", " ").title(),
                "description": a["description"] or "",
            }
            for a in info["arguments"]
        ],
    }


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
