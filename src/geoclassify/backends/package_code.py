"""Where a package's Python code runs and what it may import: its own files, and the interpreter's libraries.

ArcGIS's wrapper puts the inference function's folder first on ``sys.path`` so that helper modules shipped beside
it import. That alone still lets a helper come from outside the package: one of the same name imported earlier
(by another package, or from the working folder) is taken from ``sys.modules``, and one the package lacks is
found in whatever folder ``sys.path`` names, the working folder among them. Either runs code the package does not
hold. So while package code runs (under :func:`package_code`), a finder placed before Python's path finder answers
its top-level imports: from the function's folder, with the file inside the package once symlinks are resolved;
else from ``sys.path`` without the working folder and other packages' folders. Installed libraries (stdlib,
site-packages, ``.pth`` and ``PYTHONPATH`` entries) import as usual.
"""

from __future__ import annotations

import contextlib
import os
import site
import sys
import sysconfig
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path
from types import ModuleType

#: How many live backends need each folder on sys.path (two may share one package).
_path_users: Counter[str] = Counter()
#: Folders that were not on sys.path before a backend put them there, so they are taken off again.
_path_added: set[str] = set()
#: (folder, module name) of backends that are gone, for the next load to clean up after (see release).
_released: list[tuple[str, str]] = []
#: Every folder a function was imported from, to tell one package's helper modules from another's.
_function_folders: set[Path] = set()
#: One call into package code at a time: stdout is redirected process-wide, and Esri's functions are not
#: written to be thread-safe.
call_lock = threading.RLock()


class OutsidePackageImport(ImportError):
    """Package code imported a module the package does not hold from a folder it may not import from."""


@dataclass(frozen=True)
class PackageScope:
    """The function's folder (searched first) and the package's folder (which its modules must lie in)."""

    folder: Path
    boundary: Path


#: The scope of the package code running now, and the thread running it (imports elsewhere are not ours).
_active: tuple[int, PackageScope] | None = None


@contextlib.contextmanager
def package_code(scope: PackageScope) -> Iterator[None]:
    """Run package code serialised, importing only as the module docstring says, with its prints sent to stderr:
    stdout belongs to geoclassify (``--json``)."""
    global _active
    with call_lock, contextlib.redirect_stdout(sys.stderr):
        _install_finder()
        previous, _active = _active, (threading.get_ident(), scope)
        try:
            yield
        finally:
            _active = previous


class _PackageFinder(MetaPathFinder):
    """Top-level imports of running package code: see the module docstring."""

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        active = _active
        if active is None or path is not None or active[0] != threading.get_ident():
            return None  # not package code, or a submodule (found through its parent's own __path__)
        scope = active[1]
        spec = PathFinder.find_spec(name, [str(scope.folder)])
        if spec is not None:
            _check_inside(name, spec, scope)
            return spec
        forbidden = _forbidden_entries(scope)
        spec = PathFinder.find_spec(name, [p for p in sys.path if p not in forbidden])
        if spec is not None:
            return spec
        stray = PathFinder.find_spec(name, [p for p in sys.path if p in forbidden])
        if stray is not None:
            where = stray.origin or next(iter(stray.submodule_search_locations or ()), "?")
            raise OutsidePackageImport(
                f"the package has no module {name!r}; the one at {where} is outside the package and not used: "
                "ship the helper module in the package, beside the inference function",
                name=name,
            )
        return None


def _check_inside(name: str, spec: ModuleSpec, scope: PackageScope) -> None:
    locations = [spec.origin] if spec.origin else list(spec.submodule_search_locations or ())
    for location in locations:
        real = Path(location).resolve()
        if not real.is_relative_to(scope.boundary):
            raise OutsidePackageImport(
                f"the package's module {name!r} ({location}) leads outside the package (to {real}); a package may "
                "only run its own files: put the file itself in the package, not a link to it",
                name=name,
            )


def _forbidden_entries(scope: PackageScope) -> set[str]:
    """sys.path entries package code may not import from: the working folder and other packages' folders."""
    try:
        cwd = os.path.realpath(os.getcwd())
    except OSError:  # the working folder was deleted: nothing can be imported from it anyway
        cwd = None
    others = {str(f) for f in _function_folders if f != scope.folder}
    return {p for p in sys.path if p in ("", ".") or os.path.realpath(p) == cwd or p in others}


_finder = _PackageFinder()


def _install_finder() -> None:
    """Once, just before Python's path finder (after the builtin and frozen importers)."""
    if _finder in sys.meta_path:
        return
    position = next((i for i, f in enumerate(sys.meta_path) if f is PathFinder), len(sys.meta_path))
    sys.meta_path.insert(position, _finder)


def use_folder(folder: Path) -> None:
    """Put the function's folder first on sys.path, as ArcGIS's wrapper does, so helper modules shipped beside it
    import (first, before another package's of the same name); it stays while a backend using it lives, because
    the function may import lazily."""
    key = str(folder)
    with call_lock:
        _sweep_released()
        if _path_users[key] == 0 and key not in sys.path:
            _path_added.add(key)
        with contextlib.suppress(ValueError):
            sys.path.remove(key)
        sys.path.insert(0, key)
        _path_users[key] += 1
        _function_folders.add(folder)


def release(folder: str, module_name: str, temporary: str | None) -> None:
    """A backend's finalizer (so it must not refer to the backend). The garbage collector runs it at any point,
    possibly while an import walks sys.path or sys.modules, so it only notes what to undo (``list.append`` is
    atomic); the next backend to load undoes it. The temporary EMD touches no interpreter state: it goes now."""
    _released.append((folder, module_name))
    if temporary:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def _sweep_released() -> None:
    """Take released backends' folders off sys.path (unless another backend uses them) and their modules out of
    sys.modules. Called with ``call_lock`` held."""
    while _released:
        folder, module_name = _released.pop()
        _path_users[folder] -= 1
        if _path_users[folder] <= 0:
            del _path_users[folder]
            if folder in _path_added:
                _path_added.discard(folder)
                with contextlib.suppress(ValueError):
                    sys.path.remove(folder)
        sys.modules.pop(module_name, None)


def forget_foreign_helpers(folder: Path) -> None:
    """Drop cached modules named like a helper this package ships but loaded from elsewhere (another package's
    ``_helpers.py``, a file of the working folder), so the package's import finds its own; whoever imported the
    old module keeps the object. Installed libraries are left alone: replacing them would break the process."""
    own = {p.stem for p in folder.glob("*.py")} | {p.parent.name for p in folder.glob("*/__init__.py")}
    if not own:
        return
    libraries = _library_folders()
    for name, module in sys.modules.copy().items():  # a copy: imports elsewhere may change it
        filename = getattr(module, "__file__", None)
        if name.partition(".")[0] not in own or not filename:
            continue
        path = Path(filename).resolve()
        if not path.is_relative_to(folder) and not any(path.is_relative_to(lib) for lib in libraries):
            del sys.modules[name]


def _library_folders() -> list[Path]:
    names = ("stdlib", "platstdlib", "purelib", "platlib")
    folders = [sysconfig.get_paths().get(n) for n in names] + list(getattr(site, "getsitepackages", list)())
    folders.append(site.getusersitepackages())
    return [Path(f).resolve() for f in folders if f]
