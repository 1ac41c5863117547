"""Model packages as Esri's tools accept them: a ``.dlpk`` zip, an ``.emd`` file, or an inline EMD string.

A ``.dlpk`` is extracted once per content (keyed by its SHA-256) into a cache folder, so repeated runs and
parallel workers share one copy. Extraction refuses anything that could write outside that folder
(absolute paths, ``..``, symlinks) and stops at a size cap, because a package is input from strangers. For the
same reason every file an EMD names must lie inside the package's folder: a ``ModelFile`` of ``../../x`` must not
make geoclassify read (or, for an inference function, run) a file the package does not hold.
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
from functools import lru_cache
from pathlib import Path, PurePosixPath

from .. import settings
from ..errors import ModelPackageError, SettingError
from .emd import ModelDefinition, parse_emd, parse_emd_text

CACHE_HINT = "set GEOCLASSIFY_CACHE_DIR to a folder you can write"
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
    #: The package's folder, which every file the EMD names must lie in (symlinks resolved); default ``root``.
    #: For a .dlpk it is the extracted archive, whose .emd may sit in a subfolder.
    folder: Path | None = None

    @property
    def boundary(self) -> Path:
        return (self.folder or self.root).resolve()

    def resolve(self, key: str = "ModelFile") -> Path:
        """Find the file an EMD key names, accepting the Windows forms Esri tools write."""
        name = self.definition.raw.get(key)
        if not isinstance(name, str) or not name.strip():
            raise ModelPackageError(
                f"{self.source}: the EMD has no {key}; add the model file's name relative to the .emd", key
            )
        return resolve_beside(self.root, name.strip(), key, self.source, self.boundary)


def resolve_beside(root: Path, name: str, key: str, source: str, boundary: Path | None = None) -> Path:
    """Resolve a path from an EMD: relative to ``root``; an absolute path that is not inside the package falls back
    to the file of that name beside the .emd (the Windows forms always do: they name the trainer's machine).

    Whatever the form, the file found must lie inside ``boundary`` (default ``root``) once symlinks are resolved;
    a path that leads out of it is refused without being opened.
    """
    inside = (boundary or root).resolve()
    basename = re.split(r"[\\/]", name)[-1]
    candidates: list[Path] = []
    if _WINDOWS_ABSOLUTE.match(name):
        candidates.append(root / basename)
    elif os.path.isabs(name):
        candidates += [Path(name), root / basename]
    else:
        candidates.append(root / PurePosixPath(name.replace("\\", "/")))
    escaped: Path | None = None
    for candidate in candidates:
        real = candidate.resolve()
        if not real.is_relative_to(inside):
            escaped = escaped or real
            continue
        if real.is_file():
            return real
    if escaped is not None:
        raise ModelPackageError(
            f"{source}: {key} {name!r} leads outside the package ({escaped} is not in {inside}); a package may only "
            f"use its own files: put {basename or 'the file'} in the package and give {key} relative to the .emd",
            key,
        )
    tried = ", ".join(str(c) for c in candidates)
    raise ModelPackageError(
        f"{source}: {key} {name!r} not found (looked for {tried}). Put the file beside the .emd or fix {key}.", key
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
        return ModelPackage(definition, emd_path.parent, source, str(path.resolve()), folder)
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


def max_package_bytes() -> int:
    """The size cap (GEOCLASSIFY_MAX_PACKAGE_BYTES), from the run's settings."""
    return settings.current().max_package_bytes


def cache_dir() -> Path:
    """Where extracted packages live: GEOCLASSIFY_CACHE_DIR, else the XDG cache folder."""
    return settings.current().cache_dir


def extract_dlpk(path: Path) -> Path:
    """Extract a .dlpk into the cache, once per content, and return its folder."""
    digest = package_digest(path)
    target = cache_dir() / "packages" / digest[:32]
    if (target / ".complete").exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    except OSError as exc:
        raise SettingError(
            f"cannot unpack {path} into the package cache {target.parent} ({_reason(exc)}); {CACHE_HINT}"
        ) from None
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
    except OSError as exc:  # the archive itself was read once already (its digest), so this is the cache
        raise SettingError(
            f"cannot unpack {path} into the package cache {target.parent} ({_reason(exc)}); {CACHE_HINT}"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _safe_extract(path: Path, dest: Path) -> None:
    limit = max_package_bytes()
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
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise ModelPackageError(
            f"{path}: cannot read the package ({_reason(exc)}); check that you may read it"
        ) from None
    return digest.hexdigest()


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def package_digest(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a package file: it keys the extraction cache and identifies the model in a run's journal, so
    it is computed once per file version rather than once per use. Any write changes the status-change time, which
    no user can set back, so a replaced file is always hashed again."""
    try:
        info = os.stat(path)
    except OSError:
        return _sha256(Path(path))  # says why the package cannot be read
    return _cached_digest(os.path.abspath(path), info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)


@lru_cache(maxsize=64)
def _cached_digest(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    return _sha256(Path(path))
