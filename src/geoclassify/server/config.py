"""The server's settings, shared by the web process and its workers (which read them from ``--state``)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Uploads larger than this are refused while they arrive (GEOCLASSIFY_SERVER_MAX_UPLOAD, bytes).
MAX_UPLOAD = 4 * 1024**3
#: A worker that has not renewed its lease for this long is taken for dead (GEOCLASSIFY_SERVER_LEASE, seconds).
LEASE_SECONDS = 15.0
#: Results up to this many features are also sent inline, as an Esri FeatureSet, in ``outObjects``.
INLINE_FEATURES = 10_000
#: A job whose worker vanished is queued again at least this many times (more if its retryOnFailures says so).
WORKER_RETRIES = 2


def default_state() -> Path:
    """The user's data directory (XDG), where a server keeps its jobs and content unless told otherwise."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "geoclassify" / "server"


@dataclass(frozen=True)
class ServerConfig:
    """``workers`` worker processes run one job each; ``data_roots`` are the folders ``{"uri": ...}`` inputs may
    name; ``trust_code`` lets packages with Python inference functions run; ``allow_remote`` allows
    ``{"url": ...}`` inputs (public http(s) addresses only)."""

    state: Path
    data_roots: tuple[Path, ...] = ()
    workers: int = 1
    scheduler: str | None = None
    trust_code: bool = False
    allow_remote: bool = False
    max_upload: int = field(default_factory=lambda: int(os.environ.get("GEOCLASSIFY_SERVER_MAX_UPLOAD", MAX_UPLOAD)))
    lease: float = field(default_factory=lambda: float(os.environ.get("GEOCLASSIFY_SERVER_LEASE", LEASE_SECONDS)))
    inline_features: int = INLINE_FEATURES
    worker_retries: int = WORKER_RETRIES

    @property
    def sweep_interval(self) -> float:
        """How often lost workers are looked for: a dead worker's job moves on within lease + one sweep."""
        return max(0.2, min(2.0, self.lease / 4))

    def save(self) -> None:
        """Write the settings where the workers read them."""
        data = asdict(self)
        data["state"] = os.fspath(self.state)
        data["data_roots"] = [os.fspath(p) for p in self.data_roots]
        path = self.state / "server.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, path)

    @classmethod
    def load(cls, state: Path) -> ServerConfig:
        data = json.loads((state / "server.json").read_text())
        data["state"] = Path(data["state"])
        data["data_roots"] = tuple(Path(p) for p in data["data_roots"])
        return cls(**data)
