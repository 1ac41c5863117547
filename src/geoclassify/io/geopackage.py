"""Replace or add one layer of an existing GeoPackage, never touching its other layers.

OGR writes the new layer under a temporary name inside the same file; one SQLite transaction then drops the old
layer (if any) and gives the new one its name. A failure or a SIGKILL at any point leaves the old layer as it was:
before the transaction commits, only the temporary layer exists (the next run writing the file removes it), and
SQLite rolls back a transaction cut short. pyogrio can neither rename nor delete a layer, so the transaction is
plain SQL on the GeoPackage's own tables (the spec's metadata tables, GDAL's feature counts, the R-tree index and
its triggers), as GDAL's own layer rename does it.
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from ..errors import OutputError, OutputExistsError

TEMPORARY_PREFIX = "geoclassify_partial_"
_TEMPORARY = re.compile(rf"^{TEMPORARY_PREFIX}(\d+)_[0-9a-f]{{8}}$")
#: Metadata tables whose rows name a layer in ``table_name`` (those present in a file are updated).
_METADATA = (
    "gpkg_contents",
    "gpkg_geometry_columns",
    "gpkg_extensions",
    "gpkg_ogr_contents",
    "gpkg_data_columns",
    "gpkg_metadata_reference",
    "gpkg_tile_matrix_set",
    "gpkg_tile_matrix",
    "gpkgext_relations",
)
_QUOTED = re.compile(r'"(?:[^"]|"")*"|\'(?:[^\']|\'\')*\'')


def temporary_name() -> str:
    """A layer name no user gives, carrying the writer's process id so a later run can tell a dead run's leftover."""
    return f"{TEMPORARY_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"


def layers(path: Path) -> list[str]:
    """The layers of a GeoPackage as OGR lists them: the tables of ``gpkg_contents``, then any other table or view
    of the user's (OGR shows those too, and writes a table without geometry unregistered when the file has some)."""
    with _connect(path) as db:
        return _layers(db)


def find_layer(path: Path, name: str) -> str | None:
    """The layer that ``name`` denotes, as the file spells it (SQLite table names ignore case); a name of the
    GeoPackage's own tables is refused."""
    with _connect(path) as db:
        return _existing(db, name, path)


def replace_layer(path: Path, temporary: str, name: str, overwrite: bool) -> None:
    """Give layer ``temporary`` the name ``name`` in one transaction, dropping a layer of that name first (only with
    ``overwrite``: one that appeared since the run was checked is refused, and the temporary layer removed)."""
    with _connect(path) as db:
        db.execute("PRAGMA legacy_alter_table = ON")  # views naming the old layer then name the new one
        db.execute("BEGIN IMMEDIATE")
        try:
            existing = _existing(db, name, path)
            if existing is not None and not overwrite:
                raise OutputExistsError(
                    f"output {os.fspath(path)!r} already has a layer {existing!r}; pass «overwrite» to replace that "
                    "layer (the other layers are kept)"
                )
            place = None
            if existing is not None:
                row = db.execute("SELECT rowid FROM gpkg_contents WHERE table_name = ?", (existing,)).fetchone()
                place = row[0] if row else None
                _drop(db, existing)
            _rename(db, temporary, name)
            if place is not None:
                _move_contents_row(db, name, place)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


def drop_layer(path: Path, name: str) -> None:
    """Remove a layer (the temporary one of a failed run) in one transaction."""
    with _connect(path) as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            _drop(db, name)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


def remove_leftovers(path: Path) -> list[str]:
    """Drop the temporary layers that runs killed while writing left in the file (their process is gone)."""
    dead = [
        layer for layer in layers(path) if (match := _TEMPORARY.match(layer)) and not process_alive(int(match.group(1)))
    ]
    for layer in dead:
        drop_layer(path, layer)
    return dead


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a staging file or layer of a live run is not touched)."""
    if pid == os.getpid():
        return True
    if sys.platform == "win32":  # os.kill would end the process there
        import ctypes

        kernel = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        kernel.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    try:
        with closing(sqlite3.connect(path, isolation_level=None, timeout=30)) as db:
            yield db
    except sqlite3.Error as exc:
        raise OutputError(f"cannot update GeoPackage {os.fspath(path)!r}: {exc}") from None


def _layers(db: sqlite3.Connection) -> list[str]:
    registered = [row[0] for row in db.execute("SELECT table_name FROM gpkg_contents")]
    known = {name.lower() for name in registered} | _internal(db)
    others = db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY rowid").fetchall()
    return registered + [row[0] for row in others if row[0].lower() not in known]


def _internal(db: sqlite3.Connection) -> set[str]:
    """Lower-cased names of the tables that make up the GeoPackage rather than hold data: its metadata, SQLite's,
    and each layer's R-tree index with the R-tree's own tables."""
    names = {row[0].lower() for row in db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    internal = {n for n in names if n.startswith(("gpkg_", "gpkgext_", "sqlite_"))}
    for table, column in db.execute("SELECT table_name, column_name FROM gpkg_geometry_columns"):
        rtree = f"rtree_{table}_{column}".lower()
        internal |= {rtree + suffix for suffix in ("", "_node", "_parent", "_rowid")} & names
    return internal


def _existing(db: sqlite3.Connection, name: str, path: Path | None = None) -> str | None:
    if name.lower() in _internal(db):
        where = f"output {os.fspath(path)!r}: " if path is not None else ""
        raise OutputError(f"{where}{name!r} is one of the GeoPackage's own tables; choose another «output_layer»")
    return next((layer for layer in _layers(db) if layer.lower() == name.lower()), None)


def _metadata_tables(db: sqlite3.Connection) -> list[str]:
    present = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return [
        table
        for table in _METADATA
        if table in present and any(col[1] == "table_name" for col in db.execute(f'PRAGMA table_info("{table}")'))
    ]


def _rtree_tables(db: sqlite3.Connection, layer: str) -> list[str]:
    columns = [
        row[0] for row in db.execute("SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (layer,))
    ]
    names = {row[0].lower(): row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return [
        names[f"rtree_{layer}_{column}".lower()] for column in columns if f"rtree_{layer}_{column}".lower() in names
    ]


def _drop(db: sqlite3.Connection, layer: str) -> None:
    for rtree in _rtree_tables(db, layer):
        db.execute(f"DROP TABLE {_quote(rtree)}")
    kind = db.execute("SELECT type FROM sqlite_master WHERE name = ? COLLATE NOCASE", (layer,)).fetchone()
    for table in _metadata_tables(db):
        db.execute(f'DELETE FROM "{table}" WHERE lower(table_name) = lower(?)', (layer,))
    if kind is not None:  # its triggers go with it
        db.execute(f"DROP {'VIEW' if kind[0] == 'view' else 'TABLE'} {_quote(layer)}")


def _rename(db: sqlite3.Connection, old: str, new: str) -> None:
    """GDAL's layer rename: table, R-tree, metadata rows, and the triggers (recreated under the new names)."""
    triggers = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?", (old,)
    ).fetchall()
    for trigger, _ in triggers:
        db.execute(f"DROP TRIGGER {_quote(trigger)}")
    rtrees = _rtree_tables(db, old)
    db.execute(f"ALTER TABLE {_quote(old)} RENAME TO {_quote(new)}")
    for rtree in rtrees:
        db.execute(f"ALTER TABLE {_quote(rtree)} RENAME TO {_quote('rtree_' + new + rtree[len('rtree_' + old) :])}")
    for table in _metadata_tables(db):
        db.execute(f'UPDATE "{table}" SET table_name = ? WHERE table_name = ?', (new, old))
    db.execute("UPDATE gpkg_contents SET identifier = ? WHERE table_name = ? AND identifier = ?", (new, new, old))
    for _, sql in triggers:
        db.execute(_renamed_in(sql, old, new))


def _move_contents_row(db: sqlite3.Connection, layer: str, rowid: int) -> None:
    """Give the layer's ``gpkg_contents`` row the old layer's place, so OGR lists the layers in the order they had
    (a default of "the first layer" keeps meaning the same one)."""
    columns = [col[1] for col in db.execute("PRAGMA table_info(gpkg_contents)")]
    values = db.execute(f"SELECT {', '.join(map(_quote, columns))} FROM gpkg_contents WHERE table_name = ?", (layer,))
    row = values.fetchone()
    if row is None:
        return
    db.execute("DELETE FROM gpkg_contents WHERE table_name = ?", (layer,))
    names = ", ".join(["rowid", *map(_quote, columns)])
    db.execute(f"INSERT INTO gpkg_contents ({names}) VALUES ({', '.join('?' * (len(columns) + 1))})", (rowid, *row))


def _renamed_in(sql: str, old: str, new: str) -> str:
    """``sql`` with ``old`` replaced inside every quoted identifier and string literal (where GDAL's triggers name
    their table); an unquoted mention would be missed, so it is refused rather than left pointing nowhere."""

    def swap(match: re.Match[str]) -> str:
        token = match.group(0)
        quote = token[0]
        text = token[1:-1].replace(quote * 2, quote).replace(old, new)
        return quote + text.replace(quote, quote * 2) + quote

    renamed = _QUOTED.sub(swap, sql)
    if old in _QUOTED.sub("", renamed):
        raise OutputError(f"cannot rename a GeoPackage trigger that names {old!r} without quotes: {sql}")
    return renamed


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
