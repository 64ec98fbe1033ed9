"""The journal shared by several daemons in one PostgreSQL database ([state] url).

The same rows as the SQLite journal (daemon.journal.sqlite), plus a claim per
row: the node holding it and when its lease runs out, in the database's time.
A claim is granted on a pending row nobody holds, one this node holds, or one
whose lease ran out (a takeover: its holder died, froze or was cut off).
Every write made under a claim checks, in the same statement, that this node
still holds a live lease, and raises ClaimLost otherwise; `fence` is that
check (renewing the lease) just before an output is renamed into place. The
outcome and its webhook are one transaction under the same check
(daemon.journal.postgres.finishing). The heartbeat
(daemon.journal.postgres.heartbeat) renews the leases of the claims this
node holds, from its own thread and connection.

All methods but is_final, problem and leases run on the supervisor's main
thread, over one connection. When the connection breaks (the server
restarted, the network went) the call waits, reconnects with backoff and is
made again: the daemon keeps its place and loses nothing (a finish whose
COMMIT landed before the break counts as made).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import structlog
from psycopg.types.json import Jsonb

from daemon.journal.interface import Admission, ClaimLost, Entry, FileKey, LeaseReport, State
from daemon.journal.postgres.connection import (
    BACKOFF_CAP_SECONDS,
    BACKOFF_FIRST_SECONDS,
    Database,
    is_connection_error,
)
from daemon.journal.postgres.finishing import PostgresFinishing
from daemon.journal.postgres.heartbeat import Heartbeat
from daemon.journal.postgres.memory import NodeMemory
from daemon.journal.postgres.outbox import PostgresNodeTables
from daemon.journal.postgres.schema import prepare

log = structlog.get_logger("daemon.journal.postgres")

T = TypeVar("T")
Connection = psycopg.Connection[tuple[Any, ...]]

_KEY = "inbox = %s AND relative = %s"
# This node holds the row's claim and its lease has not run out.
_HELD = "claim_node = %s AND lease_until > clock_timestamp()"
_LEASE = "clock_timestamp() + make_interval(secs => %s)"
_ENTRY_COLUMNS = (
    "inbox, relative, size, mtime_ns, sha256, state, attempts, trail, error,"
    " output_hashes, admitted_at"
)


class PostgresJournal(PostgresFinishing, PostgresNodeTables):
    """One node's view of the shared journal. Open with PostgresJournal.open(...)."""

    def __init__(self, database: Database, node: str, lease_seconds: float) -> None:
        self.database = database
        self.node = node
        self.lease_seconds = lease_seconds
        self._connection: Connection | None = None
        self.memory = NodeMemory()
        self._taken_over = 0
        self._lost = 0
        self.heartbeat = Heartbeat(self)

    @classmethod
    def open(cls, database: Database, node: str, lease_seconds: float) -> PostgresJournal:
        """Connect (waiting while the server is away), create the tables if need be, start beating."""
        journal = cls(database, node, lease_seconds)
        journal._run(lambda db: prepare(db))
        journal._run(journal._register)
        with contextlib.suppress(psycopg.Error):  # the first heartbeat reads the index instead
            journal.heartbeat.refresh_final()
        journal.heartbeat.start()
        log.info(
            "journal.opened",
            backend="postgresql",
            url=database.shown,
            node=node,
            lease_seconds=lease_seconds,
        )
        return journal

    def close(self) -> None:
        self.heartbeat.stop()
        if self._connection is not None and not self._connection.closed:
            try:
                with self._connection.transaction():
                    self._connection.execute(
                        "UPDATE ocr_inbox_files SET claim_node = NULL, lease_until = NULL"
                        " WHERE claim_node = %s",
                        (self.node,),
                    )
                    self._connection.execute(
                        "UPDATE ocr_inbox_nodes SET stopped_at = clock_timestamp() WHERE node = %s",
                        (self.node,),
                    )
            except psycopg.Error as error:
                # The leases run out on their own; nothing is lost.
                log.warning("journal.close_failed", error=self.database.scrub(str(error)))
            self._connection.close()
        self.memory.let_go_all()

    # --- the connection, and patience ------------------------------------------

    def _run(self, operation: Callable[[Connection], T]) -> T:
        """Run `operation` on the main connection; reconnect and run it again if the connection broke."""
        delay = BACKOFF_FIRST_SECONDS
        while True:
            if self._connection is None or self._connection.closed:
                self._connection = self.database.connect()
            try:
                return operation(self._connection)
            except psycopg.Error as error:
                if not is_connection_error(error):
                    raise
                if not self.database.patient:
                    raise
                self._connection.close()
                self._connection = None
                self.database.wait(self.database.scrub(str(error)).strip(), delay)
                delay = min(delay * 2, BACKOFF_CAP_SECONDS)

    def _register(self, db: Connection) -> None:
        db.execute(
            "INSERT INTO ocr_inbox_nodes (node, host, pid, started_at, heartbeat_at, lease_seconds)"
            " VALUES (%s, %s, %s, clock_timestamp(), clock_timestamp(), %s)"
            " ON CONFLICT (node) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid,"
            " started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at,"
            " lease_seconds = EXCLUDED.lease_seconds, stopped_at = NULL",
            (self.node, socket.gethostname(), os.getpid(), self.lease_seconds),
        )

    # --- reads -------------------------------------------------------------------

    def get(self, key: FileKey) -> Entry | None:
        row = self._run(
            lambda db: db.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM ocr_inbox_files WHERE {_KEY}", _params(key)
            ).fetchone()
        )
        return _entry(row) if row is not None else None

    def pending(self) -> list[Entry]:
        rows = self._run(
            lambda db: db.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM ocr_inbox_files WHERE state = %s"
                " ORDER BY admitted_at",
                (State.PENDING.value,),
            ).fetchall()
        )
        return [_entry(row) for row in rows]

    def counts(self) -> dict[str, int]:
        rows = self._run(
            lambda db: db.execute(
                "SELECT state, COUNT(*) FROM ocr_inbox_files GROUP BY state"
            ).fetchall()
        )
        return {str(row[0]): int(row[1]) for row in rows}

    def is_final(self, key: FileKey, size: int, mtime_ns: int) -> bool:
        """Called from the watcher's thread: the in-memory index the heartbeat keeps fresh."""
        return self.memory.is_final(key, size, mtime_ns)

    def takeable(self) -> list[FileKey]:
        """Pending files that no live lease holds and this node does not hold (a dead node's, or let go)."""
        rows = self._run(
            lambda db: db.execute(
                "SELECT inbox, relative FROM ocr_inbox_files WHERE state = %s"
                " AND (claim_node IS NULL OR lease_until <= clock_timestamp())"
                " ORDER BY admitted_at",
                (State.PENDING.value,),
            ).fetchall()
        )
        held = set(self.memory.held())
        return [key for key in (FileKey(str(r[0]), str(r[1])) for r in rows) if key not in held]

    def problem(self) -> str | None:
        problem = self.database.problem
        return None if problem is None else f"the journal's database is unreachable: {problem}"

    def leases(self) -> LeaseReport:
        held = len(self.memory.held())
        return LeaseReport(
            claims_held=held,
            taken_over=self._taken_over,
            lost=self._lost,
            heartbeat_age_seconds=self.heartbeat.age(),
        )

    # --- seeing files ------------------------------------------------------------

    def admit(self, key: FileKey, size: int, mtime_ns: int, sha256: str) -> Admission:
        def admit(db: Connection) -> Admission:
            with db.transaction():
                # New path, or new content at a known path: start afresh (any
                # claim on the old content ends with it). The same content
                # admitted by another node at the same moment changes nothing.
                inserted = db.execute(
                    "INSERT INTO ocr_inbox_files (inbox, relative, size, mtime_ns, sha256, state,"
                    " admitted_at) VALUES (%s, %s, %s, %s, %s, %s,"
                    " extract(epoch FROM clock_timestamp()))"
                    " ON CONFLICT (inbox, relative) DO UPDATE SET size = EXCLUDED.size,"
                    " mtime_ns = EXCLUDED.mtime_ns, sha256 = EXCLUDED.sha256, state = EXCLUDED.state,"
                    " attempts = '{}', trail = '[]', error = NULL, claim_node = NULL,"
                    " lease_until = NULL, finished_by = NULL, admitted_at = EXCLUDED.admitted_at,"
                    " updated_at = clock_timestamp()"
                    " WHERE ocr_inbox_files.sha256 <> EXCLUDED.sha256 RETURNING 1",
                    (*_params(key), size, mtime_ns, sha256, State.PENDING.value),
                ).fetchone()
                if inserted is not None:
                    return Admission.NEW
                row = db.execute(
                    f"UPDATE ocr_inbox_files SET size = %s, mtime_ns = %s WHERE {_KEY}"
                    " RETURNING state",
                    (size, mtime_ns, *_params(key)),
                ).fetchone()
            if row is not None and row[0] == State.PENDING.value:
                return Admission.PENDING
            return Admission.UNCHANGED

        admission = self._run(admit)
        if admission is Admission.UNCHANGED:
            self.memory.set_final(key, size, mtime_ns)
        else:
            self.memory.drop_final(key)
        return admission

    def reopen(self, key: FileKey) -> None:
        self._run(
            lambda db: db.execute(
                "UPDATE ocr_inbox_files SET state = %s, attempts = '{}', trail = '[]',"
                " error = NULL, finished_by = NULL, updated_at = clock_timestamp()"
                f" WHERE {_KEY} AND state <> %s",
                (State.PENDING.value, *_params(key), State.PENDING.value),
            )
        )
        self.memory.drop_final(key)

    def forget(self, key: FileKey) -> None:
        self._run(lambda db: db.execute(f"DELETE FROM ocr_inbox_files WHERE {_KEY}", _params(key)))
        self.memory.let_go(key)
        self.memory.drop_final(key)

    # --- claims --------------------------------------------------------------------

    def claim(self, key: FileKey) -> bool:
        def claim(db: Connection) -> str | bool | None:
            with db.transaction():
                row = db.execute(
                    "SELECT state, claim_node, lease_until > clock_timestamp()"
                    f" FROM ocr_inbox_files WHERE {_KEY} FOR UPDATE",
                    _params(key),
                ).fetchone()
                if row is None or row[0] != State.PENDING.value:
                    return False
                holder, live = row[1], bool(row[2])
                if holder is not None and holder != self.node and live:
                    return False
                db.execute(
                    f"UPDATE ocr_inbox_files SET claim_node = %s, lease_until = {_LEASE}"
                    f" WHERE {_KEY}",
                    (self.node, self.lease_seconds, *_params(key)),
                )
                if holder is not None and holder != self.node:
                    db.execute(
                        "UPDATE ocr_inbox_nodes SET taken_over = taken_over + 1 WHERE node = %s",
                        (self.node,),
                    )
                    return str(holder)
                return None

        outcome = self._run(claim)
        if outcome is False:
            return False
        self.memory.hold(key)
        if isinstance(outcome, str):
            self._taken_over += 1
            log.warning("file.taken_over", key=str(key), from_node=outcome, node=self.node)
        return True

    def release(self, key: FileKey) -> None:
        self.memory.let_go(key)
        self._run(
            lambda db: db.execute(
                "UPDATE ocr_inbox_files SET claim_node = NULL, lease_until = NULL"
                f" WHERE {_KEY} AND claim_node = %s",
                (*_params(key), self.node),
            )
        )

    def fence(self, key: FileKey) -> None:
        """The check at commit time: this node's lease on the row is live (and renewed)."""
        self._write(key, f"lease_until = {_LEASE}", self.lease_seconds)

    # --- working on a claimed file ----------------------------------------------------

    def record_attempt(self, key: FileKey, model: str) -> int:
        row = self._write(
            key,
            "attempts = jsonb_set(attempts, ARRAY[%s],"
            " to_jsonb(COALESCE((attempts ->> %s)::int, 0) + 1))",
            model,
            model,
            returning="(attempts ->> %s)::int",
            returning_params=(model,),
        )
        return int(row[0])

    def record_trail(self, key: FileKey, trail: list[dict[str, Any]]) -> None:
        self._write(key, "trail = %s", Jsonb(trail))

    def note_outputs(self, key: FileKey, hashes: list[str]) -> None:
        self._write(key, "output_hashes = %s", " ".join(hashes))

    def _write(
        self,
        key: FileKey,
        assignment: str,
        *values: object,
        returning: str = "1",
        returning_params: tuple[object, ...] = (),
    ) -> tuple[Any, ...]:
        """One update of a row this node holds, in one statement with the check; ClaimLost if not held."""
        self._must_hold(key)
        row = self._run(
            lambda db: db.execute(
                f"UPDATE ocr_inbox_files SET {assignment}, updated_at = clock_timestamp()"
                f" WHERE {_KEY} AND {_HELD} RETURNING {returning}",
                (*values, *_params(key), self.node, *returning_params),
            ).fetchone()
        )
        if row is None:
            self._lost_claim(key)
            raise ClaimLost(key)
        return tuple(row)

    def _must_hold(self, key: FileKey) -> None:
        """ClaimLost at once for a claim this node let go of, or whose lease the heartbeat saw gone."""
        if not self.memory.holds(key):
            if self.memory.take_expired(key):
                self._lost_claim(key)
            raise ClaimLost(key)

    def _lost_claim(self, key: FileKey) -> None:
        self.memory.let_go(key)
        self._lost += 1
        with contextlib.suppress(psycopg.Error):  # a count for the operator; the claim is gone
            self._run(
                lambda db: db.execute(
                    "UPDATE ocr_inbox_nodes SET lost = lost + 1 WHERE node = %s", (self.node,)
                )
            )


def _params(key: FileKey) -> tuple[str, str]:
    return (key.inbox, key.relative)


def _entry(row: tuple[Any, ...]) -> Entry:
    attempts, trail = row[6], row[7]
    return Entry(
        key=FileKey(row[0], row[1]),
        size=int(row[2]),
        mtime_ns=int(row[3]),
        sha256=row[4],
        state=State(row[5]),
        attempts=dict(attempts if not isinstance(attempts, str) else json.loads(attempts)),
        trail=list(trail if not isinstance(trail, str) else json.loads(trail)),
        error=row[8],
        output_hashes=tuple((row[9] or "").split()),
        admitted_at=float(row[10]),
    )
