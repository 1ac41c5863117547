"""A model package shipped to Dask workers, which cannot see this machine's files: its bytes travel once, are
written into each worker's package cache under their SHA-256 and loaded from there."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_bytes_atomically
from ..errors import ClusterError, ModelPackageError
from ..model.packages import MAX_PACKAGE_ENTRIES, cache_dir, extract_dlpk, max_package_bytes


@dataclass(frozen=True)
class Shipment:
    """A model package as bytes, for workers that cannot see this machine's files.

    A .dlpk or .onnx travels as it is; an .emd travels as a zip of its folder (the model file and any inference
    function beside it), which workers unpack like a .dlpk. ``origin`` is the package's path here, so messages from
    workers name the file the user gave, not the worker's copy.
    """

    digest: str
    name: str
    data: bytes = b""
    member: str | None = None
    origin: str = ""

    def install(self) -> tuple[str, str]:
        """Write the package into this machine's cache, once per content: (the path to load, the local path that
        stands for :attr:`label` in messages)."""
        folder = cache_dir() / "shipped" / self.digest[:32]
        path = folder / self.name
        try:
            if not path.exists():
                folder.mkdir(parents=True, exist_ok=True)
                # Threads and processes sharing a cache see all of it or nothing.
                write_bytes_atomically(path, self.data, prefix=".ship-")
        except OSError as exc:
            raise ClusterError(
                f"cannot write the model package into {folder} ({exc.strerror or exc}); give the workers a writable "
                "GEOCLASSIFY_CACHE_DIR"
            ) from None
        if self.member is None:
            return str(path), str(path)
        unpacked = extract_dlpk(path)
        return str(unpacked / self.member), str(unpacked)

    @property
    def label(self) -> str:
        """The package's path (a single file) or folder (an .emd's) on the machine that shipped it."""
        return self.origin if self.member is None else str(Path(self.origin).parent)

    def __repr__(self) -> str:  # the bytes would flood Dask's logs
        return f"Shipment({self.origin!r}, {len(self.data)} bytes, sha256 {self.digest[:12]})"


def ship_package(origin: str) -> Shipment:
    """Read the package a recipe loads from, as Shipment; refuses an inline EMD, whose files are only findable
    from this process's working folder."""
    if origin.lstrip().startswith("{"):
        raise ModelPackageError(
            "an inline EMD cannot be sent to Dask workers: save it as an .emd file beside its model file (or build "
            "a .dlpk with `geoclassify package`) and pass that path"
        )
    path = Path(origin)
    suffix = path.suffix.lower()
    try:
        if suffix in (".onnx", ".dlpk") or (suffix != ".emd" and zipfile.is_zipfile(path)):
            data, name, member = path.read_bytes(), path.name, None
        else:
            data, name, member = _zip_folder(path), "package.zip", path.name
    except OSError as exc:
        raise ModelPackageError(f"{origin}: cannot read the model package to send it to Dask ({exc})") from None
    return Shipment(hashlib.sha256(data).hexdigest(), name, data, member, origin)


def _zip_folder(emd: Path) -> bytes:
    """The .emd's folder as an uncompressed zip (model files hardly compress), within the package limits."""
    limit = max_package_bytes()
    files = sorted(p for p in emd.parent.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    if len(files) > MAX_PACKAGE_ENTRIES or sum(p.stat().st_size for p in files) > limit:
        raise ModelPackageError(
            f"{emd}: its folder holds too much to send to Dask workers ({len(files)} files); put the .emd and its "
            "files in a folder of their own, or build a .dlpk with `geoclassify package`"
        )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for file in files:
            archive.write(file, file.relative_to(emd.parent).as_posix())
    return buffer.getvalue()
