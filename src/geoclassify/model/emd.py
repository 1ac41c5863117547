"""The Esri Model Definition (EMD) for object classification, read with Esri's keys and defaults.

An EMD is the contract between a model and the tool: chip size, bands, crop mode, blackening,
normalisation and the class list. We parse it once, strictly, into a frozen :class:`ModelDefinition` so
that every later stage works from checked values and an error names the key that is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import DuplicateClassValueWarning, ModelDefinitionError
from ..hooks import warn

ImageSpace = Literal["MAP_SPACE", "PIXEL_SPACE"]
ModelOutput = Literal["probabilities", "logits"]

#: arcgis.learn's default when an EMD carries no NormalizationStats: ImageNet statistics on a 0-255 scale.
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

#: Largest chip side accepted: far above any classifier's input, and small enough that a chip can be allocated
#: (an EMD's ImageWidth of 1e9 would otherwise end in numpy's "array is too big").
MAX_CHIP_SIZE = 16384
#: Most bands ExtractBands may select (hyperspectral sensors have a few hundred).
MAX_BANDS = 1024

#: arcgis.learn's MetaDataMode for multi-label training data: labels are those whose probability reaches a threshold.
MULTI_LABEL_MODE = "MultiLabeled_Tiles"

_TRUE = {"true", "1", "t", "y", "yes"}
_FALSE = {"false", "0", "f", "n", "no"}


@dataclass(frozen=True)
class ClassInfo:
    """One entry of ``Classes``. Its *position* in the list is the model output index, as in Esri's tools."""

    value: int
    name: str
    color: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class NormalizationStats:
    """Per-band statistics, indexed by the raster band index named in ExtractBands (not by chip channel)."""

    band_min: tuple[float, ...]
    band_max: tuple[float, ...]
    scaled_mean: tuple[float, ...]
    scaled_std: tuple[float, ...]


@dataclass(frozen=True)
class CellSize:
    """A cell size as Esri writes it (``{x, y, spatialReference}``)."""

    x: float
    y: float
    wkid: int | None = None


@dataclass(frozen=True)
class ModelDefinition:
    """A checked EMD. ``raw`` keeps every key, including ones this version does not interpret."""

    classes: tuple[ClassInfo, ...]
    framework: str | None = None
    model_configuration: str | None = None
    model_file: str | None = None
    model_type: str | None = None
    inference_function: str | None = None
    image_width: int | None = None
    image_height: int | None = None
    extract_bands: tuple[int | str, ...] | None = None
    crop_size_fixed: bool = True
    blacken_around_feature: bool = False
    image_space_used: ImageSpace = "MAP_SPACE"
    batch_size: int | None = None
    data_range: tuple[float, float] | None = None
    normalization: NormalizationStats | None = None
    model_name: str | None = None
    min_cell_size: CellSize | None = None
    max_cell_size: CellSize | None = None
    model_output: ModelOutput | None = None
    test_time_augmentation: bool = False
    #: ``MetaDataMode: MultiLabeled_Tiles``: several labels per chip, each class's probability its own (sigmoid).
    multi_label: bool = False
    source: str = "<inline EMD>"
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]


def parse_emd_text(text: str, source: str) -> ModelDefinition:
    """Parse EMD JSON text; ``source`` names the file (or "inline EMD") in every error."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelDefinitionError(
            f"{source}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "an EMD must be a JSON object"
        ) from None
    if not isinstance(data, dict):
        raise ModelDefinitionError(f"{source}: an EMD must be a JSON object, found {type(data).__name__}")
    return parse_emd(data, source)


def parse_emd(data: Mapping[str, Any], source: str = "<inline EMD>") -> ModelDefinition:
    """Turn an EMD mapping into a :class:`ModelDefinition`, applying Esri's defaults for absent keys."""
    reader = _KeyReader(data, source)
    model_type = reader.text("ModelType")
    if model_type is not None and model_type != "ObjectClassification":
        raise ModelDefinitionError(
            f"{source}: ModelType is {model_type!r}; this tool classifies objects and needs "
            "'ObjectClassification' (or no ModelType). Use a model trained for object classification."
        )
    config = data.get("ModelConfiguration")
    if isinstance(config, Mapping):
        config = config.get("Name")
    extract_bands = reader.bands("ExtractBands")
    normalization = reader.normalization("NormalizationStats", extract_bands)
    return ModelDefinition(
        classes=reader.classes(),
        framework=reader.text("Framework"),
        model_configuration=str(config) if config is not None else None,
        model_file=reader.text("ModelFile"),
        model_type=model_type,
        inference_function=reader.text("InferenceFunction"),
        image_width=reader.positive_int("ImageWidth", MAX_CHIP_SIZE, "pixels"),
        image_height=reader.positive_int("ImageHeight", MAX_CHIP_SIZE, "pixels"),
        extract_bands=extract_bands,
        crop_size_fixed=reader.flag("CropSizeFixed", default=True),
        blacken_around_feature=reader.flag("BlackenAroundFeature", default=False),
        image_space_used=reader.choice("ImageSpaceUsed", ("MAP_SPACE", "PIXEL_SPACE"), "MAP_SPACE"),
        batch_size=reader.positive_int("BatchSize"),
        data_range=reader.data_range("DataRange"),
        normalization=normalization,
        model_name=reader.text("ModelName"),
        min_cell_size=reader.cell_size("MinCellSize"),
        max_cell_size=reader.cell_size("MaxCellSize"),
        model_output=reader.choice("ModelOutput", ("probabilities", "logits"), None),
        test_time_augmentation=reader.flag("test_time_augmentation", default=False),
        multi_label=reader.text("MetaDataMode") == MULTI_LABEL_MODE,
        source=source,
        raw=dict(data),
    )


def _shown(value: Any) -> str:
    """A value for a message, cut short: an EMD key may hold a huge list."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_bool(value: Any) -> bool | None:
    """Esri's boolean spelling (``"True"``, ``"1"``, ``1``, ``true``); ``None`` when it is none of them."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    return None


class _KeyReader:
    """Reads typed keys from an EMD and raises errors that name the key, the value and the file."""

    def __init__(self, data: Mapping[str, Any], source: str) -> None:
        self.data = data
        self.source = source

    def fail(self, key: str, expected: str) -> ModelDefinitionError:
        return ModelDefinitionError(
            f"{self.source}: key {key!r} is {_shown(self.data.get(key))}; expected {expected}. Fix the EMD.", key
        )

    def text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(key, "a string")
        return value

    def positive_int(self, key: str, maximum: int | None = None, unit: str = "") -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        try:
            number = int(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or number <= 0 or (isinstance(value, float) and not value.is_integer()):
            raise self.fail(key, "a positive whole number")
        if maximum is not None and number > maximum:
            raise self.fail(key, f"a whole number from 1 to {maximum}{' ' + unit if unit else ''}")
        return number

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        parsed = parse_bool(value)
        if parsed is None:
            raise self.fail(key, "0 or 1 (or true/false)")
        return parsed

    def choice(self, key: str, options: Sequence[str], default: Any) -> Any:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, str):
            for option in options:
                if value.strip().lower() == option.lower():
                    return option
        raise self.fail(key, "one of " + ", ".join(repr(o) for o in options))

    def bands(self, key: str) -> tuple[int | str, ...] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not value:
            raise self.fail(key, "a non-empty list of 0-based band indexes or band names")
        bands: list[int | str] = []
        for item in value:
            if isinstance(item, bool):
                raise self.fail(key, "a list of 0-based band indexes or band names")
            if isinstance(item, int) or (isinstance(item, float) and item.is_integer()):
                if item < 0:
                    raise self.fail(key, "band indexes >= 0 (ExtractBands is 0-based)")
                bands.append(int(item))
            elif isinstance(item, str) and item.strip().lstrip("-").isdigit():
                bands.append(int(item))
            elif isinstance(item, str) and item.strip():
                bands.append(item.strip())
            else:
                raise self.fail(key, "a list of 0-based band indexes or band names")
        if len(bands) > MAX_BANDS:
            raise ModelDefinitionError(
                f"{self.source}: key {key!r} selects {len(bands)} bands; at most {MAX_BANDS} are accepted. "
                "Fix the EMD.",
                key,
            )
        return tuple(bands)

    def data_range(self, key: str) -> tuple[float, float] | None:
        value = self.data.get(key)
        if value is None:
            return None
        try:
            low, high = (float(v) for v in value)
        except (TypeError, ValueError):
            raise self.fail(key, "[min, max]") from None
        if not low < high:
            raise self.fail(key, "[min, max] with min < max")
        return (low, high)

    def cell_size(self, key: str) -> CellSize | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return CellSize(float(value), float(value))
        if not isinstance(value, Mapping):
            raise self.fail(key, "{x, y, spatialReference} or null")
        try:
            x, y = float(value["x"]), float(value.get("y", value["x"]))
        except (KeyError, TypeError, ValueError):
            raise self.fail(key, "{x, y, spatialReference} with numeric x and y") from None
        sr = value.get("spatialReference") or {}
        wkid = sr.get("latestWkid") or sr.get("wkid") if isinstance(sr, Mapping) else None
        return CellSize(x, y, int(wkid) if wkid is not None else None)

    def normalization(self, key: str, extract_bands: tuple[int | str, ...] | None) -> NormalizationStats | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self.fail(key, "an object of per-band lists")
        lists: dict[str, tuple[float, ...]] = {}
        for name in ("band_min_values", "band_max_values", "scaled_mean_values", "scaled_std_values"):
            items = value.get(name)
            try:
                lists[name] = tuple(float(v) for v in items)  # type: ignore[union-attr]
            except (TypeError, ValueError):
                raise ModelDefinitionError(
                    f"{self.source}: {key}.{name} is {items!r}; expected a list of numbers, one per band. Fix the EMD.",
                    key,
                ) from None
        stats = NormalizationStats(
            band_min=lists["band_min_values"],
            band_max=lists["band_max_values"],
            scaled_mean=lists["scaled_mean_values"],
            scaled_std=lists["scaled_std_values"],
        )
        indexes = [b for b in extract_bands or () if isinstance(b, int)]
        needed = max(indexes, default=-1) + 1
        for name, values in lists.items():
            if len(values) < needed:
                raise ModelDefinitionError(
                    f"{self.source}: {key}.{name} has {len(values)} values but ExtractBands uses band "
                    f"index {needed - 1}; the statistics are indexed by raster band. Fix the EMD.",
                    key,
                )
        for i, (low, high, std) in enumerate(zip(stats.band_min, stats.band_max, stats.scaled_std, strict=False)):
            if high == low or std == 0:
                raise ModelDefinitionError(
                    f"{self.source}: {key} for band {i} has max == min or std == 0, which divides by zero. "
                    "Fix the EMD.",
                    key,
                )
        return stats

    def classes(self) -> tuple[ClassInfo, ...]:
        value = self.data.get("Classes")
        if not isinstance(value, list) or not value:
            raise ModelDefinitionError(
                f"{self.source}: key 'Classes' is {value!r}; expected a non-empty list of "
                '{"Value": int, "Name": str, "Color": [r, g, b]}. Fix the EMD.',
                "Classes",
            )
        classes = []
        for position, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise ModelDefinitionError(
                    f"{self.source}: Classes[{position}] is {item!r}; expected an object", "Classes"
                )
            raw_value = item.get("Value", item.get("ClassValue", position))
            name = item.get("Name", item.get("ClassName"))
            try:
                class_value = int(raw_value)
            except (TypeError, ValueError):
                raise ModelDefinitionError(
                    f"{self.source}: Classes[{position}].Value is {raw_value!r}; expected a whole number", "Classes"
                ) from None
            if name is None or not str(name).strip():
                raise ModelDefinitionError(
                    f"{self.source}: Classes[{position}] has no Name (or ClassName); every class needs one", "Classes"
                )
            color = item.get("Color")
            try:
                rgb = tuple(int(c) for c in color[:3]) if color is not None else None
            except (TypeError, ValueError):
                rgb = None
            classes.append(ClassInfo(class_value, str(name), rgb))  # type: ignore[arg-type]
        self._check_unique(classes)
        return tuple(classes)

    def _check_unique(self, classes: Sequence[ClassInfo]) -> None:
        """A name twice makes two model outputs one label, so the model's answer is lost: refused. A value twice
        only merges ClassValue (labels stay apart), as some Esri packages ship it: a warning."""
        first: dict[str, int] = {}
        for position, info in enumerate(classes):
            earlier = first.setdefault(info.name, position)
            if earlier != position:
                raise ModelDefinitionError(
                    f"{self.source}: Classes[{earlier}] and Classes[{position}] are both named {info.name!r}, so "
                    "two model outputs would get one label; give every class its own Name. Fix the EMD.",
                    "Classes",
                )
        values: dict[int, str] = {}
        for info in classes:
            other = values.setdefault(info.value, info.name)
            if other != info.name:
                warn(
                    DuplicateClassValueWarning(
                        f"{self.source}: classes {other!r} and {info.name!r} share the Value {info.value}, so their "
                        "features get the same ClassValue (labels still differ); give every class its own Value"
                    )
                )
