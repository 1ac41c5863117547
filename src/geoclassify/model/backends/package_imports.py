"""What a package's Python code imports: its own files, and the interpreter's libraries, without changing what any
other code in the process imports.

ArcGIS's wrapper puts the inference function's folder first on ``sys.path`` so that helper modules shipped beside
it import. In a process that runs several packages (a server runs jobs in threads) that leaks both ways: one
package's ``_helpers`` is cached in ``sys.modules`` and handed to the next package that imports ``_helpers``, and a
helper a package lacks is found in whatever folder ``sys.path`` names, the working folder among them. So here:

- each loaded function gets a private namespace package, ``geoclassify_prf_<n>_<name>``, whose ``__path__`` is the
  function's folder; the function is its module ``<namespace>.<Name>`` and every helper a sibling
  (``<namespace>._helpers``). These names are unique, so ``sys.path`` is never touched and two packages' helpers
  of the same name never meet; ``pickle`` and ``dataclasses`` find the classes under ``__module__``.
- the package's modules get builtins of their own whose ``__import__`` maps a top-level name the package ships to
  its sibling. That is exact per importing module (it is that module's import statement) and holds in any thread.
  The standard library's names are never the package's, as in ArcGIS, where they are imported before it.
- a finder at the front of ``sys.meta_path`` finds the namespaces' modules only in the package's folder, refusing
  a file that leads outside the package (a symlink); while package code runs in the current context it also finds
  top-level imports of libraries on ``sys.path`` without the working folder and the packages' folders, and maps a
  dynamic ``importlib.import_module("_helpers")`` to the sibling. That last one can only be done by caching the bare
  name in ``sys.modules``; it is taken out again when the package code returns.
"""

from __future__ import annotations

import builtins
import contextlib
import itertools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from importlib import import_module
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import (
    BYTECODE_SUFFIXES,
    EXTENSION_SUFFIXES,
    SOURCE_SUFFIXES,
    ExtensionFileLoader,
    FileFinder,
    ModuleSpec,
    PathFinder,
    SourceFileLoader,
    SourcelessFileLoader,
)
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path
from types import ModuleType
from typing import Any

PREFIX = "geoclassify_prf_"
#: The package whose code the current thread (or context) runs; None outside package code.
current: ContextVar[PackageScope | None] = ContextVar("geoclassify_package_scope", default=None)
#: Live packages by namespace, for the finder (reads and writes of one key are atomic).
_scopes: dict[str, PackageScope] = {}
#: Namespaces of backends that are gone, for the next call into package code to clean up after (see release).
_released: list[str] = []
#: Every folder a function was loaded from, real paths: package code may put its folder on sys.path (Esri's
#: functions often do), and it stays there after the backend is gone.
_package_folders: set[str] = set()
_numbers = itertools.count(1)


class OutsidePackageImport(ImportError):
    """Package code imported a module the package does not hold from a folder it may not import from."""


class PackageScope:
    """One loaded function's namespace: its folder (where its modules are found), the package's folder (which they
    must lie in once symlinks are resolved) and the builtins its modules run with."""

    def __init__(self, folder: Path, boundary: Path, label: str) -> None:
        self.folder = folder
        self.boundary = boundary
        self.namespace = f"{PREFIX}{next(_numbers)}_{label}"
        self.builtins: dict[str, Any] = dict(vars(builtins))
        self.builtins["__import__"] = self._import
        self._helpers: dict[str, bool] = {}
        self._finders: dict[str, FileFinder] = {}
        self._aliases: set[str] = set()
        package = ModuleType(self.namespace, f"the modules of the package at {folder}")
        package.__spec__ = ModuleSpec(self.namespace, None, is_package=True)
        package.__spec__.submodule_search_locations = package.__path__ = [str(folder)]
        package.__package__ = self.namespace
        sweep_released()
        _package_folders.add(os.path.realpath(folder))
        _scopes[self.namespace] = self
        sys.modules[self.namespace] = package

    def function_module(self, path: Path) -> ModuleType:
        """The function's module, registered under its namespace and not yet run (the caller runs it as package
        code): dataclasses and pickle look a class's module up in sys.modules."""
        stem = path.stem if path.stem.isidentifier() else "".join(c if c.isalnum() else "_" for c in path.stem)
        name = f"{self.namespace}.{stem}"
        spec = spec_from_file_location(name, path, loader=self._loader(_SourceLoader, name, str(path)))
        if spec is None or spec.loader is None:
            raise ImportError(f"{path}: not a Python file that can be imported", name=name)
        module = module_from_spec(spec)
        sys.modules[name] = module
        setattr(sys.modules[self.namespace], stem, module)
        return module

    def is_helper(self, top: str) -> bool:
        """Whether a top-level name is a module shipped beside the function. A folder without ``__init__.py`` is
        only a namespace portion, which on ArcGIS's sys.path loses to an installed module of that name."""
        known = self._helpers.get(top)
        if known is None:
            spec = None
            if top.isidentifier() and top not in sys.stdlib_module_names and top not in sys.builtin_module_names:
                spec = self._finder(str(self.folder)).find_spec(f"{self.namespace}.{top}")
            known = spec is not None
            if spec is not None and spec.loader is None:
                installed = PathFinder.find_spec(top, _allowed_path())
                known = installed is None or installed.loader is None
            self._helpers[top] = known
        return known

    def find(self, name: str, path: Sequence[str] | None) -> ModuleSpec | None:
        """A module of the namespace, from the package's files only."""
        for entry in path if path is not None else [str(self.folder)]:
            spec = self._finder(entry).find_spec(name)
            if spec is not None:
                self._check_inside(spec)
                return spec
        return None

    def public(self, name: str) -> str:
        """A module's name as the package's code spells it."""
        return name[len(self.namespace) + 1 :] if name.startswith(self.namespace + ".") else name

    def _import(
        self,
        name: str,
        globals: dict[str, Any] | None = None,
        locals: Any = None,
        fromlist: Sequence[str] | None = (),
        level: int = 0,
    ) -> ModuleType:
        """``__import__`` for the package's modules (see the module docstring); it runs the import as package
        code, so a library imported from a thread the package started is found as on the main path too."""
        with entered(self):
            top = name.partition(".")[0]
            if level == 0 and self.is_helper(top):
                module = builtins.__import__(f"{self.namespace}.{name}", globals, locals, fromlist, 0)
                return module if fromlist else sys.modules[f"{self.namespace}.{top}"]
            return builtins.__import__(name, globals, locals, fromlist, level)

    def _alias(self, name: str) -> ModuleSpec:
        self._aliases.add(name.partition(".")[0])
        return ModuleSpec(name, _AliasLoader(f"{self.namespace}.{name}"))

    def drop_aliases(self) -> None:
        """Take the bare names dynamic imports cached out of sys.modules again (only while they are ours)."""
        while self._aliases:
            try:
                top = self._aliases.pop()
            except KeyError:  # a thread the package started emptied it first
                return
            for name, module in sys.modules.copy().items():
                if (name == top or name.startswith(top + ".")) and _module_name(module) == f"{self.namespace}.{name}":
                    sys.modules.pop(name, None)

    def _finder(self, directory: str) -> FileFinder:
        """A finder per folder of the package, kept here rather than in sys.path_importer_cache (process-wide)."""
        finder = self._finders.get(directory)
        if finder is None:
            finder = FileFinder(
                directory,
                (ExtensionFileLoader, EXTENSION_SUFFIXES),
                (self._loader_factory(_SourceLoader), SOURCE_SUFFIXES),
                (self._loader_factory(_BytecodeLoader), BYTECODE_SUFFIXES),
            )
            self._finders[directory] = finder
        return finder

    def _loader_factory(self, cls: type[_OwnBuiltins]) -> Callable[[str, str], Loader]:
        return lambda name, path: self._loader(cls, name, path)

    def _loader(self, cls: type[_OwnBuiltins], name: str, path: str) -> Any:
        loader = cls(name, path)  # type: ignore[call-arg]
        loader.scope = self
        return loader

    def _check_inside(self, spec: ModuleSpec) -> None:
        locations = [spec.origin] if spec.origin else list(spec.submodule_search_locations or ())
        for location in locations:
            real = Path(location).resolve()
            if not real.is_relative_to(self.boundary):
                name = self.public(spec.name)
                raise OutsidePackageImport(
                    f"the package's module {name!r} ({location}) leads outside the package (to {real}); a package "
                    "may only run its own files: put the file itself in the package, not a link to it",
                    name=name,
                )


class _OwnBuiltins:
    """Runs a package's module with the package's builtins, so its import statements resolve per package."""

    scope: PackageScope

    def exec_module(self, module: ModuleType) -> None:
        module.__builtins__ = self.scope.builtins  # type: ignore[attr-defined]
        super().exec_module(module)  # type: ignore[misc]


class _SourceLoader(_OwnBuiltins, SourceFileLoader):
    pass


class _BytecodeLoader(_OwnBuiltins, SourcelessFileLoader):
    pass


class _AliasLoader(Loader):
    """Loads a bare helper name as the package's own module (replacing the placeholder the import system made)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        sys.modules[module.__name__] = import_module(self.target)


@contextlib.contextmanager
def entered(scope: PackageScope) -> Iterator[None]:
    """Mark the current context as running ``scope``'s code; leaving it drops what dynamic imports cached."""
    token = current.set(scope)
    try:
        yield
    finally:
        current.reset(token)
        if current.get() is not scope and scope._aliases:
            scope.drop_aliases()


class _PackageFinder(MetaPathFinder):
    """See the module docstring."""

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        top, dot, _ = name.partition(".")
        if top.startswith(PREFIX):
            scope = _scopes.get(top)
            return scope.find(name, path) if scope is not None and dot else None
        scope = current.get()
        if scope is None:
            return None  # not package code
        if scope.is_helper(top):
            parent = sys.modules.get(top)
            if not dot or (parent is not None and parent is sys.modules.get(f"{scope.namespace}.{top}")):
                return scope._alias(name)
        return None if dot else _library(name)  # a submodule is found through its parent's own __path__


def _library(name: str) -> ModuleSpec | None:
    """A top-level module package code imports: from the finders that come before Python's path finder (frozen
    modules, setuptools' distutils shim, ...) as usual, else on sys.path without the folders it may not import
    from."""
    for finder in list(sys.meta_path):
        if finder is PathFinder:
            break
        find = getattr(finder, "find_spec", None)
        if finder is not _finder and find is not None:
            spec = find(name, None)
            if spec is not None:
                return spec
    forbidden = _forbidden_entries()
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


def _forbidden_entries() -> set[str]:
    """sys.path entries package code may not import from: the working folder, and the packages' folders (which
    an Esri function may add itself): a package's own modules come from its namespace."""
    try:
        cwd: str | None = os.path.realpath(os.getcwd())
    except OSError:  # the working folder was deleted: nothing can be imported from it anyway
        cwd = None
    folders = set(_package_folders)
    forbidden = set()
    for entry in list(sys.path):
        real = os.path.realpath(entry) if isinstance(entry, str) else None
        if entry in ("", ".") or real == cwd or real in folders:
            forbidden.add(entry)
    return forbidden


def _allowed_path() -> list[str]:
    forbidden = _forbidden_entries()
    return [p for p in sys.path if p not in forbidden]


def _module_name(module: object) -> str | None:
    return vars(module).get("__name__") if isinstance(module, ModuleType) else None


_finder = _PackageFinder()


def install_finder() -> None:
    """Once, at the front of sys.meta_path, so the namespaces' modules are found before Python's path finder
    would find them without the checks; again if something took it out."""
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def public_name(name: str) -> str:
    """A module name without a package namespace, for messages."""
    top, _, rest = name.partition(".")
    return rest if top in _scopes and rest else name


def release(namespace: str, temporary: str | None) -> None:
    """A backend's finalizer (so it must not refer to the backend). The garbage collector runs it at any point,
    possibly inside an import, so it only notes what to undo (``list.append`` is atomic); the next call into
    package code undoes it. The temporary EMD touches no interpreter state: it goes now."""
    _released.append(namespace)
    if temporary:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def sweep_released() -> None:
    """Take released backends' modules out of sys.modules: their namespace, its modules, and any alias."""
    while _released:
        try:
            namespace = _released.pop()
        except IndexError:  # another thread took the last one
            return
        _scopes.pop(namespace, None)
        prefix = namespace + "."
        for name, module in sys.modules.copy().items():
            if name == namespace or name.startswith(prefix) or (_module_name(module) or "").startswith(prefix):
                sys.modules.pop(name, None)
