"""Inputs being moved out of their inbox (archive_dir, failed_dir), in the SQLite journal.

A row is written before the move and removed, with the file's own row, once
the input has left the inbox: a restart finishes a move it finds to the same
destination (daemon.supervising.archiving).
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import AbstractContextManager

from daemon.journal.interface import FileKey

MOVES_SCHEMA = """
CREATE TABLE IF NOT EXISTS moves (
    inbox       TEXT NOT NULL,
    relative    TEXT NOT NULL,
    destination TEXT NOT NULL,
    PRIMARY KEY (inbox, relative)
)
"""

_WHERE_KEY = "WHERE inbox = ? AND relative = ?"


class SqliteMoves:
    """The Journal protocol's move methods, for SqliteJournal (which provides the attributes)."""

    _db: sqlite3.Connection
    _final_lock: threading.Lock
    _final: dict[FileKey, tuple[int, int]]
    _claims: set[FileKey]

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def note_move(self, key: FileKey, destination: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO moves (inbox, relative, destination) VALUES (?, ?, ?)",
                (key.inbox, key.relative, destination),
            )

    def moves(self) -> list[tuple[FileKey, str]]:
        rows = self._db.execute("SELECT inbox, relative, destination FROM moves").fetchall()
        return [(FileKey(row[0], row[1]), row[2]) for row in rows]

    def finish_move(self, key: FileKey) -> None:
        with self._transaction() as db:
            db.execute(f"DELETE FROM moves {_WHERE_KEY}", (key.inbox, key.relative))
            db.execute(f"DELETE FROM files {_WHERE_KEY}", (key.inbox, key.relative))
        with self._final_lock:
            self._final.pop(key, None)
        self._claims.discard(key)
