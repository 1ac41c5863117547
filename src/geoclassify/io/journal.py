"""Resumable runs: results are saved batch by batch beside the output, so a killed run can be continued.

The journal is a hidden folder next to the output (``.NAME.geoclassify-run``) holding what the run was (the
identity of every input and the settings that change results, see :mod:`identity`) and the results so far, in
part files. ``--resume`` classifies only what is missing, and only when nothing it depends on changed; the final
output is written once, atomically, and the journal removed.

Every file is written durably (temporary name, fsync, rename, fsync of its folder), so a SIGKILL or a power cut
leaves each whole or absent and loses at most the batches not yet saved. A new journal is made complete (lock and
run record) under a temporary name and renamed into place, and an existing one is touched only under its lock: of
two runs started at one instant on one output, one owns the journal and the other is told another run writes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import time
import weakref
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from .. import settings
from ..core.predictions import BatchResult
from ..errors import GeoclassifyError, JournalError, OutputError, RunCancelled, RunInterrupted
from .identity import differences

#: Results are saved at least this often (seconds) and whenever this many features are waiting
#: (GEOCLASSIFY_JOURNAL_FEATURES, read in settings.py: smaller saves more often, in more files).
FLUSH_SECONDS = 1.0
FIELDS = ("targets", "labels", "scores", "coverage")  # a BatchResult's, in its order
#: Layout of run.json: {"format": FORMAT, "run": the run's fingerprint}. Journals of other layouts are not resumed.
FORMAT = 2
RECORD = "run.json"
AFRESH = "run again with «overwrite» to start afresh"


def journal_folder(out: str | os.PathLike[str], layer: str | None = None) -> Path:
    """The hidden folder beside ``out`` holding a run's results so far; one per layer when a run writes a named
    layer, so two runs adding two layers to one GeoPackage keep apart."""
    path = Path(out)
    named = f".{layer}" if layer else ""
    return path.parent / f".{path.name}{named}.geoclassify-run"


class Journal:
    """Results of one run so far, keyed by the feature's position in the input."""

    def __init__(
        self,
        out: str | os.PathLike[str],
        fingerprint: dict[str, Any],
        resume: bool,
        overwrite: bool,
        layer: str | None = None,
    ) -> None:
        self.folder = journal_folder(out, layer)
        self.out = os.fspath(out)
        self._buffer: list[tuple[np.ndarray, ...]] = []
        self._buffered = 0
        self._last_flush = time.monotonic()
        self._parts = 0  # number of the next part file
        self._saved = 0  # results in the part files
        self.item = -1  # mosaic mode: one result per feature
        self._previous = _nothing()  # what the interrupted run saved: read once on resume, not once per image
        self._lock: weakref.finalize | None = None
        try:
            self._open(fingerprint, resume, overwrite)
        except GeoclassifyError:
            self.release()
            raise
        except OSError as exc:
            self.release()
            raise self._cannot_write(exc) from None
        except BaseException:
            self.release()
            raise

    def _open(self, fingerprint: dict[str, Any], resume: bool, overwrite: bool) -> None:
        folder = self.folder
        present = folder.is_symlink() or folder.exists()
        if present and (folder.is_symlink() or not folder.is_dir()):
            if not overwrite:
                raise JournalError(
                    f"{os.fspath(folder)!r} is in the way of the journal of a run writing {self.out!r} (geoclassify "
                    f"keeps a folder there); move that file away, or {AFRESH}"
                )
            folder.unlink()
        elif present:
            self._hold(folder)  # before anything of another run's is touched
            parts = _part_files(folder)
            if parts and resume:
                self._check(fingerprint)
                self._previous = self._load(parts)
                self._saved = len(self._previous[0])
                self._parts = 1 + max(_number(p) for p in parts)
                return
            if parts and not overwrite:
                raise OutputError(
                    f"a run writing {self.out!r} was interrupted; continue it with «resume» (same command), or start "
                    "again with «overwrite»"
                )
            # --overwrite, or a run that ended before it saved anything (killed, say): nothing to keep.
            shutil.rmtree(folder)
            self.release()
        elif resume:
            raise OutputError(f"nothing to resume: no interrupted run writing {self.out!r}")
        self._create(fingerprint)

    def _create(self, fingerprint: dict[str, Any]) -> None:
        """Make the journal whole under a temporary name, locked, then rename it into place: a rename does not
        replace a folder with files in it, so a journal another run made meanwhile stays its own."""
        staging = Path(tempfile.mkdtemp(prefix=f"{self.folder.name}.new-", dir=self.folder.parent))
        try:
            self._hold(staging)
            record = json.dumps({"format": FORMAT, "run": fingerprint}, sort_keys=True).encode()
            _write_durably(staging / RECORD, lambda handle: handle.write(record))
            try:
                os.rename(staging, self.folder)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    raise _busy(self.out, self.folder) from None
                raise
            _sync_folder(self.folder.parent)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _check(self, fingerprint: dict[str, Any]) -> None:
        """Refuse to resume when an input or a setting that changes results is not what the interrupted run had."""
        path = self.folder / RECORD
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise self._damaged(path, "is missing") from None
        except json.JSONDecodeError as exc:
            raise self._damaged(path, f"is not JSON ({exc.msg} at line {exc.lineno})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise self._damaged(path, f"cannot be read ({exc})") from None
        if not isinstance(record, dict) or not isinstance(record.get("run"), dict):
            raise self._damaged(path, "is not a run record")
        if record.get("format") != FORMAT:
            raise OutputError(
                f"cannot resume {self.out!r}: the interrupted run was saved by another version of geoclassify, so its "
                f"inputs cannot be checked; {AFRESH}"
            )
        reasons = differences(record["run"], fingerprint)
        if reasons:
            raise OutputError(
                f"cannot resume {self.out!r}: {'; '.join(reasons)}. The saved results are kept: undo the change and "
                f"run with «resume», or {AFRESH}"
            )

    def select(self, item: int) -> None:
        """Items mode: what follows belongs to image ``item`` (a feature has one result per image covering it)."""
        self.flush()
        self.item = item

    def saved(self) -> BatchResult:
        """The results of every feature the interrupted run did (on the selected image)."""
        items, *arrays = self._previous
        mine = items == self.item
        return BatchResult(*(a[mine] for a in arrays))

    def _load(self, parts: list[Path]) -> list[np.ndarray]:
        loaded = []
        for path in parts:
            try:
                with np.load(path) as data:  # closed at once: a long run has many parts
                    arrays = [np.asarray(data[k]) for k in ("items", *FIELDS)]
            except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
                raise self._damaged(path, f"cannot be read as saved results ({exc})") from None
            if len({len(a) for a in arrays}) != 1:
                raise self._damaged(path, "holds arrays of different lengths")
            loaded.append(arrays)
        return [np.concatenate(column) for column in zip(*loaded, strict=True)] if loaded else _nothing()

    def add(self, result: BatchResult) -> None:
        item = np.full(len(result), self.item, dtype=np.int64)
        self._buffer.append((item, *(np.asarray(getattr(result, name)) for name in FIELDS)))
        self._buffered += len(result)
        waiting = self._buffered >= settings.current().journal_features
        if waiting or time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        arrays = {name: np.concatenate([b[i] for b in self._buffer]) for i, name in enumerate(("items", *FIELDS))}
        path = self.folder / f"part-{self._parts:06d}.npz"
        try:
            _write_durably(path, lambda handle: np.savez(handle, **arrays))
        except OSError as exc:
            raise self._cannot_write(exc) from None
        self._parts += 1
        self._saved += len(arrays["items"])
        self._buffer, self._buffered, self._last_flush = [], 0, time.monotonic()

    def settle(self) -> int:
        """After an interruption or a failure: save what is waiting and return how many results are saved (on every
        image); a journal with nothing in it is removed, as there is nothing to resume."""
        try:
            self.flush()
        except JournalError:  # no room to save them: the resumed run classifies them again
            self._buffer, self._buffered = [], 0
        if not self._saved:
            self.finish()
        self.release()  # the same process may resume it (an API user's session)
        return self._saved

    def finish(self) -> None:
        """The output is written: the journal has served."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.release()

    def _hold(self, folder: Path) -> None:
        handle = _lock(folder / "lock", self.out, self.folder)
        # Released by release(), or when this journal is dropped, or when the process ends, however it ends.
        self._lock = weakref.finalize(self, os.close, handle) if handle is not None else None

    def release(self) -> None:
        """Let another run use this journal."""
        if self._lock is not None:
            self._lock()
            self._lock = None

    def _cannot_write(self, exc: OSError) -> JournalError:
        where = os.fspath(self.folder)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return JournalError(
                f"the disk is full: results cannot be saved in {where!r}; free some space (results saved there before "
                "stay valid)"
            )
        return JournalError(
            f"cannot keep the results of the run writing {self.out!r} in {where!r} ({exc.strerror or exc}); check "
            "that you may write there, or give another «output»"
        )

    def _damaged(self, path: Path, what: str) -> JournalError:
        return JournalError(
            f"the journal of the interrupted run writing {self.out!r} is damaged: {os.fspath(path)!r} {what}; {AFRESH}"
        )


def _nothing() -> list[np.ndarray]:
    """A journal's arrays (items, targets, labels, scores, coverage) with no rows."""
    empty = np.zeros(0)
    return [empty.astype(np.int64), empty.astype(np.int64), empty.astype(np.int64), empty, empty]


def _part_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("part-*.npz") if p.name[5:-4].isdigit())


def _number(part: Path) -> int:
    return int(part.name[5:-4])


def _busy(out: str, folder: Path) -> OutputError:
    return OutputError(
        f"another geoclassify run is writing {out!r} (its journal {os.fspath(folder)!r} is in use); wait for it to "
        "finish, or give another «output»"
    )


def _lock(path: Path, out: str, folder: Path) -> int | None:
    """Hold an advisory lock on the journal, so two runs writing the same output cannot mix or delete each other's
    results. Where fcntl is missing (Windows) runs are not guarded."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except (FileNotFoundError, NotADirectoryError):  # the journal went away meanwhile: another run replaced it
        raise _busy(out, folder) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # The lock must be on the journal's lock file, not on one another run deleted while this one waited.
        if os.stat(path).st_ino != os.fstat(handle).st_ino:
            raise BlockingIOError
    except (BlockingIOError, FileNotFoundError):
        os.close(handle)
        raise _busy(out, folder) from None
    return handle


def _write_durably(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write under a temporary name, fsync, rename into place and fsync the folder: after a power cut the file is
    whole or absent. A failure (a full disk) removes the temporary file."""
    temp = path.with_name(path.name + ".partial")
    try:
        with open(temp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; Windows cannot open a folder, and needs no such step)."""
    try:
        handle = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # some file systems cannot sync a folder
            raise
    finally:
        os.close(handle)


#: What a run's saved results are of, by its mode ("images": a run without a feature layer).
_UNITS = {"mosaic": "features", "images": "images"}


@contextlib.contextmanager
def keeping_results(journal: Journal | None, mode: str, total: int) -> Iterator[None]:
    """On Ctrl-C or a failure, save what the journal holds and say how to go on from it."""
    try:
        yield
    except KeyboardInterrupt:
        saved = journal.settle() if journal is not None else 0
        if not saved:
            raise
        done = (
            f"{saved} of {total} features"
            if mode == "mosaic"
            else f"{saved} of {total} images"
            if mode == "images"
            else f"{saved} results (feature and image)"
        )
        raise RunInterrupted(f"interrupted; {done} are saved: run the same command with «resume» to continue") from None
    except RunCancelled:
        if journal is not None:  # a cancelled run is over: nothing of it is kept
            journal.finish()
        raise
    except GeoclassifyError as exc:
        saved = journal.settle() if journal is not None else 0
        if not saved:
            raise
        # The same exception goes on, its class and attributes intact; only its message gains the way forward, on
        # the same line unless the message has several (a model's traceback).
        message = exc.message
        message += "\n" if "\n" in message else (" " if message.endswith(".") else ". ")
        exc.args = (
            f"{message}The {saved} {_UNITS.get(mode, 'results')} classified before the failure "
            "are saved; fix the cause and run the same command with «resume» to go on from there.",
            *exc.args[1:],
        )
        raise
    except BaseException:  # any other failure: keep what was saved, and leave no journal when nothing was
        if journal is not None:
            journal.settle()
        raise
