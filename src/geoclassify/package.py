"""Model packages as Esri's tools accept them: a ``.dlpk`` zip, an ``.emd`` file, or an inline EMD string.

A ``.dlpk`` is extracted once per content (keyed by its SHA-256) into a cache folder, so repeated runs and
parallel workers share one copy. Extraction refuses anything that could write outside that folder
(absolute paths, ``..``, symlinks) and stops at a size cap, because a package is input from strangers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .emd import ModelDefinition, parse_emd, parse_emd_text
from .errors import ModelPackageError

#: Largest total uncompressed size accepted from one package; override with GEOCLASSIFY_MAX_PACKAGE_BYTES.
DEFAULT_MAX_PACKAGE_BYTES = 8 * 1024**3
MAX_PACKAGE_ENTRIES = 10_000
_WINDOWS_ABSOLUTE = re.compile(r"^([A-Za-z]:[\\/]|\\\\)")


@dataclass(frozen=True)
class ModelPackage:
    """An EMD with the folder its relative paths resolve against."""

    definition: ModelDefinition
    root: Path
    source: str
    #: What the user passed (a path, or the EMD JSON), so a worker process can open the same package again.
    origin: str = ""

    def resolve(self, key: str = "ModelFile") -> Path:
        """Find the file an EMD key names, accepting the Windows forms Esri tools write."""
        name = self.definition.raw.get(key)
        if not isinstance(name, str) or not name.strip():
            raise ModelPackageError(
                f"{self.source}: the EMD has no {key}; add the model file's name relative to the .emd"
            )
        return resolve_beside(self.root, name.strip(), key, self.source)


def resolve_beside(root: Path, name: str, key: str, source: str) -> Path:
    """Resolve a path from an EMD: relative to ``root``; a foreign absolute path falls back to its file name."""
    basename = re.split(r"[\\/]", name)[-1]
    candidates: list[Path] = []
    if _WINDOWS_ABSOLUTE.match(name):
        candidates.append(root / basename)
    elif os.path.isabs(name):
        candidates += [Path(name), root / basename]
    else:
        relative = root / PurePosixPath(name.replace("\\", "/"))
        candidates.append(relative)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise ModelPackageError(
        f"{source}: {key} {name!r} not found (looked for {tried}). Put the file beside the .emd or fix {key}."
    )


def open_package(model: str | os.PathLike[str]) -> ModelPackage:
    """Open what a user passed as the model: a .dlpk, an .emd path, or the EMD JSON itself."""
    text = os.fspath(model)
    if text.lstrip().startswith("{"):
        return ModelPackage(parse_emd_text(text, "inline EMD"), Path.cwd(), "inline EMD", text)
    path = Path(text).expanduser()
    if not path.exists():
        raise ModelPackageError(f"model {text!r} not found: give a .dlpk, an .emd file or the EMD JSON")
    if path.is_dir():
        raise ModelPackageError(f"model {text!r} is a folder: give the .dlpk or the .emd inside it")
    if path.suffix.lower() == ".onnx":
        return onnx_package(path)
    if path.suffix.lower() == ".dlpk" or (path.suffix.lower() != ".emd" and zipfile.is_zipfile(path)):
        folder = extract_dlpk(path)
        emd_path = _single_emd(folder, path)
        source = f"{path} ({emd_path.relative_to(folder)})"
        definition = parse_emd_text(_read_text(emd_path, source), source)
        return ModelPackage(definition, emd_path.parent, source, str(path.resolve()))
    definition = parse_emd_text(_read_text(path, str(path)), str(path))
    return ModelPackage(definition, path.resolve().parent, str(path), str(path.resolve()))


#: Metadata properties a bare .onnx may carry, named and valued (as JSON text) exactly as the EMD keys.
ONNX_METADATA_KEYS = (
    "Classes",
    "ImageWidth",
    "ImageHeight",
    "ExtractBands",
    "CropSizeFixed",
    "BlackenAroundFeature",
    "ImageSpaceUsed",
    "NormalizationStats",
    "DataRange",
    "ModelOutput",
    "BatchSize",
    "ModelName",
    "MinCellSize",
    "MaxCellSize",
    "test_time_augmentation",
    "Description",
    "Version",
)


def onnx_package(path: Path) -> ModelPackage:
    """A bare .onnx that describes itself in its metadata properties (``ONNX_METADATA_KEYS``), or in one ``emd``
    property holding a whole EMD; one file is then a complete model."""
    import onnxruntime as ort

    source = f"{path} (ONNX metadata)"
    try:
        metadata = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
    except Exception as exc:  # onnxruntime raises its own untyped errors for corrupt files
        raise ModelPackageError(f"{path}: ONNX Runtime cannot load this model ({exc})") from None
    properties = dict(metadata.custom_metadata_map)
    emd: dict[str, object] = {}
    if "emd" in properties:
        try:
            emd.update(json.loads(properties["emd"]))
        except json.JSONDecodeError as exc:
            raise ModelPackageError(f"{source}: the 'emd' property is not JSON ({exc.msg})") from None
    for key in ONNX_METADATA_KEYS:
        if key in properties:
            try:
                emd[key] = json.loads(properties[key])
            except json.JSONDecodeError:
                emd[key] = properties[key]
    if "Classes" not in emd:
        raise ModelPackageError(
            f"{path}: a bare .onnx must describe its classes: add a metadata property 'Classes' (JSON, as in an EMD) "
            "and optionally ImageWidth, ExtractBands, ... (see the README), or build a package with "
            "`geoclassify package`"
        )
    emd.update({"Framework": "ONNX", "ModelFile": path.name})
    emd.setdefault("ModelType", "ObjectClassification")
    return ModelPackage(parse_emd(emd, source), path.resolve().parent, source, str(path.resolve()))


def cache_dir() -> Path:
    """Where extracted packages live: GEOCLASSIFY_CACHE_DIR, else the XDG cache folder."""
    configured = os.environ.get("GEOCLASSIFY_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "geoclassify"


def extract_dlpk(path: Path) -> Path:
    """Extract a .dlpk into the cache, once per content, and return its folder."""
    digest = _sha256(path)
    target = cache_dir() / "packages" / digest[:32]
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    try:
        _safe_extract(path, staging)
        (staging / ".complete").write_text(digest)
        try:
            staging.rename(target)
        except OSError:
            # Another process finished the same package first; its copy is identical.
            if not (target / ".complete").exists():
                shutil.rmtree(target, ignore_errors=True)
                staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _safe_extract(path: Path, dest: Path) -> None:
    limit = int(os.environ.get("GEOCLASSIFY_MAX_PACKAGE_BYTES", DEFAULT_MAX_PACKAGE_BYTES))
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_PACKAGE_ENTRIES:
                raise ModelPackageError(
                    f"{path}: the package holds {len(infos)} files; at most {MAX_PACKAGE_ENTRIES} are accepted"
                )
            if sum(i.file_size for i in infos) > limit:
                raise ModelPackageError(
                    f"{path}: the package unpacks to more than {limit} bytes; raise "
                    "GEOCLASSIFY_MAX_PACKAGE_BYTES if you trust it"
                )
            written = 0
            for info in infos:
                relative = _safe_member_path(info, path)
                if relative is None:
                    continue
                out = dest.joinpath(*relative.parts)
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(out, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > limit:
                            raise ModelPackageError(
                                f"{path}: the package unpacks to more than {limit} bytes; raise "
                                "GEOCLASSIFY_MAX_PACKAGE_BYTES if you trust it"
                            )
                        dst.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise ModelPackageError(
            f"{path}: not a readable .dlpk ({exc}); a .dlpk must be a zip archive. Re-export or re-download it."
        ) from None
    except NotImplementedError as exc:
        raise ModelPackageError(f"{path}: the zip uses a feature Python cannot read ({exc})") from None


def _safe_member_path(info: zipfile.ZipInfo, archive: Path) -> PurePosixPath | None:
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or _WINDOWS_ABSOLUTE.match(info.filename):
        raise ModelPackageError(f"{archive}: refusing entry {info.filename!r} with an absolute path")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if ".." in parts:
        raise ModelPackageError(f"{archive}: refusing entry {info.filename!r} that points outside the package")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ModelPackageError(f"{archive}: refusing symbolic link {info.filename!r} inside the package")
    if not parts or parts[0] == "__MACOSX":
        return None
    return PurePosixPath(*parts)


def _single_emd(folder: Path, archive: Path) -> Path:
    emds = sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".emd" and p.is_file())
    if not emds:
        raise ModelPackageError(f"{archive}: the package holds no .emd file; a .dlpk needs exactly one")
    if len(emds) > 1:
        names = ", ".join(str(p.relative_to(folder)) for p in emds)
        raise ModelPackageError(
            f"{archive}: the package holds {len(emds)} .emd files ({names}); it needs exactly one. "
            "Remove the extra ones or pass the .emd you mean directly."
        )
    return emds[0]


def _read_text(path: Path, source: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ModelPackageError(f"{source}: not a text file; an .emd must be UTF-8 JSON") from None
    except OSError as exc:
        raise ModelPackageError(f"{source}: cannot read ({exc.strerror})") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
