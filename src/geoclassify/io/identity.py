"""What a run's inputs were, recorded in its journal so ``--resume`` can tell whether any changed since.

A resumed run joins the results saved by the interrupted one to its own by feature position. If the model, an
image or the feature layer was replaced at the same path in between, that join silently mixes two runs' answers
(seen: 31% of the features from one model and 69% from another). So every input is recorded by identity, not
name: its path, size and modification time (ns), and a SHA-256 where that is cheap. A model package's SHA-256 is
computed anyway (it keys the extraction cache); a bare model file is read whole to be loaded, so it is hashed
whole; other files are hashed whole up to :data:`WHOLE_BYTES` and otherwise by their first and last
:data:`SAMPLE_BYTES`. A GeoDataFrame is identified by its geometries (WKB, in row order) and CRS, which is what
results depend on; remote inputs (URLs, ``/vsi`` paths) by their address alone, as looking further would mean
network requests.

Identities are plain JSON-able dicts (``what``, ``path``, ``size``, ``mtime_ns``, ``sha256`` or
``sampled_sha256``, and ``files`` for inputs made of several), so the journal stores them as they are;
:func:`differences` compares two fingerprints and says, in words, what changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely

from ..errors import ModelPackageError
from ..model.packages import ModelPackage, package_digest
from .images import ImageRef, is_remote

if TYPE_CHECKING:  # worker processes import this module through the journal, and need no geopandas
    import geopandas as gpd

#: Files up to this size are hashed whole; bigger ones by their first and last SAMPLE_BYTES.
SAMPLE_BYTES = 1 << 20
WHOLE_BYTES = 2 * SAMPLE_BYTES
#: A model file is read whole when it is loaded, so hashing it whole costs little more (up to this size).
MODEL_WHOLE_BYTES = 1 << 30
#: Files that make up one shapefile besides the .shp.
SHAPEFILE_SIDECARS = (".shx", ".dbf", ".prj", ".cpg")
#: What the other entries of a run's fingerprint are called in messages.
SETTING_NAMES = {
    "mode": "«processing_mode»",
    "layer": "«features_layer»",
    "label_field": "«class_label_field»",
    "extent": "«extent»",
    "cell_size": "«cell_size»",
    "resampling": "«resampling»",
    "count": "the number of features",
    "fields": "the result field names",
    "where": "«where»",
    "all_scores": "keeping every class's probability («top_k» above 1 or «probabilities»)",
}

Identity = dict[str, Any]


def file_identity(
    path: str | os.PathLike[str], what: str, digest: str | None = None, whole: int = WHOLE_BYTES
) -> Identity:
    """Path, size, modification time and a SHA-256 (``digest`` when the caller has one) of a local file."""
    identity: Identity = {"what": what, "path": os.fspath(path)}
    try:
        stat = os.stat(path)
    except OSError:
        return identity  # the run reports a missing or unreadable input itself
    identity.update(size=stat.st_size, mtime_ns=stat.st_mtime_ns)
    try:
        if digest is not None:
            identity["sha256"] = digest
        elif stat.st_size <= whole:
            identity["sha256"] = _sha256(path)
        else:
            identity["sampled_sha256"] = _sha256(path, SAMPLE_BYTES)
    except OSError:
        pass
    return identity


def model_identity(package: ModelPackage) -> Identity:
    """A .dlpk by its SHA-256; an .emd (or inline EMD) by its text and the files it names; a bare model file by its
    content."""
    origin = package.origin
    if not origin:
        return {"what": "the model", "path": package.source}  # built in memory: nothing more to know
    if origin.lstrip().startswith("{"):
        identity: Identity = {"what": "the model", "path": "<inline EMD>", "sha256": _text_sha256(origin)}
    else:
        path = Path(origin)
        suffix = path.suffix.lower()
        if suffix == ".dlpk" or (suffix not in (".emd", ".onnx") and zipfile.is_zipfile(path)):
            return file_identity(path, "the model package", digest=package_digest(path))
        if suffix != ".emd":
            return file_identity(path, "the model", whole=MODEL_WHOLE_BYTES)
        identity = file_identity(path, "the model definition")
    identity["files"] = [file_identity(p, "the model file", whole=MODEL_WHOLE_BYTES) for p in _named_files(package)]
    return identity


def image_identity(ref: ImageRef) -> Identity:
    """An image file, and the files a local VRT reads."""
    if is_remote(ref.uri):
        return {"what": "image", "path": ref.uri}
    identity = file_identity(ref.uri, "image")
    if ref.uri.lower().endswith(".vrt"):
        identity["files"] = [file_identity(p, "image") for p in _vrt_sources(ref.uri)]
    return identity


def features_identity(features: str | os.PathLike[str] | gpd.GeoDataFrame) -> Identity:
    """A layer file (with a shapefile's sidecars, or every file of a folder such as a .gdb), or a GeoDataFrame."""
    if not isinstance(features, str | os.PathLike):  # a GeoDataFrame in memory
        return _frame_identity(features)
    text = os.fspath(features)
    what = "the feature layer"
    if is_remote(text) or not os.path.exists(text):
        return {"what": what, "path": text}
    path = Path(text)
    text = os.path.abspath(text)  # the same layer named from another folder is the same layer
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return {"what": what, "path": text, "files": [file_identity(p, what) for p in files]}
    identity = file_identity(text, what)
    if path.suffix.lower() == ".shp":
        sidecars = [p for p in (path.with_suffix(s) for s in SHAPEFILE_SIDECARS) if p.is_file()]
        identity["files"] = [file_identity(p, what) for p in sidecars]
    return identity


def differences(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between the fingerprint of an interrupted run and this one's, one phrase per difference; empty
    when resuming is safe. A file whose whole-content hash is unchanged counts as unchanged (say, copied back)."""
    reasons: list[str] = []
    for key in sorted(previous.keys() | current.keys()):
        old, new = previous.get(key), current.get(key)
        if old == new:
            continue
        if key == "images" and isinstance(old, list) and isinstance(new, list):
            reasons += _image_changes(old, new)
        elif _is_identity(old) and _is_identity(new):
            reasons += _changes(old, new)
        elif key == "arguments" and isinstance(old, dict) and isinstance(new, dict):
            reasons += [
                f"«model_arguments» {name} was {old.get(name)!r}, now {new.get(name)!r}"
                for name in sorted(old.keys() | new.keys())
                if old.get(name) != new.get(name)
            ]
        else:
            reasons.append(f"{SETTING_NAMES.get(key, key)} was {old!r}, now {new!r}")
    return reasons


def _changes(old: Identity, new: Identity) -> list[str]:
    if old.get("path") != new.get("path"):
        return [f"the interrupted run used {old['what']} {old['path']!r}, this one {new['path']!r}"]
    reasons = []
    same_content = "sha256" in old and old.get("sha256") == new.get("sha256")
    if not same_content:
        aspects = [
            name
            for name, field in (("size", "size"), ("modification time", "mtime_ns"), ("content", "sha256"))
            if old.get(field) != new.get(field)
        ]
        if old.get("sampled_sha256") != new.get("sampled_sha256") and "content" not in aspects:
            aspects.append("content")
        if aspects:
            reasons.append(f"{_named(new)} changed since the interrupted run ({', '.join(aspects)})")
    old_files, new_files = old.get("files") or [], new.get("files") or []
    if [f.get("path") for f in old_files] != [f.get("path") for f in new_files]:
        reasons.append(f"the files that make up {_named(new)} are not those of the interrupted run")
    else:
        for before, after in zip(old_files, new_files, strict=True):
            reasons += _changes(before, after)
    return reasons


def _image_changes(old: Sequence[Any], new: Sequence[Any]) -> list[str]:
    if len(old) != len(new):
        return [f"the interrupted run read {len(old)} images, this one {len(new)}"]
    reasons = []
    for before, after in zip(old, new, strict=True):
        if before != after:
            reasons += (
                _changes(before, after) if _is_identity(before) and _is_identity(after) else ["the images differ"]
            )
    if len(reasons) > 3:
        reasons = [*reasons[:3], f"{len(reasons) - 3} more images changed"]
    return reasons


def _is_identity(value: Any) -> bool:
    return isinstance(value, dict) and "what" in value and "path" in value


def _named(identity: Identity) -> str:
    path = str(identity["path"])
    return identity["what"] if path.startswith("<") else f"{identity['what']} {path!r}"


def _named_files(package: ModelPackage) -> list[Path]:
    """The files an .emd names (its model, its inference function): they change results as much as the EMD."""
    files = []
    for key in ("ModelFile", "InferenceFunction"):
        if package.definition.raw.get(key):
            # Not a file (a bundled Esri function) or missing: the model loader has said so already.
            with contextlib.suppress(ModelPackageError):
                files.append(package.resolve(key))
    return files


def _vrt_sources(uri: str) -> list[str]:
    import rasterio

    try:
        with rasterio.open(uri) as dataset:
            return [f for f in dataset.files if os.path.abspath(f) != os.path.abspath(uri)]
    except (rasterio.errors.RasterioError, OSError):
        return []  # reading the raster will say what is wrong with it


def _frame_identity(frame: gpd.GeoDataFrame) -> Identity:
    digest = hashlib.sha256()
    wkb = shapely.to_wkb(np.asarray(frame.geometry.array, dtype=object))
    lengths = np.array([-1 if w is None else len(w) for w in wkb], dtype=np.int64)
    digest.update(lengths.tobytes())
    digest.update(b"".join(w for w in wkb if w is not None))
    digest.update((frame.crs.to_wkt() if frame.crs is not None else "").encode())
    return {"what": "the features given as a GeoDataFrame", "path": "<GeoDataFrame>", "rows": len(frame),
            "sha256": digest.hexdigest()}  # fmt: skip


def _sha256(path: str | os.PathLike[str], sample: int | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if sample is None:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        else:
            digest.update(handle.read(sample))
            handle.seek(-sample, os.SEEK_END)
            digest.update(handle.read(sample))
    return digest.hexdigest()


def _text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
