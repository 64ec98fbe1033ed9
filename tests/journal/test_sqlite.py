"""The SQLite journal: exactly-once bookkeeping that survives restarts, keyed by inbox and relative path."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daemon.journal.interface import Admission, FileKey, State
from daemon.journal.sqlite import SqliteJournal
from daemon.journal.sqlite_schema import SCHEMA_VERSION, JournalError

SHA_A = "a" * 64
SHA_B = "b" * 64
A = FileKey("scans", "a.png")
B = FileKey("scans", "sub/b.png")


def test_pending_rows_survive_kill_9(tmp_path: Path) -> None:
    """Rows committed by a process killed with SIGKILL are there for the next one (WAL)."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from daemon.journal.interface import FileKey
        from daemon.journal.sqlite import SqliteJournal
        j = SqliteJournal.open(Path({str(tmp_path)!r}))
        for i in range(50):
            j.admit(FileKey("in", f"{{i}}.png"), i, i, f"{{i:064d}}")
        for i in range(20):
            j.claim(FileKey("in", f"{{i}}.png"))
            j.mark_done(FileKey("in", f"{{i}}.png"), f"{{i:064d}}", i, i)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=Path(__file__).parents[2], check=False
    )
    assert result.returncode == -9
    journal = SqliteJournal.open(tmp_path)
    assert len(journal.pending()) == 30
    assert journal.counts() == {"pending": 30, "done": 20}


def test_uses_write_ahead_logging(tmp_path: Path) -> None:
    """The database file is in WAL mode (readers never block the daemon's writes)."""
    SqliteJournal.open(tmp_path).close()
    connection = sqlite3.connect(tmp_path / SqliteJournal.FILENAME)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# The schema of the release before inbox names, as that release wrote it.
SCHEMA_1 = """
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
    md_sha256   TEXT,
    admitted_at REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_by_state ON files (state, admitted_at);
"""


def _journal_of_version_1(state: Path, rows: list[tuple[object, ...]]) -> None:
    state.mkdir()
    db = sqlite3.connect(state / SqliteJournal.FILENAME, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA_1)
    db.execute("PRAGMA user_version=1")
    db.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.close()


def test_a_journal_of_the_previous_release_is_migrated_on_open(tmp_path: Path) -> None:
    """A version-1 journal (rows by absolute path) opens re-keyed by inbox name: nothing pending or done is lost."""
    state = tmp_path / "state"
    trail = json.dumps([{"model": "qwen", "outcome": "empty_output", "message": "no text"}])
    _journal_of_version_1(
        state,
        [
            ("/srv/scans/a.png", "/srv/scans", 10, 1, SHA_A, "pending", '{"qwen": 1}', trail,
             None, None, 100.0, 101.0),
            ("/srv/scans/sub/b.png", "/srv/scans", 20, 2, SHA_B, "done", "{}", "[]",
             None, "d" * 64, 90.0, 95.0),
            ("/srv/letters/c.pdf", "/srv/letters", 30, 3, "c" * 64, "failed", "{}", "[]",
             "poison", None, 80.0, 85.0),
        ],
    )  # fmt: skip
    journal = SqliteJournal.open(state)
    assert sqlite3.connect(state / SqliteJournal.FILENAME).execute(
        "PRAGMA user_version"
    ).fetchone() == (SCHEMA_VERSION,)
    [pending] = journal.pending()
    assert pending.key == FileKey("scans", "a.png")
    assert (pending.size, pending.mtime_ns, pending.sha256) == (10, 1, SHA_A)
    assert pending.attempts == {"qwen": 1}
    assert pending.trail == json.loads(trail)
    assert pending.admitted_at == 100.0
    done = journal.get(FileKey("scans", "sub/b.png"))
    assert done is not None and done.state is State.DONE and done.output_hashes == ("d" * 64,)
    failed = journal.get(FileKey("letters", "c.pdf"))
    assert failed is not None and failed.state is State.FAILED and failed.error == "poison"
    assert journal.is_final(FileKey("scans", "sub/b.png"), 20, 2)
    assert journal.counts() == {"pending": 1, "done": 1, "failed": 1}
    # The migrated journal keeps working, and opens again without migrating twice.
    assert journal.admit(FileKey("scans", "a.png"), 10, 1, SHA_A) is Admission.PENDING
    journal.close()
    assert SqliteJournal.open(state).counts() == {"pending": 1, "done": 1, "failed": 1}


def test_a_journal_of_a_newer_release_is_refused(tmp_path: Path) -> None:
    """A schema version this release does not know stops the open with a message, untouched."""
    state = tmp_path / "state"
    state.mkdir()
    db = sqlite3.connect(state / SqliteJournal.FILENAME)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(JournalError, match="newer ocr-inbox"):
        SqliteJournal.open(state)


def test_a_move_is_remembered_until_finished(tmp_path: Path) -> None:
    """A noted move survives reopening; finishing it drops the move and the file's row."""
    journal = SqliteJournal.open(tmp_path)
    journal.admit(A, 1, 1, "a" * 64)
    assert journal.claim(A)
    journal.mark_done(A, "a" * 64, 1, 1)
    journal.note_move(A, "/archive/a.png")
    journal.close()
    journal = SqliteJournal.open(tmp_path)
    assert journal.moves() == [(A, "/archive/a.png")]
    assert journal.is_final(A, 1, 1)
    journal.finish_move(A)
    assert journal.moves() == [] and journal.get(A) is None and not journal.is_final(A, 1, 1)
    journal.close()
