"""The SQLite journal's webhook outbox: stored with outcomes, kept in order until delivered, bounded, across restarts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon.journal.interface import Admission, FileKey, State, WebhookEvent
from daemon.journal.sqlite import SqliteJournal
from daemon.journal.sqlite_schema import SCHEMA_VERSION

URL = "http://127.0.0.1:9/hook"


def event(key: str, queued_at: float = 1.0, body: str = "{}") -> WebhookEvent:
    return WebhookEvent(key=key, url=URL, body=body, queued_at=queued_at)


def finish(journal: SqliteJournal, stored: WebhookEvent, limit: int = 10) -> list[WebhookEvent]:
    """Finish the file named after the event's key (again, if it was), storing the event with it."""
    key = FileKey("scans", f"{stored.key}.png")
    if journal.admit(key, 1, 1, "a" * 64) is Admission.UNCHANGED:
        journal.reopen(key)
    assert journal.claim(key)
    return journal.mark_done(key, "a" * 64, 1, 1, webhook=stored, outbox_limit=limit)


def test_events_come_back_oldest_first_after_a_reopen(tmp_path: Path) -> None:
    """Stored events outlive the journal object (a restart) and are read back in the order queued."""
    journal = SqliteJournal.open(tmp_path)
    for name in ("k1", "k2", "k3"):
        assert finish(journal, event(name, body=f'{{"n": "{name}"}}'), limit=10) == []
    journal.close()

    reopened = SqliteJournal.open(tmp_path)
    stored = reopened.webhooks()
    assert [e.key for e in stored] == ["k1", "k2", "k3"]
    assert stored[1] == event("k2", body='{"n": "k2"}')


def test_a_key_queued_again_replaces_its_event_and_becomes_the_newest(tmp_path: Path) -> None:
    """One event per key: the same finish queued twice is kept once, with the newer body, last."""
    journal = SqliteJournal.open(tmp_path)
    finish(journal, event("k1", body="old"), limit=10)
    finish(journal, event("k2"), limit=10)
    finish(journal, event("k1", body="new"), limit=10)

    assert [(e.key, e.body) for e in journal.webhooks()] == [("k2", "{}"), ("k1", "new")]


def test_beyond_the_limit_the_oldest_are_dropped_and_returned(tmp_path: Path) -> None:
    """A full outbox removes its oldest events to make room and says which."""
    journal = SqliteJournal.open(tmp_path)
    for name in ("k1", "k2", "k3"):
        finish(journal, event(name), limit=3)

    dropped = finish(journal, event("k4"), limit=3)
    assert [e.key for e in dropped] == ["k1"]
    dropped = finish(journal, event("k5"), limit=2)  # a lowered limit drops two at once
    assert [e.key for e in dropped] == ["k2", "k3"]
    assert [e.key for e in journal.webhooks()] == ["k4", "k5"]


def test_a_delivered_event_is_removed_once(tmp_path: Path) -> None:
    """webhook_delivered removes the event; a second call, or an unknown key, changes nothing."""
    journal = SqliteJournal.open(tmp_path)
    finish(journal, event("k1"), limit=10)
    finish(journal, event("k2"), limit=10)

    journal.webhook_delivered("k1")
    journal.webhook_delivered("k1")
    journal.webhook_delivered("unknown")
    assert [e.key for e in journal.webhooks()] == ["k2"]


def test_a_version_2_journal_gains_the_outbox_and_keeps_its_rows(tmp_path: Path) -> None:
    """A state folder of the previous release (schema 2) is migrated on open: rows kept, outbox added."""
    db = sqlite3.connect(tmp_path / SqliteJournal.FILENAME)
    db.executescript(
        """
        CREATE TABLE files (
            inbox TEXT NOT NULL, relative TEXT NOT NULL, size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL, state TEXT NOT NULL,
            attempts TEXT NOT NULL DEFAULT '{}', trail TEXT NOT NULL DEFAULT '[]',
            error TEXT, md_sha256 TEXT, admitted_at REAL NOT NULL, updated_at REAL NOT NULL,
            PRIMARY KEY (inbox, relative)
        );
        INSERT INTO files VALUES ('scans', 'a.png', 4, 7, 'aa', 'done', '{}', '[]', NULL, NULL, 1, 1);
        PRAGMA user_version=2;
        """
    )
    db.close()

    with capture_logs() as logs:
        journal = SqliteJournal.open(tmp_path)
    entry = journal.get(FileKey("scans", "a.png"))
    assert entry is not None and entry.state is State.DONE and entry.sha256 == "aa"
    assert journal.webhooks() == []
    finish(journal, event("k1"), limit=10)
    assert [e.key for e in journal.webhooks()] == ["k1"]
    assert [(r["event"], r["from_version"]) for r in logs] == [("journal.migrated", 2)]
    journal.close()
    version = sqlite3.connect(tmp_path / SqliteJournal.FILENAME).execute("PRAGMA user_version")
    assert version.fetchone() == (SCHEMA_VERSION,) == (3,)


def test_an_event_that_cannot_be_stored_leaves_the_outcome_unmarked(tmp_path: Path) -> None:
    """Outcome and event are one transaction: when storing the event fails, the file stays pending."""
    journal = SqliteJournal.open(tmp_path)
    journal.admit(FileKey("scans", "k1.png"), 1, 1, "a" * 64)
    journal.close()
    db = sqlite3.connect(tmp_path / SqliteJournal.FILENAME)
    db.execute(  # a real SQLite failure, on command, at the event's INSERT
        "CREATE TRIGGER refuse BEFORE INSERT ON webhooks BEGIN SELECT RAISE(ABORT, 'full'); END"
    )
    db.commit()
    db.close()
    journal = SqliteJournal.open(tmp_path)
    with pytest.raises(sqlite3.IntegrityError, match="full"):
        finish(journal, event("k1"))
    entry = journal.get(FileKey("scans", "k1.png"))
    assert entry is not None and entry.state is State.PENDING
    assert journal.webhooks() == [] and journal.leases().claims_held == 1
