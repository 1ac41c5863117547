"""Files that appear whole or not at all: written under a temporary name beside their place, then renamed.

Readers that share a folder (threads, worker processes, a Dask worker's cache) never see half a file, and a
failure leaves nothing behind. Errors are the caller's to word: :class:`OSError` passes through.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(target: Path, write: Callable[[Path], None], prefix: str = ".partial-") -> Path:
    """Call ``write`` on a temporary path in ``target``'s folder, then move it onto ``target``."""
    handle, staging = tempfile.mkstemp(prefix=prefix, suffix=".part", dir=target.parent)
    os.close(handle)
    try:
        write(Path(staging))
        os.replace(staging, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
    return target


def write_bytes_atomically(target: Path, data: bytes, prefix: str = ".partial-") -> Path:
    return write_atomically(target, lambda path: path.write_bytes(data), prefix)
