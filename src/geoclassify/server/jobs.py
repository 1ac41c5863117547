"""The job state machine, kept in SQLite and moved only by conditional updates, whoever moves it.

States: ``accepted`` (queued) -> ``running`` (a worker holds a lease) -> ``successful`` | ``failed``;
``running`` -> ``cancelling`` -> ``dismissed`` when a user cancels, and ``accepted`` -> ``dismissed`` at once for
a job that has not started. A lease that runs out puts a job back to ``accepted`` (up to its attempts), or ends it
``failed`` with "worker lost". Every step that ends a job checks that the job is still in the state and under the
lease the mover believes it holds, in the same transaction: a worker that lost its lease, or whose job was
cancelled meanwhile, cannot publish, so each job has at most one result and a cancelled job stays cancelled.
Esri's and OGC's status words are two views of these states (:mod:`.status`).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .db import Database
from .errors import Conflict, NotFound
from .users import User

ACCEPTED, RUNNING, CANCELLING = "accepted", "running", "cancelling"
SUCCESSFUL, FAILED, DISMISSED = "successful", "failed", "dismissed"
ACTIVE = (ACCEPTED, RUNNING, CANCELLING)
FINAL = (SUCCESSFUL, FAILED, DISMISSED)


@dataclass(frozen=True)
class Job:
    id: str
    owner: str
    process: str
    status: str
    request: str
    output_name: str | None
    inputs: dict[str, Any]
    created: float
    started: float | None
    finished: float | None
    updated: float
    progress: int
    attempts: int
    max_attempts: int
    worker: str | None
    lease_expires: float | None
    result: dict[str, Any] | None
    messages: list[dict[str, Any]]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        return cls(
            id=row["id"],
            owner=row["owner"],
            process=row["process"],
            status=row["status"],
            request=row["request"],
            output_name=row["output_name"],
            inputs=json.loads(row["inputs"]),
            created=row["created"],
            started=row["started"],
            finished=row["finished"],
            updated=row["updated"],
            progress=row["progress"],
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            worker=row["worker"],
            lease_expires=row["lease_expires"],
            result=json.loads(row["result"]) if row["result"] else None,
            messages=json.loads(row["messages"]),
        )


def new_id() -> str:
    return uuid.uuid4().hex


def _message(level: str, text: str) -> str:
    return json.dumps({"level": level, "text": text, "time": time.time()})


_APPEND = "messages = json_insert(messages, '$[#]', json(?))"


class JobStore:
    """Jobs in the shared database; every method is one transaction (or one read)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- the API's side -----------------------------------------------------------------------------------------

    def submit(
        self,
        owner: str,
        process: str,
        request: str,
        *,
        output_name: str | None = None,
        inputs: dict[str, Any] | None = None,
        uses: list[str] | None = None,
        max_attempts: int = 1,
        job_id: str | None = None,
    ) -> Job:
        """Queue a job; refused when its output name is taken by an item or by another job that has not ended."""
        job_id = job_id or new_id()
        now = time.time()
        with self.db.write() as con:
            if output_name is not None:
                check_name_free(con, owner, output_name)
            con.execute(
                "INSERT INTO jobs (id, owner, process, status, request, output_name, inputs, uses, created, updated, "
                "max_attempts, messages) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, json_array(json(?)))",
                (
                    job_id,
                    owner,
                    process,
                    ACCEPTED,
                    request,
                    output_name,
                    json.dumps(inputs or {}),
                    " ".join(uses or ()),
                    now,
                    now,
                    max_attempts,
                    _message("info", "Submitted."),
                ),
            )
        return self.get(job_id)

    def get(self, job_id: str, user: User | None = None) -> Job:
        """The job, if ``user`` may see it (its owner or an admin, while not dismissed through OGC); NotFound
        otherwise, as for no job at all. Without ``user`` (the server's own use) any job."""
        rows = self.db.read("SELECT * FROM jobs WHERE id = ?", job_id)
        if not rows or (user is not None and (rows[0]["hidden"] or (not user.admin and rows[0]["owner"] != user.name))):
            raise NotFound(f"there is no job {job_id!r}")
        return Job.from_row(rows[0])

    def list(
        self,
        user: User,
        *,
        processes: list[str] | None = None,
        statuses: list[str] | None = None,
        created_from: float | None = None,
        created_to: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        """The jobs ``user`` may see, newest first, filtered as OGC's job list asks."""
        where, args = ["hidden = 0"], []
        if not user.admin:
            where.append("owner = ?")
            args.append(user.name)
        for column, values in (("process", processes), ("status", statuses)):
            if values:
                where.append(f"{column} IN ({', '.join('?' * len(values))})")
                args.extend(values)
        if created_from is not None:
            where.append("created >= ?")
            args.append(created_from)
        if created_to is not None:
            where.append("created <= ?")
            args.append(created_to)
        sql = f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY created DESC, id LIMIT ? OFFSET ?"
        return [Job.from_row(r) for r in self.db.read(sql, *args, limit, offset)]

    def cancel(self, job_id: str) -> Job:
        """A queued job is dismissed at once and never starts; a running one is asked to stop (its worker sees
        ``cancelling`` within a second and ends it ``dismissed``); an ended job is left as it is."""
        now = time.time()
        with self.db.write() as con:
            con.execute(
                f"UPDATE jobs SET status = ?, finished = ?, updated = ?, {_APPEND} WHERE id = ? AND status = ?",
                (DISMISSED, now, now, _message("warning", "Cancelled before it started."), job_id, ACCEPTED),
            )
            con.execute(
                f"UPDATE jobs SET status = ?, updated = ?, {_APPEND} WHERE id = ? AND status = ?",
                (CANCELLING, now, _message("warning", "Cancel requested."), job_id, RUNNING),
            )
        return self.get(job_id)

    def hide(self, job_id: str) -> None:
        """OGC's dismiss of an ended job: it leaves both APIs' listings (its result item stays in My Content)."""
        with self.db.write() as con:
            con.execute("UPDATE jobs SET hidden = 1, updated = ? WHERE id = ?", (time.time(), job_id))

    # -- the workers' side --------------------------------------------------------------------------------------

    def claim(self, worker: str, lease: float, max_running: int) -> Job | None:
        """Take the oldest queued job under a lease, unless ``max_running`` jobs run already."""
        if not self.db.read("SELECT 1 FROM jobs WHERE status = ? LIMIT 1", ACCEPTED):
            return None  # the common case while idle: a read, no write lock
        now = time.time()
        with self.db.write() as con:
            running = con.execute("SELECT count(*) FROM jobs WHERE status IN (?, ?)", (RUNNING, CANCELLING)).fetchone()[
                0
            ]
            if running >= max_running:
                return None
            row = con.execute(
                "SELECT id, attempts FROM jobs WHERE status = ? ORDER BY created, id LIMIT 1", (ACCEPTED,)
            ).fetchone()
            if row is None:
                return None
            con.execute(
                f"UPDATE jobs SET status = ?, worker = ?, lease_expires = ?, attempts = attempts + 1, "
                f"started = coalesce(started, ?), updated = ?, {_APPEND} WHERE id = ?",
                (
                    RUNNING,
                    worker,
                    now + lease,
                    now,
                    now,
                    _message(
                        "info",
                        "Executing." if row["attempts"] == 0 else f"Executing again (attempt {row['attempts'] + 1}).",
                    ),
                    row["id"],
                ),
            )
        return self.get(row["id"])

    def heartbeat(self, job_id: str, worker: str, lease: float | None, progress: int | None) -> str | None:
        """Renew the lease (when ``lease``) and record progress; the job's status while this worker holds it,
        None once it does not (the lease ran out and the job moved on)."""
        now = time.time()
        sets, args = ["updated = ?"], [now]
        if lease is not None:
            sets.append("lease_expires = ?")
            args.append(now + lease)
        if progress is not None:
            sets.append("progress = max(progress, ?)")
            args.append(progress)
        with self.db.write() as con:
            con.execute(
                f"UPDATE jobs SET {', '.join(sets)} WHERE id = ? AND worker = ? AND status IN (?, ?)",
                (*args, job_id, worker, RUNNING, CANCELLING),
            )
        return self.held_status(job_id, worker)

    def held_status(self, job_id: str, worker: str) -> str | None:
        """The job's status if ``worker`` still holds it: one indexed read, cheap enough to poll twice a second."""
        rows = self.db.read("SELECT status, worker FROM jobs WHERE id = ?", job_id)
        if not rows or rows[0]["worker"] != worker or rows[0]["status"] not in (RUNNING, CANCELLING):
            return None
        return rows[0]["status"]

    def add_message(self, job_id: str, level: str, text: str) -> None:
        with self.db.write() as con:
            con.execute(f"UPDATE jobs SET {_APPEND} WHERE id = ?", (_message(level, text), job_id))

    def publish(
        self,
        job_id: str,
        worker: str,
        result: dict[str, Any],
        item: dict[str, Any] | None = None,
        move: Callable[[], None] | None = None,
        text: str = "Succeeded.",
    ) -> str:
        """End a job ``successful`` with ``result`` and, for a classification, its result ``item`` (whose file
        ``move`` puts in place, under the same lock), all or nothing. Returns "published", or why not:
        "cancelled" (the job is dismissed instead), "lost" (another worker has it now) or "conflict" (the output
        name was taken meanwhile; the job is failed)."""
        now = time.time()
        with self.db.write() as con:
            row = con.execute("SELECT status, worker, owner, output_name FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["worker"] != worker or row["status"] not in (RUNNING, CANCELLING):
                return "lost"
            if row["status"] == CANCELLING:
                _end(con, job_id, DISMISSED, "warning", "Cancelled.", now)
                return "cancelled"
            if item is not None:
                try:
                    check_name_free(con, row["owner"], item["name"], job_id)
                except Conflict as exc:
                    _end(con, job_id, FAILED, "error", str(exc), now)
                    return "conflict"
                if move is not None:
                    move()
                con.execute(
                    "INSERT INTO items (id, owner, name, kind, path, size, created, job_id, info) "
                    "VALUES (:id, :owner, :name, :kind, :path, :size, :created, :job_id, :info)",
                    {**item, "owner": row["owner"], "created": now, "job_id": job_id, "info": json.dumps(item["info"])},
                )
            con.execute("UPDATE jobs SET result = ?, progress = 100 WHERE id = ?", (json.dumps(result), job_id))
            _end(con, job_id, SUCCESSFUL, "info", text, now)
        return "published"

    def finish(self, job_id: str, worker: str, status: str, level: str, text: str) -> bool:
        """End a job ``failed`` or ``dismissed`` if ``worker`` still holds it (a cancelling job always ends
        dismissed: the user's cancel wins over a failure it caused)."""
        now = time.time()
        with self.db.write() as con:
            row = con.execute("SELECT status, worker FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["worker"] != worker or row["status"] not in (RUNNING, CANCELLING):
                return False
            if row["status"] == CANCELLING:
                status, level, text = DISMISSED, "warning", "Cancelled."
            _end(con, job_id, status, level, text, now)
        return True

    def release(self, job_id: str, worker: str, text: str) -> bool:
        """Queue a job again without spending an attempt: its worker is stopping (the server shuts down)."""
        now = time.time()
        with self.db.write() as con:
            cursor = con.execute(
                f"UPDATE jobs SET status = ?, worker = NULL, lease_expires = NULL, attempts = max(attempts - 1, 0), "
                f"updated = ?, {_APPEND} WHERE id = ? AND worker = ? AND status = ?",
                (ACCEPTED, now, _message("info", text), job_id, worker, RUNNING),
            )
            con.execute(
                f"UPDATE jobs SET status = ?, finished = ?, updated = ?, {_APPEND} "
                "WHERE id = ? AND worker = ? AND status = ?",
                (DISMISSED, now, now, _message("warning", "Cancelled."), job_id, worker, CANCELLING),
            )
        return cursor.rowcount == 1

    # -- the sweeper's side -------------------------------------------------------------------------------------

    def expire(self, worker: str | None = None, before: float | None = None) -> None:
        """Let the leases of ``worker`` (seen dead), or of every worker but those named ``before`` run out now,
        so the next sweep moves their jobs on without waiting for the lease."""
        now = time.time()
        with self.db.write() as con:
            if worker is not None:
                con.execute(
                    "UPDATE jobs SET lease_expires = ? WHERE worker = ? AND status IN (?, ?)",
                    (now, worker, RUNNING, CANCELLING),
                )
            if before is not None:
                con.execute(
                    "UPDATE jobs SET lease_expires = min(lease_expires, ?) WHERE status IN (?, ?)",
                    (before, RUNNING, CANCELLING),
                )

    def sweep(self) -> list[tuple[str, str]]:
        """Move on the jobs whose lease ran out: queued again while attempts remain, else failed "worker lost";
        a job being cancelled ends dismissed. Returns each job that moved with its new state."""
        now = time.time()
        moved: list[tuple[str, str]] = []
        with self.db.write() as con:
            rows = con.execute(
                "SELECT id, status, attempts, max_attempts FROM jobs WHERE status IN (?, ?) AND lease_expires < ?",
                (RUNNING, CANCELLING, now),
            ).fetchall()
            for row in rows:
                if row["status"] == CANCELLING:
                    _end(con, row["id"], DISMISSED, "warning", "Cancelled (its worker was lost).", now)
                    moved.append((row["id"], DISMISSED))
                elif row["attempts"] < row["max_attempts"]:
                    con.execute(
                        f"UPDATE jobs SET status = ?, worker = NULL, lease_expires = NULL, updated = ?, {_APPEND} "
                        "WHERE id = ?",
                        (
                            ACCEPTED,
                            now,
                            _message(
                                "warning",
                                f"Its worker was lost; queued again (attempt {row['attempts'] + 1} of "
                                f"{row['max_attempts']}).",
                            ),
                            row["id"],
                        ),
                    )
                    moved.append((row["id"], ACCEPTED))
                else:
                    _end(con, row["id"], FAILED, "error", f"worker lost ({row['attempts']} attempts)", now)
                    moved.append((row["id"], FAILED))
        return moved


def _end(con: sqlite3.Connection, job_id: str, status: str, level: str, text: str, now: float) -> None:
    con.execute(
        f"UPDATE jobs SET status = ?, finished = ?, updated = ?, lease_expires = NULL, {_APPEND} WHERE id = ?",
        (status, now, now, _message(level, text), job_id),
    )


def check_name_free(con: sqlite3.Connection, owner: str, name: str, job_id: str | None = None) -> None:
    """Names are unique per user, across items and the outputs of jobs that have not ended."""
    if con.execute("SELECT 1 FROM items WHERE owner = ? AND name = ?", (owner, name)).fetchone():
        raise Conflict(f"an item named {name!r} exists in your content; choose another output name")
    taken = con.execute(
        "SELECT id FROM jobs WHERE owner = ? AND output_name = ? AND status IN (?, ?, ?) AND id != ?",
        (owner, name, *ACTIVE, job_id or ""),
    ).fetchone()
    if taken:
        raise Conflict(f"job {taken['id']} will write an item named {name!r}; choose another output name")
