"""The shared journal's tables, created by whichever daemon comes first.

Times that leases depend on are the database's (clock_timestamp()), never a
host's: hosts whose clocks disagree still agree on when a lease ran out.
"""

from __future__ import annotations

import psycopg

from daemon.journal.interface import JournalUnusable
from daemon.journal.postgres.outbox import OUTBOX_SCHEMA

SCHEMA_VERSION = 1
# Several daemons may start at once against an empty database: the first
# takes this lock and creates the tables, the others wait and find them.
_SCHEMA_LOCK = 0x6F63725F696E  # "ocr_in"

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS ocr_inbox_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ocr_inbox_files (
    inbox         TEXT NOT NULL,
    relative      TEXT NOT NULL,
    size          BIGINT NOT NULL,
    mtime_ns      BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    state         TEXT NOT NULL,
    attempts      JSONB NOT NULL DEFAULT '{}',
    trail         JSONB NOT NULL DEFAULT '[]',
    error         TEXT,
    output_hashes TEXT NOT NULL DEFAULT '',
    admitted_at   DOUBLE PRECISION NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    claim_node    TEXT,           -- the node holding the claim, or NULL
    lease_until   TIMESTAMPTZ,    -- when its lease runs out (database time)
    finished_by   TEXT,           -- the node that made the row final (NULL while pending)
    PRIMARY KEY (inbox, relative)
);
CREATE INDEX IF NOT EXISTS ocr_inbox_files_by_state ON ocr_inbox_files (state, admitted_at);
CREATE INDEX IF NOT EXISTS ocr_inbox_files_by_update ON ocr_inbox_files (updated_at);
CREATE INDEX IF NOT EXISTS ocr_inbox_files_by_claim ON ocr_inbox_files (claim_node)
    WHERE claim_node IS NOT NULL;
CREATE TABLE IF NOT EXISTS ocr_inbox_nodes (
    node          TEXT PRIMARY KEY,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL,
    heartbeat_at  TIMESTAMPTZ NOT NULL,
    lease_seconds DOUBLE PRECISION NOT NULL,
    taken_over    BIGINT NOT NULL DEFAULT 0,  -- leases of other nodes this node took over
    lost          BIGINT NOT NULL DEFAULT 0,  -- claims this node found taken from it
    stopped_at    TIMESTAMPTZ
);
"""
    + OUTBOX_SCHEMA
)
# Version 1 gained the outbox and moves tables, and the files' finished_by
# column, without a new number: they are added where missing, and a daemon
# that does not know them ignores them (so daemons of both releases can share
# a journal during an upgrade).
_ADDED_COLUMNS = {"ocr_inbox_files": {"finished_by": "TEXT"}}


def prepare(connection: psycopg.Connection[tuple[object, ...]]) -> None:
    """Create the tables in an empty database, or check the version of existing ones."""
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        connection.execute(SCHEMA)
        _add_missing_columns(connection)
        row = connection.execute(
            "SELECT value FROM ocr_inbox_meta WHERE key = 'schema_version'"
        ).fetchone()
        if row is None:
            connection.execute(
                "INSERT INTO ocr_inbox_meta VALUES ('schema_version', %s)", (str(SCHEMA_VERSION),)
            )
        elif int(str(row[0])) > SCHEMA_VERSION:
            raise JournalUnusable(
                f"the journal is at schema version {row[0]}, written by a newer ocr-inbox;"
                f" this one reads up to {SCHEMA_VERSION}"
            )


def _add_missing_columns(connection: psycopg.Connection[tuple[object, ...]]) -> None:
    """Add the columns a journal made by an earlier release lacks.

    Looked up first: ALTER TABLE locks the table against every other node
    even when IF NOT EXISTS finds nothing to do.
    """
    for table, columns in _ADDED_COLUMNS.items():
        present = {
            str(row[0])
            for row in connection.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = %s",
                (table,),
            ).fetchall()
        }
        for column, kind in columns.items():
            if column not in present:
                connection.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
