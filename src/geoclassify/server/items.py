"""My Content: each user's items (models, rasters, feature layers, results), one folder each under
``STATE/content/ID``, with a name unique among the user's items and the outputs of their unfinished jobs."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .db import Database
from .errors import Conflict, InputError, NotFound
from .jobs import ACTIVE, check_name_free
from .users import User

KINDS = ("model", "raster", "features", "result")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Item:
    id: str
    owner: str
    name: str
    kind: str
    path: str
    size: int
    created: float
    job_id: str | None
    info: dict[str, Any]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Item:
        return cls(
            row["id"],
            row["owner"],
            row["name"],
            row["kind"],
            row["path"],
            row["size"],
            row["created"],
            row["job_id"],
            json.loads(row["info"]),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "owner": self.owner,
            "size": self.size,
            "created": self.created,
            "jobId": self.job_id,
            "info": self.info,
        }


def check_name(name: str, what: str = "name") -> str:
    """A user's item name: 1 to 128 printable characters, kept as given (files are named apart from it)."""
    if not isinstance(name, str) or not name.strip() or len(name) > 128 or not name.isprintable():
        raise InputError(f"{what} {name!r}: give 1 to 128 printable characters")
    return name.strip()


def file_stem(name: str) -> str:
    """A file or layer name made of the item's name (letters, digits, _ . - only)."""
    return _UNSAFE.sub("_", name).strip("._") or "item"


class ItemStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.root = db.state / "content"
        self.root.mkdir(exist_ok=True)

    def incoming(self) -> Path:
        """A fresh folder for an upload on its way in (moved into place by :meth:`add`, or removed)."""
        folder = self.root / f".incoming-{uuid.uuid4().hex}"
        folder.mkdir()
        return folder

    def add(self, owner: str, name: str, kind: str, folder: Path, main: Path, info: dict[str, Any]) -> Item:
        """Move ``folder`` (holding ``main``, the item's file) into the content as a new item."""
        item_id = uuid.uuid4().hex
        final = self.root / item_id
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        with self.db.write() as con:
            check_name_free(con, owner, name)
            folder.rename(final)
            con.execute(
                "INSERT INTO items (id, owner, name, kind, path, size, created, info) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    item_id,
                    owner,
                    name,
                    kind,
                    str(final / main.relative_to(folder)),
                    size,
                    time.time(),
                    json.dumps(info),
                ),
            )
        return self.get(item_id)

    def get(self, item_id: str, user: User | None = None) -> Item:
        rows = self.db.read("SELECT * FROM items WHERE id = ?", item_id)
        if not rows or (user is not None and not user.admin and rows[0]["owner"] != user.name):
            raise NotFound(f"there is no item {item_id!r}")
        return Item.from_row(rows[0])

    def list(self, user: User, kind: str | None = None) -> list[Item]:
        where, args = [], []
        if not user.admin:
            where.append("owner = ?")
            args.append(user.name)
        if kind is not None:
            if kind not in KINDS:
                raise InputError(f"kind {kind!r}: use one of {', '.join(KINDS)}")
            where.append("kind = ?")
            args.append(kind)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return [Item.from_row(r) for r in self.db.read(f"SELECT * FROM items {clause} ORDER BY created, id", *args)]

    def rename(self, item_id: str, user: User, name: str) -> Item:
        item = self.get(item_id, user)
        name = check_name(name)
        if name != item.name:
            with self.db.write() as con:
                check_name_free(con, item.owner, name)
                con.execute("UPDATE items SET name = ? WHERE id = ?", (name, item_id))
        return self.get(item_id)

    def delete(self, item_id: str, user: User) -> None:
        """Remove the item and its files; refused while a job that has not ended reads it."""
        item = self.get(item_id, user)
        with self.db.write() as con:
            busy = con.execute(
                "SELECT id FROM jobs WHERE status IN (?, ?, ?) AND (' ' || uses || ' ') LIKE ?",
                (*ACTIVE, f"% {item_id} %"),
            ).fetchone()
            if busy:
                raise Conflict(f"item {item.name!r} is an input of job {busy['id']}, which has not ended")
            con.execute("DELETE FROM items WHERE id = ?", (item_id,))
        shutil.rmtree(self.root / item_id, ignore_errors=True)
