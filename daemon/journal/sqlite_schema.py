"""The SQLite journal's tables, and bringing a journal written by an earlier release up to date.

SCHEMA_VERSION 1 keyed rows by absolute path; 2 by inbox name and relative
path; 3 added the webhook outbox (daemon.journal.sqlite_outbox). A journal
is migrated when opened, in one transaction; a newer one is refused.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import structlog

from daemon.journal.interface import FileKey
from daemon.journal.sqlite_moves import MOVES_SCHEMA
from daemon.journal.sqlite_outbox import OUTBOX_SCHEMA

log = structlog.get_logger("daemon.journal.sqlite")

SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    inbox       TEXT NOT NULL,
    relative    TEXT NOT NULL,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    TEXT NOT NULL DEFAULT '{}',
    trail       TEXT NOT NULL DEFAULT '[]',
    error       TEXT,
    md_sha256   TEXT,  -- the hashes of the output set last noted, space-separated
    admitted_at REAL NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (inbox, relative)
);
CREATE INDEX IF NOT EXISTS files_by_state ON files (state, admitted_at);
"""
SCHEMA += MOVES_SCHEMA.strip() + ";\n" + OUTBOX_SCHEMA.strip() + ";\n"

COLUMNS = (
    "size, mtime_ns, sha256, state, attempts, trail, error, md_sha256, admitted_at, updated_at"
)


class JournalError(Exception):
    """The journal cannot be opened as it is (a newer release wrote it)."""


def prepare(db: sqlite3.Connection) -> None:
    """Create the schema in a new journal, or bring an older one up to SCHEMA_VERSION."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"the journal is at schema version {version}, written by a newer ocr-inbox;"
            f" this one reads up to {SCHEMA_VERSION}"
        )
    columns = {row[1] for row in db.execute("PRAGMA table_info(files)")}
    if "path" in columns:  # version 1 (or a version-1 file whose version was never set)
        _migrate_from_1(db)
    # Version 2 lacks only the webhook outbox: the script's CREATE ... IF NOT
    # EXISTS adds it, in the one transaction executescript runs it in.
    db.executescript(f"BEGIN; {SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
    if version == 2:
        log.info("journal.migrated", from_version=2, to_version=SCHEMA_VERSION, rows=0)


def _migrate_from_1(db: sqlite3.Connection) -> None:
    """Version 1 keyed rows by absolute path, with the inbox's absolute path beside it.

    Each row is re-keyed by the inbox's name and its path below the inbox, in
    one transaction: a kill in the middle leaves version 1 whole. Two rows can
    only meet on one key if two inboxes had the same name, which the settings
    now refuse: the one updated last is kept (the other's outputs on disk
    still keep its file from being done twice).
    """
    began = time.monotonic()
    db.execute("BEGIN IMMEDIATE")
    try:
        rows = db.execute("SELECT * FROM files ORDER BY updated_at").fetchall()
        db.execute("ALTER TABLE files RENAME TO files_v1")
        db.execute("DROP INDEX IF EXISTS files_by_state")
        # Statement by statement: executescript() would commit the transaction first.
        for statement in SCHEMA.strip().split(";"):
            if statement.strip():
                db.execute(statement)
        for row in rows:
            key = _key_from_1(row["path"], row["inbox"])
            db.execute(
                f"INSERT OR REPLACE INTO files (inbox, relative, {COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.inbox,
                    key.relative,
                    *(row[column] for column in COLUMNS.split(", ")),
                ),
            )
        db.execute("DROP TABLE files_v1")
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    log.info(
        "journal.migrated",
        from_version=1,
        to_version=SCHEMA_VERSION,
        rows=len(rows),
        seconds=round(time.monotonic() - began, 3),
    )


def _key_from_1(path: str, inbox: str) -> FileKey:
    try:
        return FileKey.of(Path(path), Path(inbox))
    except ValueError:
        # Not below its inbox (no release wrote such a row): keyed by its
        # absolute path, as `once` keys files.
        return FileKey.of(Path(path), Path("/"))
