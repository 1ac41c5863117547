"""One run as data: :class:`RunRequest`, everything a classification depends on, named as Esri's tool names it.

The CLI and the Python API build one; a job service stores one (it round-trips through JSON without loss) and
hands it to a worker; resume compares the fingerprint of the request that made a journal with the one that wants
to continue it. Values are kept as a user gives them (paths as typed, CRSs as text), normalised only where two
spellings mean the same (``PROCESS_ITEMS_SEPARATELY`` and ``items``), so a request reads back as it was asked.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .environment import parse_processing_mode, parse_resampling
from .errors import SettingError

PathLike = str | os.PathLike[str]

#: The request's version in JSON; a reader refuses a newer one rather than guess at unknown keys.
SCHEMA_VERSION = 1

#: ``classify_objects``' keywords and the CLI's options by the settings they fill, where the names differ.
KEYWORD_SETTINGS = {
    "image": "input_raster",
    "images": "input_raster",
    "features": "input_features",
    "out": "output",
    "out_layer": "output_layer",
    "label_field": "class_label_field",
    "arguments": "model_arguments",
    "out_crs": "output_crs",
}


@dataclass(frozen=True)
class RunRequest:
    """A classification to run: Esri's "Classify Objects Using Deep Learning" with its environments.

    ``input_raster`` holds one or more image sources (rasters, folders, list files, globs, VRTs, STAC JSON);
    ``input_features`` a layer file, or None for "each image is one object". ``output`` None means the rows are
    returned rather than written. Model arguments are strings, as Esri's clients send them.
    """

    input_raster: tuple[str, ...]
    model: str
    input_features: str | None = None
    features_layer: str | None = None
    output: str | None = None
    output_layer: str | None = None
    model_arguments: Mapping[str, str] = field(default_factory=dict)
    class_label_field: str = "ClassLabel"
    field_prefix: str = ""
    processing_mode: str = "mosaic"
    recursive: bool = False
    asset: str | None = None
    where: str | None = None
    # What the output holds beyond the label (see modes/ranking.py).
    top_k: int = 1
    probabilities: bool = False
    min_coverage: float | None = None
    #: A folder to write every chip to, as the model receives it (not in the fingerprint: results do not change).
    export_chips: str | None = None
    # Analysis environments.
    extent: tuple[float, float, float, float] | None = None
    extent_crs: str | None = None
    cell_size: float | None = None
    output_crs: str | None = None
    resampling: str = "nearest"
    processor_type: str = "CPU"
    gpu_id: int | None = None
    parallel_factor: str | None = None
    retries: int = 0
    recycle_interval: int | None = None
    # Execution.
    scheduler: str | None = None
    resume: bool = False
    overwrite: bool = False
    trust_code: bool = False
    dry_run: bool = False

    @classmethod
    def build(
        cls,
        input_raster: PathLike | Sequence[PathLike],
        model: PathLike,
        input_features: PathLike | None = None,
        output: PathLike | None = None,
        **options: Any,
    ) -> RunRequest:
        """A request from the loose types callers hold (paths, numbers, mappings of any values), normalised so
        that the same arguments give equal requests whoever builds them."""
        images = (input_raster,) if isinstance(input_raster, str | os.PathLike) else tuple(input_raster)
        arguments = options.pop("model_arguments", None) or {}
        extent = options.pop("extent", None)
        parallel = options.pop("parallel_factor", None)
        cell_size = options.pop("cell_size", None)
        if options.get("min_coverage") is not None:
            options["min_coverage"] = float(options["min_coverage"])
        if options.get("export_chips") is not None:
            options["export_chips"] = os.fspath(options["export_chips"])
        if options.get("where") is not None:
            options["where"] = str(options["where"]).strip() or None
        unknown = set(options) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"RunRequest has no setting {', '.join(sorted(unknown))}")
        return cls(
            input_raster=tuple(os.fspath(i) for i in images),
            model=os.fspath(model),
            input_features=os.fspath(input_features) if input_features is not None else None,
            output=os.fspath(output) if output is not None else None,
            model_arguments={str(k): _argument_text(v) for k, v in dict(arguments).items()},
            extent=tuple(float(v) for v in extent) if extent is not None else None,  # type: ignore[arg-type]
            parallel_factor=str(parallel).strip() if parallel not in (None, "") else None,
            cell_size=float(cell_size) if cell_size is not None else None,
            **options,
        ).normalised()

    @classmethod
    def from_keywords(cls, **keywords: Any) -> RunRequest:
        """A request from ``classify_objects``' keywords or the CLI's options (see :data:`KEYWORD_SETTINGS`)."""
        return cls.build(**{KEYWORD_SETTINGS.get(name, name): value for name, value in keywords.items()})

    def normalised(self) -> RunRequest:
        """The same request with synonyms in one spelling (processing mode, resampling, processor type)."""
        return dataclasses.replace(
            self,
            processing_mode=parse_processing_mode(self.processing_mode),
            resampling=parse_resampling(self.resampling).name,
            processor_type=str(self.processor_type).strip().upper(),
        )

    # -- JSON ---------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["input_raster"] = list(self.input_raster)
        data["model_arguments"] = dict(self.model_arguments)
        data["extent"] = list(self.extent) if self.extent is not None else None
        return {"version": SCHEMA_VERSION, **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRequest:
        data = dict(data)
        version = data.pop("version", SCHEMA_VERSION)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise SettingError(
                f"run request version {version!r} is newer than this geoclassify reads ({SCHEMA_VERSION})"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingError(f"run request has unknown settings: {', '.join(unknown)}")
        if "input_raster" not in data or "model" not in data:
            raise SettingError("run request needs input_raster and model")
        data["input_raster"] = tuple(data["input_raster"])
        if data.get("extent") is not None:
            data["extent"] = tuple(float(v) for v in data["extent"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> RunRequest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingError(f"run request is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise SettingError("run request must be a JSON object")
        return cls.from_dict(data)

    # -- resume ---------------------------------------------------------------------------------------------------

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change results, as plain data: a journal made under one fingerprint may only be
        continued under the same. Where and how the work runs (workers, scheduler, retries, batch size) and how the
        output is written (its CRS, its layer name) do not change a single result, so they are left out; the
        identity of the input files is added by the run, which opens them."""
        arguments = {k: v for k, v in sorted(self.model_arguments.items()) if k != "batch_size"}
        return {
            "images": list(self.input_raster),
            "recursive": self.recursive,
            "asset": self.asset,
            "features": self.input_features,
            "layer": self.features_layer,
            # The filter changes which features there are, and so the count and positions the journal holds.
            "where": self.where,
            "model": self.model,
            "arguments": arguments,
            "fields": [self.field_prefix, self.class_label_field],
            "mode": self.processing_mode,
            "extent": list(self.extent) if self.extent is not None else None,
            "extent_crs": self.extent_crs,
            "cell_size": self.cell_size,
            "resampling": self.resampling,
            # Top-k and probabilities make the journal keep every class's probability; min_coverage is applied to
            # the results after they are read back, so a run may resume with another.
            "all_scores": self.top_k > 1 or self.probabilities,
        }


def _argument_text(value: Any) -> str:
    """A model argument as the string an Esri client would send (``True`` -> ``"true"``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
