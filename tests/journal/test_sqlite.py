"""The journal: exactly-once bookkeeping that survives restarts."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from daemon.journal.sqlite import Admission, Journal, State

SHA_A = "a" * 64
SHA_B = "b" * 64


def test_new_then_pending_then_unchanged(tmp_path: Path) -> None:
    """A new file is NEW; seen again while pending it keeps its place; once done it is UNCHANGED."""
    journal = Journal.open(tmp_path)
    path, inbox = tmp_path / "in" / "a.png", tmp_path / "in"
    assert journal.admit(path, inbox, 10, 1, SHA_A) is Admission.NEW
    assert journal.admit(path, inbox, 10, 1, SHA_A) is Admission.PENDING
    journal.mark_done(path, SHA_A, 10, 1)
    assert journal.admit(path, inbox, 10, 2, SHA_A) is Admission.UNCHANGED
    assert journal.get(path).state is State.DONE  # type: ignore[union-attr]


def test_changed_content_is_new_and_forgets_attempts(tmp_path: Path) -> None:
    """New content at a known path is admitted afresh, without the old content's attempt counts."""
    journal = Journal.open(tmp_path)
    path, inbox = tmp_path / "a.png", tmp_path
    journal.admit(path, inbox, 10, 1, SHA_A)
    assert journal.record_attempt(path, "qwen") == 1
    assert journal.record_attempt(path, "qwen") == 2
    journal.mark_failed(path, SHA_A, 10, 1, "poison")
    assert journal.admit(path, inbox, 11, 2, SHA_B) is Admission.NEW
    entry = journal.get(path)
    assert entry is not None
    assert entry.state is State.PENDING and entry.attempts == {} and entry.sha256 == SHA_B


def test_final_index_answers_without_the_database(tmp_path: Path) -> None:
    """is_final matches exactly (path, size, mtime) of finished files, and survives reopening."""
    journal = Journal.open(tmp_path)
    path = tmp_path / "a.png"
    journal.admit(path, tmp_path, 10, 5, SHA_A)
    assert not journal.is_final(path, 10, 5)
    journal.mark_done(path, SHA_A, 10, 5)
    assert journal.is_final(path, 10, 5)
    assert not journal.is_final(path, 10, 6)
    journal.close()
    assert Journal.open(tmp_path).is_final(path, 10, 5)


def test_pending_rows_survive_kill_9(tmp_path: Path) -> None:
    """Rows committed by a process killed with SIGKILL are there for the next one (WAL)."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from daemon.journal.sqlite import Journal
        j = Journal.open(Path({str(tmp_path)!r}))
        for i in range(50):
            j.admit(Path(f"/in/{{i}}.png"), Path("/in"), i, i, f"{{i:064d}}")
        for i in range(20):
            j.mark_done(Path(f"/in/{{i}}.png"), f"{{i:064d}}", i, i)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=Path(__file__).parents[2], check=False
    )
    assert result.returncode == -9
    journal = Journal.open(tmp_path)
    assert len(journal.pending()) == 30
    assert journal.counts() == {"pending": 30, "done": 20}


def test_trail_and_markdown_hash_are_kept(tmp_path: Path) -> None:
    """The fallback trail and the hashes of the output set about to be committed are stored per file."""
    journal = Journal.open(tmp_path)
    path = tmp_path / "a.png"
    journal.admit(path, tmp_path, 1, 1, SHA_A)
    journal.record_trail(path, [{"model": "qwen", "outcome": "empty_output"}])
    journal.note_outputs(path, ["c" * 64, "d" * 64])
    entry = journal.get(path)
    assert entry is not None
    assert entry.trail == [{"model": "qwen", "outcome": "empty_output"}]
    assert entry.output_hashes == ("c" * 64, "d" * 64)


def test_forget_and_reopen(tmp_path: Path) -> None:
    """A vanished file's row is dropped; a finished row can be made pending again."""
    journal = Journal.open(tmp_path)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    journal.admit(a, tmp_path, 1, 1, SHA_A)
    journal.forget(a)
    assert journal.get(a) is None
    journal.admit(b, tmp_path, 1, 1, SHA_B)
    journal.mark_done(b, SHA_B, 1, 1)
    journal.reopen(b)
    assert journal.get(b).state is State.PENDING  # type: ignore[union-attr]
    assert not journal.is_final(b, 1, 1)


def test_uses_write_ahead_logging(tmp_path: Path) -> None:
    """The database file is in WAL mode (readers never block the daemon's writes)."""
    Journal.open(tmp_path).close()
    connection = sqlite3.connect(tmp_path / Journal.FILENAME)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
