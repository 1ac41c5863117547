"""Build an Esri deep learning package (.dlpk) from an ONNX or TorchScript file.

The EMD uses Esri's key names and types (integers for flags and sizes, ``Classes`` with ``Value``/``Name``/
``Color``), so ArcGIS's readers accept it, and the package is proven by loading it and running one batch before
it is written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelPackageError, OutputError, OutputExistsError

#: Framework key written for each model file type.
FRAMEWORKS = {".onnx": "ONNX", ".pt": "PyTorch", ".pts": "PyTorch", ".torchscript": "PyTorch", ".ts": "PyTorch"}
#: Colours given to classes that come without one (Esri draws them; arcgis.learn picks at random).
PALETTE = (
    [56, 168, 0],
    [230, 0, 0],
    [0, 112, 255],
    [255, 170, 0],
    [168, 0, 132],
    [0, 168, 132],
    [115, 76, 0],
    [255, 255, 0],
    [0, 255, 197],
    [190, 190, 190],
)


def class_list(names: Sequence[str], values: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Esri ``Classes`` from names (in model output order) and optional values (default 1, 2, ...)."""
    if values is not None and len(values) != len(names):
        raise ModelPackageError(f"{len(names)} class names but {len(values)} class values; give one value per class")
    values = list(values) if values is not None else list(range(1, len(names) + 1))
    return [
        {"Value": int(v), "Name": str(n), "Color": PALETTE[i % len(PALETTE)]}
        for i, (n, v) in enumerate(zip(names, values, strict=True))
    ]


def build_package(
    model_file: str | os.PathLike[str], out: str | os.PathLike[str], emd: Mapping[str, Any], overwrite: bool = False
) -> dict[str, Any]:
    """Write ``out`` (.dlpk) holding ``model_file`` and an EMD made of ``emd`` plus what the model file tells.

    Returns the EMD written. Nothing is written unless the model loads and classifies a batch of blank chips.
    """
    source = Path(model_file)
    target = Path(out)
    if not source.is_file():
        raise ModelPackageError(f"model file {os.fspath(source)!r} not found")
    framework = FRAMEWORKS.get(source.suffix.lower())
    if framework is None:
        raise ModelPackageError(
            f"{source}: geoclassify packages ONNX (.onnx) and TorchScript (.pt, .pts, .torchscript) files; "
            "export the model to one of them first"
        )
    if target.suffix.lower() != ".dlpk":
        raise OutputError(f"package {os.fspath(target)!r}: the file name must end in .dlpk")
    if target.exists() and not overwrite:
        raise OutputExistsError(f"package {os.fspath(target)!r} exists; pass --overwrite to replace it")
    definition = _complete(dict(emd), source, framework)
    with tempfile.TemporaryDirectory(prefix=".package-", dir=target.parent if target.parent.is_dir() else None) as tmp:
        folder = Path(tmp)
        shutil.copyfile(source, folder / source.name)
        emd_path = folder / f"{target.stem}.emd"
        emd_path.write_text(json.dumps(definition, indent=2) + "\n", encoding="utf-8")
        _validate(emd_path)
        staging = folder / target.name
        _zip(staging, [emd_path, folder / source.name])
        os.replace(staging, target)
    return definition


def _complete(emd: dict[str, Any], source: Path, framework: str) -> dict[str, Any]:
    """Fill in Esri's bookkeeping keys and, for ONNX, what the model's input declares."""
    if "Classes" not in emd:
        raise ModelPackageError(
            "a package needs its classes: give --classes (names in model output order) or Classes in the --emd file"
        )
    shape = _onnx_input_shape(source) if framework == "ONNX" else (None, None, None, None)
    channels, height, width = shape[1], shape[2], shape[3]
    emd.setdefault("ImageHeight", height)
    emd.setdefault("ImageWidth", width)
    if emd.get("ImageHeight") is None or emd.get("ImageWidth") is None:
        raise ModelPackageError(f"{source}: the model does not fix its chip size; give --chip-size")
    if "ExtractBands" not in emd:
        if channels is None:
            raise ModelPackageError(f"{source}: the model does not say how many bands it takes; give --bands")
        emd["ExtractBands"] = list(range(channels))
    ordered = {
        "Framework": framework,
        "ModelConfiguration": emd.pop("ModelConfiguration", "FeatureClassifier"),
        "ModelType": "ObjectClassification",
        "ModelFile": source.name,
        "ModelName": emd.pop("ModelName", source.stem),
        "Version": emd.pop("Version", time.strftime("%Y.%m")),
        "ImageWidth": int(emd.pop("ImageWidth")),
        "ImageHeight": int(emd.pop("ImageHeight")),
        "ExtractBands": [int(b) if str(b).isdigit() else b for b in emd.pop("ExtractBands")],
        "CropSizeFixed": int(emd.pop("CropSizeFixed", 1)),
        "BlackenAroundFeature": int(emd.pop("BlackenAroundFeature", 0)),
        "ImageSpaceUsed": emd.pop("ImageSpaceUsed", "MAP_SPACE"),
    }
    for key in ("Framework", "ModelType", "ModelFile"):
        emd.pop(key, None)
    ordered.update(emd)
    ordered["Classes"] = [
        {
            "Value": int(c.get("Value", c.get("ClassValue", i + 1))),
            "Name": str(c.get("Name", c.get("ClassName"))),
            "Color": [int(v) for v in (c.get("Color") or PALETTE[i % len(PALETTE)])[:3]],
        }
        for i, c in enumerate(ordered.pop("Classes"))
    ]
    return ordered


def _onnx_input_shape(path: Path) -> tuple[int | None, ...]:
    import onnxruntime as ort

    try:
        shape = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()[0].shape
    except Exception as exc:  # onnxruntime raises its own untyped errors for corrupt files
        raise ModelPackageError(f"{path}: ONNX Runtime cannot load this model ({exc})") from None
    dims = [d if isinstance(d, int) and d > 0 else None for d in shape]
    return tuple(dims) if len(dims) == 4 else (None, None, None, None)


def _validate(emd_path: Path) -> None:
    """Load the package as any user would and classify blank chips: a package that cannot run is not written."""
    from .model import load_model

    model = load_model(emd_path)
    extract = tuple(model.definition.extract_bands or ())
    # NormalizationStats are indexed by raster band, so blank chips stand for the bands ExtractBands names.
    indexes = tuple(int(b) for b in extract) if all(isinstance(b, int) for b in extract) else tuple(range(len(extract)))
    chips = np.zeros((2, len(extract), model.chip_height, model.chip_width), dtype=np.float32)
    valid = np.ones((2, model.chip_height, model.chip_width), dtype=bool)
    model.classify(chips, valid, indexes, ids=["blank chip 1", "blank chip 2"])


def _zip(path: Path, files: Sequence[Path]) -> None:
    """Files at the archive root, as arcgis.learn writes them, with fixed timestamps for reproducible packages."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            info = zipfile.ZipInfo(file.name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, file.read_bytes())
