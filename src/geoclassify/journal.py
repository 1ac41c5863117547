"""Resumable runs: results are saved batch by batch beside the output, so a killed run can be continued.

The journal is a hidden folder next to the output (``.NAME.geoclassify-run``) holding what the run was (inputs,
model, settings) and the results so far, in part files each written atomically (temporary name, then rename),
so a SIGKILL or a power cut loses at most the batches not yet saved. ``--resume`` classifies only what is
missing; the final output is written once, atomically, and the journal removed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from .errors import OutputError
from .settings import journal_features

#: Results are saved at least this often (seconds) and whenever this many features are waiting
#: (GEOCLASSIFY_JOURNAL_FEATURES, read in settings.py: smaller saves more often, in more files).
FLUSH_SECONDS = 1.0
FIELDS = ("targets", "labels", "scores", "coverage")


def journal_folder(out: str | os.PathLike[str]) -> Path:
    path = Path(out)
    return path.parent / f".{path.name}.geoclassify-run"


class Journal:
    """Results of one run so far, keyed by the feature's position in the input."""

    def __init__(self, out: str | os.PathLike[str], fingerprint: dict[str, Any], resume: bool, overwrite: bool) -> None:
        self.folder = journal_folder(out)
        self.out = os.fspath(out)
        self._buffer: list[tuple[np.ndarray, ...]] = []
        self._buffered = 0
        self._last_flush = time.monotonic()
        self._parts = 0
        self.item = -1  # mosaic mode: one result per feature
        self._previous = _nothing()  # what the interrupted run saved: read once on resume, not once per image
        self._lock: weakref.finalize | None = None
        recorded = self.folder / "run.json"
        if self.folder.exists():
            self._hold()  # before anything of another run's is touched
        if self.folder.exists() and recorded.exists():
            if resume:
                previous = json.loads(recorded.read_text())
                if previous != fingerprint:
                    changed = sorted(
                        k for k in fingerprint.keys() | previous.keys() if fingerprint.get(k) != previous.get(k)
                    )
                    raise OutputError(
                        f"cannot resume {self.out!r}: the interrupted run had other {', '.join(changed)}; run the "
                        "same command as before with --resume, or start again with --overwrite"
                    )
                self._parts = len(list(self.folder.glob("part-*.npz")))
                self._previous = self._load()
                return
            if not overwrite:
                raise OutputError(
                    f"a run writing {self.out!r} was interrupted; continue it with --resume (same command), or start "
                    "again with --overwrite"
                )
        elif resume:
            raise OutputError(f"nothing to resume: no interrupted run writing {self.out!r}")
        self.release()
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self._hold()
        _write_atomically(recorded, json.dumps(fingerprint, sort_keys=True).encode())

    def select(self, item: int) -> None:
        """Items mode: what follows belongs to image ``item`` (a feature has one result per image covering it)."""
        self.flush()
        self.item = item

    def saved(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(targets, class index, confidence, coverage) of every feature the interrupted run did (on the selected
        image)."""
        items, *arrays = self._previous
        mine = items == self.item
        return tuple(a[mine] for a in arrays)  # type: ignore[return-value]

    def _load(self) -> list[np.ndarray]:
        parts = sorted(self.folder.glob("part-*.npz"))
        if not parts:
            return _nothing()
        loaded = [np.load(p) for p in parts]
        return [np.concatenate([d[k] for d in loaded]) for k in ("items", *FIELDS)]

    def add(self, targets: np.ndarray, labels: np.ndarray, scores: np.ndarray, coverage: np.ndarray) -> None:
        targets = np.asarray(targets)
        item = np.full(len(targets), self.item, dtype=np.int64)
        self._buffer.append((item, targets, np.asarray(labels), np.asarray(scores), np.asarray(coverage)))
        self._buffered += len(targets)
        if self._buffered >= journal_features() or time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        arrays = {name: np.concatenate([b[i] for b in self._buffer]) for i, name in enumerate(("items", *FIELDS))}
        path = self.folder / f"part-{self._parts:06d}.npz"
        temp = path.with_name(path.name + ".partial")
        with open(temp, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        self._parts += 1
        self._buffer, self._buffered, self._last_flush = [], 0, time.monotonic()

    def settle(self) -> int:
        """After an interruption or a failure: save what is waiting and return how many results are saved (on every
        image); a journal with nothing in it is removed, as there is nothing to resume."""
        self.flush()
        saved = len(self._load()[0])
        if not saved:
            self.finish()
        self.release()  # the same process may resume it (an API user's session)
        return saved

    def finish(self) -> None:
        """The output is written: the journal has served."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.release()

    def _hold(self) -> None:
        handle = _lock(self.folder / "lock", self.out)
        # Released by release(), or when this journal is dropped, or when the process ends, however it ends.
        self._lock = weakref.finalize(self, os.close, handle) if handle is not None else None

    def release(self) -> None:
        """Let another run use this journal."""
        if self._lock is not None:
            self._lock()
            self._lock = None


def _nothing() -> list[np.ndarray]:
    """A journal's arrays (items, targets, labels, scores, coverage) with no rows."""
    empty = np.zeros(0)
    return [empty.astype(np.int64), empty.astype(np.int64), empty.astype(np.int64), empty, empty]


def _lock(path: Path, out: str) -> int | None:
    """Hold an advisory lock on the journal, so two runs writing the same output cannot mix or delete each other's
    results. Where fcntl is missing (Windows) runs are not guarded."""
    try:
        import fcntl
    except ImportError:
        return None
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(handle)
        raise OutputError(
            f"another geoclassify run is writing {out!r} (its journal {os.fspath(path.parent)!r} is in use); wait "
            "for it to finish, or give another --out"
        ) from None
    return handle


def _write_atomically(path: Path, content: bytes) -> None:
    temp = path.with_name(path.name + ".partial")
    temp.write_bytes(content)
    os.replace(temp, path)
