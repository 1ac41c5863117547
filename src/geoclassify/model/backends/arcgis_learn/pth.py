"""Read a PyTorch ``.pth`` without PyTorch and without running it.

A ``.pth`` is a pickle, and unpickling is running a program: any global it names can be imported and called. The
unpickler here knows a handful of globals (the tensor rebuilders, ``OrderedDict`` and the storage types), maps them
to numpy, and refuses every other one *before* importing anything, so a hostile file fails with its global named.

Both of torch's layouts are read: the zip archive (``<name>/data.pkl`` plus one raw file per storage under
``<name>/data/``, torch >= 1.6) and the legacy stream that fastai 1.0.6x forces (magic number, protocol, system
info, the pickled object, the sorted storage keys, then each storage as an int64 element count and raw bytes).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from ....errors import ModelPackageError

#: The legacy format's first pickled value, and its protocol version (torch/serialization.py).
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
#: numpy dtype of each storage type a tensor may name; bfloat16 is read as uint16 and widened.
STORAGE_DTYPES = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "BFloat16Storage": "u2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class _StorageType:
    """What ``torch.FloatStorage`` and its kin unpickle to: a name and a dtype, nothing callable."""

    __slots__ = ("bfloat16", "dtype", "name")

    def __init__(self, name: str, byteorder: str) -> None:
        self.name = name
        self.bfloat16 = name == "BFloat16Storage"
        self.dtype = np.dtype(STORAGE_DTYPES[name]).newbyteorder(byteorder)


class _Storage:
    """One storage named by a persistent id; its bytes arrive later (legacy) or on demand (zip)."""

    __slots__ = ("data", "key", "kind", "numel")

    def __init__(self, key: str, kind: _StorageType, numel: int) -> None:
        self.key = key
        self.kind = kind
        self.numel = numel
        self.data: np.ndarray | None = None


class _Tensor:
    """A tensor as the pickle describes it (storage, offset, size, stride), made an array once bytes are in."""

    __slots__ = ("offset", "size", "storage", "stride")

    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class _Reader:
    """State shared by the unpickler's callbacks for one file: its name, storages, and how to fetch their bytes."""

    def __init__(self, name: str, byteorder: str = "<", fetch: Callable[[str, int], bytes] | None = None) -> None:
        self.name = name
        self.byteorder = byteorder
        self.fetch = fetch
        self.storages: dict[str, _Storage] = {}

    def fail(self, why: str) -> ModelPackageError:
        return ModelPackageError(f"{self.name}: cannot read these weights: {why}")

    def unpickler(self, stream: IO[bytes]) -> pickle.Unpickler:
        reader = self

        class Restricted(pickle.Unpickler):
            def find_class(self, module: str, name: str) -> Any:
                return reader.find_class(module, name)

            def persistent_load(self, pid: Any) -> Any:
                return reader.persistent_load(pid)

        return Restricted(stream)

    def load(self, stream: IO[bytes]) -> Any:
        try:
            return self.unpickler(stream).load()
        except ModelPackageError:
            raise
        except RecursionError:
            raise self.fail("the pickle nests too deeply") from None
        except Exception as exc:  # whatever a malformed pickle makes the unpickler raise; none of it ran code
            raise self.fail(f"not a PyTorch pickle ({type(exc).__name__}: {exc})") from None

    def find_class(self, module: str, name: str) -> Any:
        """The only globals a state dict needs, each mapped to numpy; anything else is refused unimported."""
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return self.rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name, self.byteorder)
        raise ModelPackageError(
            f"{self.name}: refusing to load these weights: the pickle asks for {module}.{name}, which a file of "
            "weights never needs (a .pth is a pickle, and this one would run code). Nothing of it was run. Use the "
            "weights saved by arcgis.learn or ArcGIS Pro, or export the model to ONNX where it was trained."
        )

    def persistent_load(self, pid: Any) -> _Storage:
        """``('storage', type, key, location, numel[, view])``: the storages a pickle's tensors point into."""
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise self.fail(f"unknown persistent id {str(pid)[:80]!r}")
        kind, key, _, numel = pid[1:5]
        if not isinstance(kind, _StorageType) or not isinstance(numel, int) or numel < 0:
            raise self.fail(f"malformed storage reference {str(pid)[:80]!r}")
        key = str(key)
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, kind, numel)
        elif storage.kind.dtype != kind.dtype or storage.numel != numel:
            raise self.fail(f"storage {key} is described two ways")
        view = pid[5] if len(pid) == 6 else None
        if view is not None:  # torch < 0.4 storage views: (view key, offset, size) into the root storage
            if not (isinstance(view, tuple) and len(view) == 3 and all(isinstance(v, int) for v in view[1:])):
                raise self.fail("malformed storage view")
            view_key, view_offset, view_size = view
            if view_offset < 0 or view_size < 0 or view_offset + view_size > numel:
                raise self.fail(f"storage view {view_key} reaches past the end of storage {key}")
            return _View(storage, view_offset, view_size)  # type: ignore[return-value]
        return storage

    def rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, *_: Any, **__: Any) -> _Tensor:
        """``_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])``, lazily."""
        limit = None
        if isinstance(storage, _View):
            limit, storage, offset = storage.offset + storage.size, storage.root, storage.offset + int(offset)
        if not isinstance(storage, _Storage):
            raise self.fail("a tensor does not point into a storage")
        try:
            size, stride, offset = tuple(int(s) for s in size), tuple(int(s) for s in stride), int(offset)
        except (TypeError, ValueError):
            raise self.fail("a tensor has a malformed size or stride") from None
        if len(size) != len(stride) or offset < 0 or any(s < 0 for s in (*size, *stride)):
            raise self.fail("a tensor has a malformed size or stride")
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) if all(size) else offset - 1
        if last >= (storage.numel if limit is None else limit):
            raise self.fail(f"a tensor of size {list(size)} reaches past the end of storage {storage.key}")
        return _Tensor(storage, offset, size, stride)

    def array(self, tensor: _Tensor) -> np.ndarray:
        storage = tensor.storage
        if storage.data is None:
            if self.fetch is None:
                raise self.fail(f"storage {storage.key} has no data")
            storage.data = self.decode(storage, self.fetch(storage.key, storage.numel * storage.kind.dtype.itemsize))
        data = storage.data
        itemsize = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[tensor.offset :], shape=tensor.size, strides=[s * itemsize for s in tensor.stride], writeable=False
        )
        return np.array(view, dtype=data.dtype.newbyteorder("="))

    def decode(self, storage: _Storage, raw: bytes) -> np.ndarray:
        kind = storage.kind
        if len(raw) != storage.numel * kind.dtype.itemsize:
            raise self.fail(
                f"storage {storage.key} holds {len(raw)} bytes, not the {storage.numel * kind.dtype.itemsize} its "
                "tensors need (is the file truncated?)"
            )
        data = np.frombuffer(raw, dtype=kind.dtype)
        if kind.bfloat16:
            data = (data.astype(np.uint32) << 16).view(np.float32)
        return data

    def resolve(self, value: Any, depth: int = 0) -> Any:
        """Replace every tensor reference in dicts, lists and tuples by its array."""
        if depth > 100:
            raise self.fail("the pickle nests too deeply")
        if isinstance(value, _Tensor):
            return self.array(value)
        if isinstance(value, dict):
            resolved = type(value)() if isinstance(value, collections.OrderedDict) else {}
            for key, item in value.items():
                resolved[key] = self.resolve(item, depth + 1)
            return resolved
        if isinstance(value, list | tuple):
            return type(value)(self.resolve(item, depth + 1) for item in value)
        return value


class _View:
    """A legacy storage view: part of a root storage."""

    __slots__ = ("offset", "root", "size")

    def __init__(self, root: _Storage, offset: int, size: int) -> None:
        self.root, self.offset, self.size = root, offset, size


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    """``nn.Parameter``s unpickle to their data: only the numbers matter here."""
    return data


def read_pth(path: Path, name: str | None = None) -> Any:
    """The object a ``.pth`` holds, its tensors as numpy arrays; nothing of the file is run. ``name`` is how errors
    call the file (the package and its ModelFile, rather than the extracted copy)."""
    name = name or str(path)
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path, name)
        with open(path, "rb") as handle:
            return _read_legacy(name, handle)
    except OSError as exc:
        raise ModelPackageError(f"{name}: cannot read ({exc.strerror or exc})") from None


def _read_zip(path: Path, name: str) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if any(n.split("/", 1)[-1].startswith(("code/", "constants.pkl")) for n in names):
            raise ModelPackageError(
                f"{name}: a TorchScript archive, not a fastai state dict; package it as TorchScript "
                '("Framework": "PyTorch", a .pt ModelFile) or export it to ONNX'
            )
        if len(pickles) != 1:
            raise ModelPackageError(f"{name}: not a PyTorch .pth (a zip without one <name>/data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        big = prefix + "byteorder" in names and archive.read(prefix + "byteorder").strip() == b"big"
        byteorder = ">" if big else "<"

        def fetch(key: str, size: int) -> bytes:
            member = f"{prefix}data/{key}"
            if member not in names:
                raise ModelPackageError(f"{name}: storage {key} is missing from the archive ({member})")
            if archive.getinfo(member).file_size != size:  # checked before reading: a claim is not an allocation
                raise ModelPackageError(f"{name}: storage {key} holds other than the {size} bytes its tensors need")
            return archive.read(member)

        reader = _Reader(name, byteorder, fetch)
        with archive.open(pickles[0]) as stream:
            value = reader.load(io.BytesIO(stream.read()))
        return reader.resolve(value)


def _read_legacy(name: str, handle: IO[bytes]) -> Any:
    reader = _Reader(name)
    length = os.fstat(handle.fileno()).st_size
    magic = reader.load(handle) if handle.peek(1)[:1] == b"\x80" else None  # type: ignore[attr-defined]
    if magic != LEGACY_MAGIC:
        raise ModelPackageError(
            f"{name}: not a PyTorch .pth (neither torch's zip archive nor its legacy format); re-save the weights "
            "with arcgis.learn or torch.save"
        )
    protocol = reader.load(handle)
    info = reader.load(handle)
    if protocol != LEGACY_PROTOCOL or not isinstance(info, dict):
        raise reader.fail(f"legacy format protocol {protocol!r}, expected {LEGACY_PROTOCOL}")
    if not info.get("little_endian", True):
        raise reader.fail("the weights were saved on a big-endian machine; re-save them on a little-endian one")
    value = reader.load(handle)
    keys = reader.load(handle)
    if not isinstance(keys, list):
        raise reader.fail("the list of storage keys is missing")
    for key in keys:
        storage = reader.storages.get(str(key))
        if storage is None:
            raise reader.fail(f"storage {key} has data but no tensor")
        header = handle.read(8)
        if len(header) != 8:
            raise reader.fail(f"the file ends before storage {key} (is it truncated?)")
        (numel,) = struct.unpack("<q", header)
        if numel != storage.numel:
            raise reader.fail(f"storage {key} holds {numel} elements, not the {storage.numel} its tensors need")
        size = numel * storage.kind.dtype.itemsize
        if size > length - handle.tell():
            raise reader.fail(f"the file ends inside storage {key} (is it truncated?)")
        storage.data = reader.decode(storage, handle.read(size))
    return reader.resolve(value)


def read_state_dict(path: Path, name: str | None = None) -> dict[str, np.ndarray]:
    """The network's weights from what ``learn.save`` wrote: a bare state dict, or ``{"model": ..., "opt": ...}``
    when saved with the optimizer; a ``module.`` prefix (a model saved from DataParallel) is dropped."""
    name = name or str(path)
    value = read_pth(path, name)
    if isinstance(value, dict) and isinstance(value.get("model"), dict):
        value = value["model"]
    if not isinstance(value, dict) or not value:
        raise ModelPackageError(
            f"{name}: holds {type(value).__name__}, not a state dict of named tensors (what arcgis.learn saves)"
        )
    state: dict[str, np.ndarray] = {}
    for key, array in value.items():
        if not isinstance(key, str) or not isinstance(array, np.ndarray):
            raise ModelPackageError(f"{name}: entry {key!r} is {type(array).__name__}, not a tensor")
        state[key] = array
    if all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: array for key, array in state.items()}
    return state
