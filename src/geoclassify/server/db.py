"""The one SQLite database in ``--state`` that both APIs and every worker share (WAL, so readers never wait).

Every change is a short transaction taken with ``BEGIN IMMEDIATE``, so two processes that both want to move a
job (a worker publishing, a user cancelling, the sweeper re-queueing) are ordered, and each sees the state the
other left. Commits are synchronous (``synchronous=FULL``): a job the API has acknowledged survives a SIGKILL
or a power cut.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    job_id TEXT UNIQUE,
    info TEXT NOT NULL DEFAULT '{}',
    UNIQUE (owner, name)
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    process TEXT NOT NULL,
    status TEXT NOT NULL,
    request TEXT NOT NULL,
    output_name TEXT,
    inputs TEXT NOT NULL DEFAULT '{}',
    uses TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    updated REAL NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 1,
    worker TEXT,
    lease_expires REAL,
    result TEXT,
    messages TEXT NOT NULL DEFAULT '[]',
    hidden INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, created);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, created);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Database:
    """Connections to ``STATE/jobs.sqlite``, one per thread (sqlite3 connections are not shared across threads)."""

    def __init__(self, state: str | os.PathLike[str]) -> None:
        self.state = Path(state)
        self.state.mkdir(parents=True, exist_ok=True)
        self.path = self.state / "jobs.sqlite"
        self._local = threading.local()
        self._writing = threading.Lock()
        self.connection().executescript(SCHEMA)

    def connection(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA busy_timeout=30000")
            self._local.con = con
        return con

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One transaction that holds the write lock from its first statement, committed on success."""
        con = self.connection()
        # Threads of one process queue here, where a release wakes the next at once; SQLite's busy handler (left
        # to order the processes) sleeps in growing steps, which a loaded API would feel.
        with self._writing:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def read(self, sql: str, *args: object) -> list[sqlite3.Row]:
        return self.connection().execute(sql, args).fetchall()

    def setting(self, key: str, default: str | None = None) -> str | None:
        rows = self.read("SELECT value FROM settings WHERE key = ?", key)
        return rows[0]["value"] if rows else default

    def set_setting(self, key: str, value: str) -> None:
        with self.write() as con:
            con.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
