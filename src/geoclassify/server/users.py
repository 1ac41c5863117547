"""Users and their API tokens. A token is shown once, when the user is added; only its SHA-256 is stored (tokens
are 256 random bits, so a fast hash is enough: there is nothing to guess from)."""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass

from .db import Database
from .errors import Conflict, InputError, NotFound

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


@dataclass(frozen=True)
class User:
    name: str
    admin: bool = False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Users:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, name: str, admin: bool = False) -> str:
        """Add ``name`` and return its new token."""
        if not NAME.match(name):
            raise InputError(f"user name {name!r}: use letters, digits and _ . @ - (at most 64, starting alike)")
        token = "gc_" + secrets.token_urlsafe(32)
        try:
            with self.db.write() as con:
                con.execute(
                    "INSERT INTO users (name, token_hash, admin, created) VALUES (?, ?, ?, ?)",
                    (name, token_hash(token), int(admin), time.time()),
                )
        except sqlite3.IntegrityError:
            raise Conflict(f"user {name!r} exists; remove it first to give it a new token") from None
        return token

    def remove(self, name: str) -> None:
        with self.db.write() as con:
            if con.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 0:
                raise NotFound(f"there is no user {name!r}")

    def all(self) -> list[User]:
        return [User(r["name"], bool(r["admin"])) for r in self.db.read("SELECT name, admin FROM users ORDER BY name")]

    def by_token(self, token: str) -> User | None:
        rows = self.db.read("SELECT name, admin FROM users WHERE token_hash = ?", token_hash(token))
        return User(rows[0]["name"], bool(rows[0]["admin"])) if rows else None
