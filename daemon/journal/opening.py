"""Which journal a daemon (or `ocr-inbox status`) opens, and the node it speaks for.

`[state] url` empty: the SQLite file in `state.dir` (one daemon). A
postgresql:// URL: the shared journal (daemon.journal.postgres), whose driver
is imported only then.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

from daemon.journal.interface import Journal, JournalUnusable
from daemon.settings.sections import StateSettings


def default_node(state_dir: Path) -> str:
    """The host's name and a short hash of the absolute state folder.

    Not the pid: a daemon restarted with the same folder is the same node, so
    it takes its own claims back at once instead of waiting for their leases
    to run out, and removes its own temp files. Two daemons on one machine
    need two state folders anyway (each SQLite journal, and each node's
    identity, lives there), so they differ without any setting.
    """
    digest = hashlib.sha256(os.path.abspath(state_dir).encode()).hexdigest()[:8]
    host = socket.gethostname().split(".")[0] or "host"
    return f"{host}-{digest}"


def node_of(state: StateSettings) -> str:
    return state.node or default_node(state.dir)


def open_journal(state: StateSettings, *, patient: bool = True) -> Journal:
    """The configured journal, open. Raises JournalUnusable for what only new settings fix.

    `patient`: wait (with backoff, in-process) while the database is away;
    False makes a passing failure a JournalUnusable too (`ocr-inbox status`).
    """
    node = node_of(state)
    if not state.url:
        from daemon.journal.sqlite import SqliteJournal
        from daemon.journal.sqlite_schema import JournalError

        try:
            return SqliteJournal.open(state.dir, node)
        except JournalError as error:
            raise JournalUnusable(f"{state.dir}: {error}") from error
    import psycopg

    from daemon.journal.postgres.connection import Database, read_password, redact
    from daemon.journal.postgres.journal import PostgresJournal

    password = read_password(Path(state.password_file) if state.password_file else None)
    database = Database(state.url, password, f"ocr-inbox {node}", patient=patient)
    try:
        return PostgresJournal.open(database, node, state.lease_seconds)
    except psycopg.Error as error:  # only when not patient: the server is away
        raise JournalUnusable(
            f"{redact(state.url)}: cannot reach the database: {str(error).strip()}"
        ) from error
