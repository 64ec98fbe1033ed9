"""SQLite state: what was seen, what is pending, what is done or failed.

One row per input path, keyed by path and holding the SHA-256 of the content
it describes. A restart (even after kill -9) reads the pending rows back, and
a file whose row says done for the same content is not done again. The row
also keeps, per model, how many times this content killed a worker, so a
poison file is quarantined across daemon restarts too.

Only the supervisor's main thread uses a Journal (sqlite3 connections are not
shared between threads); the watcher asks `is_final`, which reads an
in-memory index guarded by a lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path        TEXT PRIMARY KEY,
    inbox       TEXT NOT NULL,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    TEXT NOT NULL DEFAULT '{}',
    trail       TEXT NOT NULL DEFAULT '[]',
    error       TEXT,
    md_sha256   TEXT,  -- the hashes of the output set last noted, space-separated
    admitted_at REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_by_state ON files (state, admitted_at);
"""


class State(StrEnum):
    PENDING = "pending"  # admitted, no final outcome yet
    DONE = "done"  # outputs written for this content
    FAILED = "failed"  # error sidecar written for this content (quarantined)


class Admission(StrEnum):
    NEW = "new"  # new path or new content: queue it
    PENDING = "pending"  # already pending (e.g. an event after a restart): keep its place
    UNCHANGED = "unchanged"  # final for the same content: nothing to do


@dataclass(slots=True)
class Entry:
    path: str
    inbox: str
    size: int
    mtime_ns: int
    sha256: str
    state: State
    attempts: dict[str, int] = field(default_factory=dict)
    trail: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    # Hashes of the outputs (other than the JSON) of the set last about to be committed.
    output_hashes: tuple[str, ...] = ()
    admitted_at: float = 0.0


class Journal:
    """The daemon's durable memory. Open with Journal.open(state_dir)."""

    FILENAME = "journal.sqlite3"

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
        self._final_lock = threading.Lock()
        # path -> (size, mtime_ns) of rows in a final state: lets a rescan of
        # 100,000 finished files cost one stat each and no database query.
        self._final: dict[str, tuple[int, int]] = {}
        self._load_final_index()

    @classmethod
    def open(cls, state_dir: Path | None) -> Journal:
        """Open (creating) the journal in state_dir; None keeps it in memory (`once`)."""
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
        connection.executescript(SCHEMA)
        connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        return cls(connection)

    def close(self) -> None:
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

    def get(self, path: Path | str) -> Entry | None:
        row = self._db.execute("SELECT * FROM files WHERE path = ?", (str(path),)).fetchone()
        return _entry(row) if row is not None else None

    def pending(self) -> list[Entry]:
        """Rows still waiting for an outcome, oldest first (read at start-up)."""
        rows = self._db.execute(
            "SELECT * FROM files WHERE state = ? ORDER BY admitted_at", (State.PENDING.value,)
        ).fetchall()
        return [_entry(row) for row in rows]

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall()
        return {row[0]: row[1] for row in rows}

    def is_final(self, path: Path, size: int, mtime_ns: int) -> bool:
        """True when this exact file (path, size, mtime) already has its outcome.

        Called from the watcher's thread; reads only the in-memory index.
        """
        with self._final_lock:
            return self._final.get(str(path)) == (size, mtime_ns)

    # --- writes ----------------------------------------------------------

    def admit(self, path: Path, inbox: Path, size: int, mtime_ns: int, sha256: str) -> Admission:
        """Record a stable file. NEW means: queue it."""
        key = str(path)
        now = time.time()
        with self._transaction() as db:
            row = db.execute("SELECT * FROM files WHERE path = ?", (key,)).fetchone()
            if row is not None and row["sha256"] == sha256:
                db.execute(
                    "UPDATE files SET size = ?, mtime_ns = ?, updated_at = ? WHERE path = ?",
                    (size, mtime_ns, now, key),
                )
                if row["state"] == State.PENDING.value:
                    return Admission.PENDING
                self._set_final(key, size, mtime_ns)
                return Admission.UNCHANGED
            # New path, or new content at a known path: start afresh (the
            # attempts of old content say nothing about new content).
            db.execute(
                "INSERT OR REPLACE INTO files (path, inbox, size, mtime_ns, sha256, state,"
                " attempts, trail, error, md_sha256, admitted_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, '{}', '[]', NULL, ?, ?, ?)",
                (
                    key,
                    str(inbox),
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

    def reopen(self, path: Path) -> None:
        """Make a final row pending again (its outputs were removed by someone)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE files SET state = ?, attempts = '{}', trail = '[]', error = NULL,"
                " updated_at = ? WHERE path = ?",
                (State.PENDING.value, time.time(), str(path)),
            )
        self._drop_final(str(path))

    def record_attempt(self, path: Path, model: str) -> int:
        """Count one worker death for this content on this model; returns the new count."""
        key = str(path)
        with self._transaction() as db:
            row = db.execute("SELECT attempts FROM files WHERE path = ?", (key,)).fetchone()
            if row is None:
                return 1
            attempts: dict[str, int] = json.loads(row["attempts"])
            attempts[model] = attempts.get(model, 0) + 1
            db.execute(
                "UPDATE files SET attempts = ?, updated_at = ? WHERE path = ?",
                (json.dumps(attempts), time.time(), key),
            )
        return attempts[model]

    def record_trail(self, path: Path, trail: list[dict[str, Any]]) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE files SET trail = ?, updated_at = ? WHERE path = ?",
                (json.dumps(trail), time.time(), str(path)),
            )

    def note_outputs(self, path: Path, hashes: list[str]) -> None:
        """Remember the hashes of the outputs about to be renamed into place.

        Ownership of an output is proved by its hash here or in our `.ocr.json`;
        noting them first covers a crash between the renames and the JSON's.
        """
        with self._transaction() as db:
            db.execute(
                "UPDATE files SET md_sha256 = ?, updated_at = ? WHERE path = ?",
                (" ".join(hashes), time.time(), str(path)),
            )

    def mark_done(self, path: Path, sha256: str, size: int, mtime_ns: int) -> None:
        self._finish(path, State.DONE, sha256, size, mtime_ns, None)

    def mark_failed(self, path: Path, sha256: str, size: int, mtime_ns: int, error: str) -> None:
        self._finish(path, State.FAILED, sha256, size, mtime_ns, error)

    def forget(self, path: Path) -> None:
        """Drop a row (the file vanished before its turn)."""
        with self._transaction() as db:
            db.execute("DELETE FROM files WHERE path = ?", (str(path),))
        self._drop_final(str(path))

    def _finish(
        self,
        path: Path,
        state: State,
        sha256: str,
        size: int,
        mtime_ns: int,
        error: str | None,
    ) -> None:
        key = str(path)
        with self._transaction() as db:
            db.execute(
                "UPDATE files SET state = ?, sha256 = ?, size = ?, mtime_ns = ?, error = ?,"
                " updated_at = ? WHERE path = ?",
                (state.value, sha256, size, mtime_ns, error, time.time(), key),
            )
        self._set_final(key, size, mtime_ns)

    # --- the in-memory index of final rows ----------------------------------

    def _load_final_index(self) -> None:
        rows = self._db.execute(
            "SELECT path, size, mtime_ns FROM files WHERE state != ?", (State.PENDING.value,)
        ).fetchall()
        with self._final_lock:
            self._final = {row[0]: (row[1], row[2]) for row in rows}

    def _set_final(self, key: str, size: int, mtime_ns: int) -> None:
        with self._final_lock:
            self._final[key] = (size, mtime_ns)

    def _drop_final(self, key: str) -> None:
        with self._final_lock:
            self._final.pop(key, None)


def _entry(row: sqlite3.Row) -> Entry:
    return Entry(
        path=row["path"],
        inbox=row["inbox"],
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
