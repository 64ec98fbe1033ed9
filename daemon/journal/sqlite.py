"""The journal in one SQLite file in the state folder: the default, for one daemon.

One row per file, keyed by its inbox's name and its path relative to the
inbox (daemon.journal.interface), holding the SHA-256 of the content it
describes. A restart (even after kill -9) reads the pending rows back, and a
file whose row says done for the same content is not done again. The row
also keeps, per model, how many times this content killed a worker, so a
poison file is quarantined across daemon restarts too.

Claims are trivial with one node: a pending row can always be claimed, and
the claims live in this object (a restart starts with none). They are kept
anyway, so a caller that writes without claiming fails here as it would
against a shared journal.

A state folder written by an earlier release is migrated when opened
(daemon.journal.sqlite_schema). A file's outcome and its completion webhook
are stored in one transaction (daemon.journal.sqlite_outbox). Only the
supervisor's main thread uses a journal (sqlite3 connections are not shared
between threads); the watcher asks `is_final`, which reads an in-memory
index guarded by a lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from daemon.journal.interface import (
    Admission,
    ClaimLost,
    Entry,
    FileKey,
    LeaseReport,
    State,
    WebhookEvent,
)
from daemon.journal.sqlite_moves import SqliteMoves
from daemon.journal.sqlite_outbox import SqliteOutbox, store_webhook
from daemon.journal.sqlite_schema import COLUMNS, prepare

_WHERE_KEY = "WHERE inbox = ? AND relative = ?"


class SqliteJournal(SqliteOutbox, SqliteMoves):
    """The daemon's durable memory. Open with SqliteJournal.open(state_dir)."""

    FILENAME = "journal.sqlite3"

    def __init__(self, connection: sqlite3.Connection, node: str = "local") -> None:
        self._db = connection
        self._node = node
        self._final_lock = threading.Lock()
        # key -> (size, mtime_ns) of rows in a final state: lets a rescan of
        # 100,000 finished files cost one stat each and no database query.
        self._final: dict[FileKey, tuple[int, int]] = {}
        self._claims: set[FileKey] = set()
        self._load_final_index()

    @classmethod
    def open(cls, state_dir: Path | None, node: str = "local") -> SqliteJournal:
        """Open (creating or migrating) the journal in state_dir; None keeps it in memory (`once`)."""
        if state_dir is None:
            connection = sqlite3.connect(":memory:", isolation_level=None)
        else:
            state_dir.mkdir(parents=True, exist_ok=True)
            # A long busy timeout: another process holding the file (a backup,
            # an operator's sqlite3 shell) should stall us, not crash us.
            connection = sqlite3.connect(
                state_dir / cls.FILENAME, isolation_level=None, timeout=60.0
            )
            connection.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across a crash of the process (kill -9); a
            # power cut may lose the last commits, which the outputs-on-disk
            # check in the supervisor covers.
            connection.execute("PRAGMA synchronous=NORMAL")
        connection.row_factory = sqlite3.Row
        prepare(connection)
        return cls(connection, node)

    def close(self) -> None:
        self._claims.clear()
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- reads -----------------------------------------------------------

    def get(self, key: FileKey) -> Entry | None:
        row = self._db.execute(f"SELECT * FROM files {_WHERE_KEY}", _params(key)).fetchone()
        return _entry(row) if row is not None else None

    def pending(self) -> list[Entry]:
        rows = self._db.execute(
            "SELECT * FROM files WHERE state = ? ORDER BY admitted_at", (State.PENDING.value,)
        ).fetchall()
        return [_entry(row) for row in rows]

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall()
        return {row[0]: row[1] for row in rows}

    def is_final(self, key: FileKey, size: int, mtime_ns: int) -> bool:
        """Called from the watcher's thread; reads only the in-memory index."""
        with self._final_lock:
            return self._final.get(key) == (size, mtime_ns)

    def takeable(self) -> list[FileKey]:
        return []  # one node: every pending row was queued at start

    def departed(self) -> tuple[()]:
        return ()  # one node: it removes every temp file of ours at start anyway

    def problem(self) -> str | None:
        return None  # a local file: a failure to use it is an error, not a wait

    def leases(self) -> LeaseReport:
        return LeaseReport(claims_held=len(self._claims))

    @property
    def node(self) -> str:
        return self._node

    # --- seeing files ------------------------------------------------------

    def admit(self, key: FileKey, size: int, mtime_ns: int, sha256: str) -> Admission:
        now = time.time()
        with self._transaction() as db:
            row = db.execute(f"SELECT * FROM files {_WHERE_KEY}", _params(key)).fetchone()
            if row is not None and row["sha256"] == sha256:
                db.execute(
                    f"UPDATE files SET size = ?, mtime_ns = ?, updated_at = ? {_WHERE_KEY}",
                    (size, mtime_ns, now, *_params(key)),
                )
                if row["state"] == State.PENDING.value:
                    return Admission.PENDING
                self._set_final(key, size, mtime_ns)
                return Admission.UNCHANGED
            # New path, or new content at a known path: start afresh (the
            # attempts of old content say nothing about new content).
            db.execute(
                f"INSERT OR REPLACE INTO files (inbox, relative, {COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, '{}', '[]', NULL, ?, ?, ?)",
                (
                    *_params(key),
                    size,
                    mtime_ns,
                    sha256,
                    State.PENDING.value,
                    row["md_sha256"] if row is not None else None,
                    now,
                    now,
                ),
            )
        self._drop_final(key)
        return Admission.NEW

    def reopen(self, key: FileKey) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE files SET state = ?, attempts = '{}', trail = '[]', error = NULL,"
                f" updated_at = ? {_WHERE_KEY}",
                (State.PENDING.value, time.time(), *_params(key)),
            )
        self._drop_final(key)

    def forget(self, key: FileKey) -> None:
        with self._transaction() as db:
            db.execute(f"DELETE FROM files {_WHERE_KEY}", _params(key))
        self._claims.discard(key)
        self._drop_final(key)

    # --- claims ------------------------------------------------------------

    def claim(self, key: FileKey) -> bool:
        row = self._db.execute(f"SELECT state FROM files {_WHERE_KEY}", _params(key)).fetchone()
        if row is None or row["state"] != State.PENDING.value:
            return False
        self._claims.add(key)
        return True

    def release(self, key: FileKey) -> None:
        self._claims.discard(key)

    def fence(self, key: FileKey) -> None:
        if key not in self._claims:
            raise ClaimLost(key)

    # --- working on a claimed file ------------------------------------------

    def record_attempt(self, key: FileKey, model: str) -> int:
        self.fence(key)
        with self._transaction() as db:
            row = db.execute(f"SELECT attempts FROM files {_WHERE_KEY}", _params(key)).fetchone()
            if row is None:
                raise ClaimLost(key)
            attempts: dict[str, int] = json.loads(row["attempts"])
            attempts[model] = attempts.get(model, 0) + 1
            db.execute(
                f"UPDATE files SET attempts = ?, updated_at = ? {_WHERE_KEY}",
                (json.dumps(attempts), time.time(), *_params(key)),
            )
        return attempts[model]

    def record_trail(self, key: FileKey, trail: list[dict[str, Any]]) -> None:
        self._update(key, "trail = ?", json.dumps(trail))

    def note_outputs(self, key: FileKey, hashes: list[str]) -> None:
        # Ownership of an output is proved by its hash here or in our `.ocr.json`;
        # noting them before the renames covers a crash before the JSON's. (The
        # column's name is from when the Markdown was the only such output.)
        self._update(key, "md_sha256 = ?", " ".join(hashes))

    def mark_done(
        self,
        key: FileKey,
        sha256: str,
        size: int,
        mtime_ns: int,
        *,
        webhook: WebhookEvent | None = None,
        outbox_limit: int | None = None,
    ) -> list[WebhookEvent]:
        return self._finish(key, State.DONE, sha256, size, mtime_ns, None, webhook, outbox_limit)

    def mark_failed(
        self,
        key: FileKey,
        sha256: str,
        size: int,
        mtime_ns: int,
        error: str,
        *,
        webhook: WebhookEvent | None = None,
        outbox_limit: int | None = None,
    ) -> list[WebhookEvent]:
        return self._finish(key, State.FAILED, sha256, size, mtime_ns, error, webhook, outbox_limit)

    def _update(self, key: FileKey, assignment: str, value: object) -> None:
        self.fence(key)
        with self._transaction() as db:
            db.execute(
                f"UPDATE files SET {assignment}, updated_at = ? {_WHERE_KEY}",
                (value, time.time(), *_params(key)),
            )

    def _finish(
        self,
        key: FileKey,
        state: State,
        sha256: str,
        size: int,
        mtime_ns: int,
        error: str | None,
        webhook: WebhookEvent | None,
        outbox_limit: int | None,
    ) -> list[WebhookEvent]:
        """The outcome and its completion event, in one transaction: both or neither."""
        self.fence(key)
        with self._transaction() as db:
            db.execute(
                "UPDATE files SET state = ?, sha256 = ?, size = ?, mtime_ns = ?, error = ?,"
                f" updated_at = ? {_WHERE_KEY}",
                (state.value, sha256, size, mtime_ns, error, time.time(), *_params(key)),
            )
            dropped = [] if webhook is None else store_webhook(db, webhook, outbox_limit)
        self._claims.discard(key)
        self._set_final(key, size, mtime_ns)
        return dropped

    # --- the in-memory index of final rows ----------------------------------

    def _load_final_index(self) -> None:
        rows = self._db.execute(
            "SELECT inbox, relative, size, mtime_ns FROM files WHERE state != ?",
            (State.PENDING.value,),
        ).fetchall()
        with self._final_lock:
            self._final = {FileKey(row[0], row[1]): (row[2], row[3]) for row in rows}

    def _set_final(self, key: FileKey, size: int, mtime_ns: int) -> None:
        with self._final_lock:
            self._final[key] = (size, mtime_ns)

    def _drop_final(self, key: FileKey) -> None:
        with self._final_lock:
            self._final.pop(key, None)


def _params(key: FileKey) -> tuple[str, str]:
    return (key.inbox, key.relative)


def _entry(row: sqlite3.Row) -> Entry:
    return Entry(
        key=FileKey(row["inbox"], row["relative"]),
        size=row["size"],
        mtime_ns=row["mtime_ns"],
        sha256=row["sha256"],
        state=State(row["state"]),
        attempts=json.loads(row["attempts"]),
        trail=json.loads(row["trail"]),
        error=row["error"],
        output_hashes=tuple((row["md_sha256"] or "").split()),
        admitted_at=row["admitted_at"],
    )
