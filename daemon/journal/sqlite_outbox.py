"""The webhook outbox of the SQLite journal: completion events waiting for their receiver.

A table beside `files` (schema version 3): one row per event, in the order
queued. The sending thread never touches it; the supervisor's main loop
stores an event in the transaction that marks its file done or failed
(`store_webhook`, called by SqliteJournal's finish), reads them all back at
start, and removes one when the sending thread reports it delivered (so a
restart at any point sends an event again at worst, never loses it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager

from daemon.journal.interface import WebhookEvent

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhooks (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    key       TEXT NOT NULL UNIQUE,
    url       TEXT NOT NULL,
    body      TEXT NOT NULL,
    queued_at REAL NOT NULL
)
"""


class SqliteOutbox:
    """The Journal protocol's outbox methods, for SqliteJournal (which provides both attributes)."""

    _db: sqlite3.Connection

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def webhooks(self) -> list[WebhookEvent]:
        return list(
            _events(self._db.execute("SELECT key, url, body, queued_at FROM webhooks ORDER BY seq"))
        )

    def webhook_delivered(self, key: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM webhooks WHERE key = ?", (key,))


def store_webhook(
    db: sqlite3.Connection, event: WebhookEvent, limit: int | None
) -> list[WebhookEvent]:
    """Store `event` in the transaction open on `db`; remove and return the oldest beyond `limit`."""
    # REPLACE deletes the row with this key and inserts a new one with a new
    # seq: the event becomes the newest.
    db.execute(
        "INSERT OR REPLACE INTO webhooks (key, url, body, queued_at) VALUES (?, ?, ?, ?)",
        (event.key, event.url, event.body, event.queued_at),
    )
    if limit is None:
        return []
    excess = db.execute("SELECT COUNT(*) FROM webhooks").fetchone()[0] - limit
    if excess <= 0:
        return []
    dropped = list(
        _events(
            db.execute(
                "SELECT key, url, body, queued_at FROM webhooks ORDER BY seq LIMIT ?", (excess,)
            )
        )
    )
    db.executemany("DELETE FROM webhooks WHERE key = ?", [(e.key,) for e in dropped])
    return dropped


def _events(cursor: sqlite3.Cursor) -> Iterator[WebhookEvent]:
    for row in cursor:
        yield WebhookEvent(key=row[0], url=row[1], body=row[2], queued_at=row[3])
