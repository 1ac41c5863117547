"""Build an Esri deep learning package (.dlpk) from an ONNX or TorchScript file.

The EMD uses Esri's key names and types (integers for flags and sizes, ``Classes`` with ``Value``/``Name``/
``Color``), so ArcGIS's readers accept it, and the package is proven by loading it and running one batch before
it is written. The user gave its keys as options and files, never as an EMD, so errors name the option (or file)
that gave the faulty key.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_atomically
from ..errors import ModelPackageError, OutputError, OutputExistsError
from .emd import ModelDefinition, parse_emd
from .packages import ModelPackage

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


def read_class_names(path: str | os.PathLike[str]) -> list[str]:
    """Class names from a text file, one per line (blank lines skipped): names may hold commas, as ImageNet's do."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ModelPackageError(f"--classes-file {os.fspath(path)}: cannot read it ({why})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ModelPackageError(f"--classes-file {os.fspath(path)}: holds no class names; give one name per line")
    return names


@dataclass(frozen=True)
class MeanStd:
    """torch-style normalisation ``(x / scale - mean) / std`` per band, in chip band order (one value: every band)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 1.0

    def stats(self, extract_bands: Sequence[int | str]) -> dict[str, list[float]]:
        """Esri NormalizationStats that make geoclassify's (and arcgis.learn's) formula
        ``((x - band_min) / (band_max - band_min) - scaled_mean) / scaled_std`` equal ``(x / scale - mean) / std``:
        band_min 0 and band_max ``scale`` turn x into x / scale, then scaled_mean and scaled_std are mean and std.
        The lists are indexed by raster band (ExtractBands' values), as Esri's are; unused bands get 0 and 1."""
        if any(not isinstance(b, int) for b in extract_bands):
            raise ModelPackageError(
                f"--mean/--std: ExtractBands {list(extract_bands)} names bands, but NormalizationStats are indexed by "
                "band number; give --bands as 0-based indexes, or the statistics with --normalization-stats"
            )
        indexes = [int(b) for b in extract_bands]
        means, stds = self._per_band("--mean", self.mean, indexes), self._per_band("--std", self.std, indexes)
        size = max(indexes) + 1
        lists = {
            "band_min_values": [0.0] * size,
            "band_max_values": [float(self.scale)] * size,
            "scaled_mean_values": [0.0] * size,
            "scaled_std_values": [1.0] * size,
        }
        given: dict[int, tuple[float, float]] = {}
        for band, values in zip(indexes, zip(means, stds, strict=True), strict=True):
            if given.setdefault(band, values) != values:
                raise ModelPackageError(f"--mean/--std: band {band} appears twice in ExtractBands, with other values")
            lists["scaled_mean_values"][band], lists["scaled_std_values"][band] = values
        return lists

    @staticmethod
    def _per_band(option: str, values: Sequence[float], indexes: Sequence[int]) -> list[float]:
        if len(values) == 1:
            return [float(values[0])] * len(indexes)
        if len(values) != len(indexes):
            raise ModelPackageError(
                f"{option} has {len(values)} values but the package takes {len(indexes)} bands (ExtractBands "
                f"{list(indexes)}); give one value per band, in that order, or one value for all"
            )
        return [float(v) for v in values]


def build_package(
    model_file: str | os.PathLike[str],
    out: str | os.PathLike[str],
    emd: Mapping[str, Any],
    overwrite: bool = False,
    origins: Mapping[str, str] | None = None,
    mean_std: MeanStd | None = None,
) -> dict[str, Any]:
    """Write ``out`` (.dlpk) holding ``model_file`` and an EMD made of ``emd`` plus what the model file tells.

    ``origins`` says where the user gave each EMD key (``{"ImageWidth": "--chip-size 64"}``), for error messages;
    ``mean_std`` becomes NormalizationStats once the bands are known. Returns the EMD written. Nothing is written
    unless the model loads and classifies a batch of blank chips.
    """
    source = Path(model_file)
    target = Path(out)
    origins = dict(origins or {})
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
    if not target.parent.is_dir():
        raise OutputError(
            f"package {os.fspath(target)!r}: the folder {os.fspath(target.parent)!r} does not exist; create it "
            "first, or give --out in an existing folder"
        )
    if target.exists() and not overwrite:
        raise OutputExistsError(f"package {os.fspath(target)!r} exists; pass --overwrite to replace it")
    filled = _fill(dict(emd), source, framework)
    if mean_std is not None:
        filled["NormalizationStats"] = mean_std.stats(filled["ExtractBands"])
        origins["NormalizationStats"] = "--mean/--std"
    definition = _ordered(filled, _checked(filled, source, origins), source, framework)
    _validate(definition, source, origins)
    _write(target, definition, source)
    return definition


def _fill(emd: dict[str, Any], source: Path, framework: str) -> dict[str, Any]:
    """Take what the EMD lacks from the model's input (ONNX declares it); report every key still missing at once."""
    shape = _onnx_input_shape(source) if framework == "ONNX" else (None, None, None, None)
    channels, height, width = shape[1], shape[2], shape[3]
    if emd.get("ImageHeight") is None:
        emd["ImageHeight"] = height
    if emd.get("ImageWidth") is None:
        emd["ImageWidth"] = width
    if emd.get("ExtractBands") is None and channels is not None:
        emd["ExtractBands"] = list(range(channels))
    missing = []
    if "Classes" not in emd:
        missing.append("--classes NAMES or --classes-file FILE (the class names, in the model's output order)")
    if emd["ImageHeight"] is None or emd["ImageWidth"] is None:
        missing.append("--chip-size N or WIDTHxHEIGHT (the model does not fix its input size)")
    if emd.get("ExtractBands") is None:
        missing.append("--bands 0,1,2 (the 0-based raster bands; the model does not say how many it takes)")
    if missing:
        kind = "a TorchScript file records no input shape" if framework == "PyTorch" else "the model leaves them open"
        raise ModelPackageError(
            f"{source}: the package needs " + "; ".join(missing) + f" ({kind}); give them as options or in --emd"
        )
    emd["ExtractBands"] = [int(b) if str(b).strip().isdigit() else b for b in emd["ExtractBands"]]
    return emd


def _checked(emd: Mapping[str, Any], source: Path, origins: Mapping[str, str]) -> ModelDefinition:
    """The EMD parsed as any reader will; a faulty key is reported under the option or file that gave it."""
    try:
        return parse_emd(emd, str(source))
    except ModelPackageError as exc:
        where = origins.get(exc.key or "")
        if where is None:
            raise
        return parse_emd(emd, where)  # fails again, naming the option (parsing is deterministic)


def _ordered(emd: dict[str, Any], parsed: ModelDefinition, source: Path, framework: str) -> dict[str, Any]:
    """Esri's bookkeeping keys first, typed as arcgis.learn writes them, then the user's other keys."""
    ordered = {
        "Framework": framework,
        "ModelConfiguration": emd.pop("ModelConfiguration", "FeatureClassifier"),
        "ModelType": "ObjectClassification",
        "ModelFile": source.name,
        "ModelName": emd.pop("ModelName", source.stem),
        "Version": emd.pop("Version", time.strftime("%Y.%m")),
        "ImageWidth": parsed.image_width,
        "ImageHeight": parsed.image_height,
        "ExtractBands": list(parsed.extract_bands or ()),
        "CropSizeFixed": int(parsed.crop_size_fixed),
        "BlackenAroundFeature": int(parsed.blacken_around_feature),
        "ImageSpaceUsed": parsed.image_space_used,
    }
    for key in ("Framework", "ModelType", "ModelFile", "Classes", *list(ordered)):
        emd.pop(key, None)
    ordered.update(emd)
    ordered["Classes"] = [
        {"Value": c.value, "Name": c.name, "Color": list(c.color or PALETTE[i % len(PALETTE)])}
        for i, c in enumerate(parsed.classes)
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


def _validate(definition: Mapping[str, Any], source: Path, origins: Mapping[str, str]) -> None:
    """Load the package as any user would and classify blank chips: a package that cannot run is not written.

    It loads from the model file where it is (no temporary .emd a message could name); a fault of a key is
    reported again under the option that gave it."""
    try:
        _run_blank_chips(definition, source, str(source))
    except ModelPackageError as exc:
        where = origins.get(exc.key or "")
        if where is None:
            raise
        _run_blank_chips(definition, source, where)
        raise


def _run_blank_chips(definition: Mapping[str, Any], source: Path, label: str) -> None:
    from .runtime import load_model

    package = ModelPackage(parse_emd(definition, label), source.parent, label, "", source.resolve().parent)
    model = load_model(package)
    extract = tuple(model.definition.extract_bands or ())
    # NormalizationStats are indexed by raster band, so blank chips stand for the bands ExtractBands names.
    indexes = tuple(int(b) for b in extract) if all(isinstance(b, int) for b in extract) else tuple(range(len(extract)))
    chips = np.zeros((2, len(extract), model.chip_height, model.chip_width), dtype=np.float32)
    valid = np.ones((2, model.chip_height, model.chip_width), dtype=bool)
    model.classify(chips, valid, indexes, ids=["blank chip 1", "blank chip 2"])


def _write(target: Path, definition: Mapping[str, Any], source: Path) -> None:
    """The zip beside its final name, then moved over it, so a failed write leaves no half package."""
    try:
        emd = json.dumps(definition, indent=2) + "\n"
        write_atomically(target, lambda staging: _zip(staging, f"{target.stem}.emd", emd, source), f".{target.name}-")
    except OSError as exc:
        raise OutputError(
            f"package {os.fspath(target)!r}: cannot write it ({exc.strerror or exc}); check the folder's permissions "
            "and free space, or give another --out"
        ) from None


def _zip(path: Path, emd_name: str, emd_text: str, model: Path) -> None:
    """Files at the archive root, as arcgis.learn writes them, with fixed timestamps for reproducible packages."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in (emd_name, model.name):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with archive.open(info, "w") as member:
                if name == emd_name:
                    member.write(emd_text.encode("utf-8"))
                else:
                    with open(model, "rb") as data:
                        shutil.copyfileobj(data, member, 1 << 20)
