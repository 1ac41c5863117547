"""Models converted to ONNX once per content and converter, kept beside the extracted packages.

Converting a Keras ``.h5`` (or any other foreign format) reads every weight and builds a graph; doing that on every
run, and in every worker process, would cost more than classifying a small layer. The key is the SHA-256 of the
source file plus the converter's name and version, so a fixed converter never reuses an old conversion, and a cache
hit needs neither the converter's libraries nor the source format's reader.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from ...atomic import write_bytes_atomically
from ...errors import SettingError
from ..packages import cache_dir


def converted_onnx(source: Path, converter: str, convert: Callable[[], bytes]) -> Path:
    """The cached ONNX file for ``source``; ``convert`` (serialised ONNX bytes) runs only when there is none yet.

    The file is written under a temporary name and renamed into place, so processes sharing a cache see a whole
    conversion or none, and two that convert at once both end with the same file.
    """
    digest = hashlib.sha256(converter.encode() + b"\0")
    with open(source, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    folder = cache_dir() / "converted"
    target = folder / f"{digest.hexdigest()[:32]}.onnx"
    if target.is_file():
        return target
    data = convert()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(target, data, prefix=".convert-")
    except OSError as exc:
        raise SettingError(
            f"{source}: cannot keep the converted model in {folder} ({exc.strerror or exc}); set GEOCLASSIFY_CACHE_DIR "
            "to a writable folder"
        ) from None
    return target
