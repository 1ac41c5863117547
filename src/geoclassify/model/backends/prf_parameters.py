"""How an Esri Python inference function's parameters become geoclassify's: ``getParameterInfo`` entries as
model arguments (typed as the function will be handed them), ``getConfiguration``'s answer as the EMD keys it
overrides, and the standard parameters Esri's wrapper hands a child.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ModelPackageError
from ..arguments import ArgumentSpec, ArgumentType
from ..emd import parse_bool

#: Parameters ArcGIS fills itself; every other entry of getParameterInfo is a model argument.
HOST_PARAMETERS = frozenset({"rasters", "model", "device"})
#: getConfiguration keys that override EMD keys, by the names the function returns them under.
CONFIGURATION_KEYS = {
    "tx": "ImageWidth",
    "ty": "ImageHeight",
    "extractBands": "ExtractBands",
    "CropSizeFixed": "CropSizeFixed",
    "BlackenAroundFeature": "BlackenAroundFeature",
    "batch_size": "BatchSize",
}
#: Esri's wrapper offers a batch_size argument with this default when the EMD has no BatchSize (spec §3.3).
DEFAULT_BATCH_SIZE_ARGUMENT = 4


def standard_parameters(offer_batch_size: bool) -> list[dict[str, Any]]:
    """What Esri's wrapper hands a child's getParameterInfo (spec §3.3), for the child to append to; batch_size
    only when the EMD has no BatchSize."""
    parameters: list[dict[str, Any]] = [
        {"name": "rasters", "dataType": "rasters", "required": True, "displayName": "Rasters", "value": None},
        {
            "name": "model",
            "dataType": "string",
            "required": True,
            "displayName": "Input Model Definition (EMD) File",
            "description": "Input model definition (EMD) JSON file",
        },
        {"name": "device", "dataType": "numeric", "required": False, "displayName": "Device ID"},
    ]
    if offer_batch_size:
        parameters.append(
            {
                "name": "batch_size",
                "dataType": "numeric",
                "required": False,
                "value": DEFAULT_BATCH_SIZE_ARGUMENT,
                "displayName": "Batch Size",
                "description": "Batch Size",
            }
        )
    return parameters


def argument_spec(parameter: Mapping[str, Any], path: Path) -> ArgumentSpec | None:
    """One getParameterInfo entry as a model argument, its default already of the type the function is given.

    Numbers and booleans are passed parsed; 'string' parameters stay text, because Esri's functions parse those
    themselves (``test_time_augmentation`` is a string compared with ``.lower() in {"true", ...}``).
    """
    name = parameter.get("name")
    data_type = str(parameter.get("dataType") or "string").lower()
    if not isinstance(name, str) or not name or name in HOST_PARAMETERS or data_type in ("raster", "rasters"):
        return None
    kind, default = _typed_default(data_type, parameter.get("value"), name, path)
    description = str(parameter.get("description") or parameter.get("displayName") or "")
    domain = parameter.get("domain")
    if isinstance(domain, Sequence) and not isinstance(domain, str) and domain:
        description = f"{description} (one of: {', '.join(map(str, domain))})".lstrip()
    return ArgumentSpec(name, kind, default, description)


def _typed_default(data_type: str, value: Any, name: str, path: Path) -> tuple[ArgumentType, Any]:
    if data_type == "numeric":
        if value is None or (isinstance(value, str) and not value.strip()):
            return "float", None
        if isinstance(value, int | np.integer) and not isinstance(value, bool):
            return "int", int(value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ModelPackageError(
                f"{path}: getParameterInfo gives the numeric parameter {name!r} the value {value!r}, not a number"
            ) from None
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            return "int", int(number)
        return "float", number
    if data_type == "boolean":
        return "bool", None if value is None else parse_bool(value)
    return "str", None if value is None else str(value)


def emd_overrides(configuration: Mapping[str, Any], path: Path, class_name: str) -> dict[str, object]:
    """getConfiguration's answer as EMD keys, only those it gives."""
    overrides: dict[str, object] = {}
    for key, emd_key in CONFIGURATION_KEYS.items():
        value = configuration.get(key)
        if value is None:
            continue
        try:
            if emd_key == "ExtractBands":
                bands = [value] if isinstance(value, int | str | np.integer) else list(value)
                overrides[emd_key] = [b if isinstance(b, str) else int(b) for b in bands]
            else:
                overrides[emd_key] = _whole(value)
        except (TypeError, ValueError):
            raise ModelPackageError(
                f"{path}: {class_name}.getConfiguration() returned {key}={value!r}; expected "
                + ("band indexes or names" if emd_key == "ExtractBands" else "a whole number")
            ) from None
    return overrides


def _whole(value: Any) -> int:
    """An int from an int, a whole float or a numeric string (Esri's functions return all three); else ValueError."""
    number = float(value)
    if not number.is_integer():
        raise ValueError(value)
    return int(number)
