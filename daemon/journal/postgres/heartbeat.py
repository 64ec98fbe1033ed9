"""The heartbeat: renews this node's leases and reads what other nodes finished, on its own thread.

Every lease_seconds / 3 it (1) marks the node alive in ocr_inbox_nodes,
(2) pushes the lease of every claim this node holds lease_seconds ahead, in
one statement that renews only leases still live (a lease that ran out may
belong to another node by now: it is never revived), and (3) reads the rows
changed since its last look into the in-memory index that answers is_final
for the watcher, so files other nodes finished are not hashed again here.

It runs on its own connection, so a main loop busy writing outputs still
renews its leases; a process frozen by SIGSTOP renews nothing, which is the
point. When the database is away it keeps trying at the same pace; the
leases it could not renew run out and other nodes may take the files over,
which the fence at commit time catches.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import psycopg
import structlog

from daemon.journal.interface import FileKey, State

if TYPE_CHECKING:
    from daemon.journal.postgres.journal import PostgresJournal

log = structlog.get_logger("daemon.journal.postgres")

# Rows are read back from a little before the last look: a transaction that
# stamped its row earlier but committed after that look is still seen.
_LOOK_BACK_SECONDS = 10.0


class Heartbeat:
    def __init__(self, journal: PostgresJournal) -> None:
        self.journal = journal
        self.interval = max(journal.lease_seconds / 3.0, 0.05)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: psycopg.Connection[tuple[Any, ...]] | None = None
        self._last_beat: float | None = None  # monotonic time of the last beat that landed
        self._last_look: Any = None  # database time of the last read of changed rows

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="journal-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._connection is not None:
            self._connection.close()

    def age(self) -> float | None:
        """Seconds since the last heartbeat that reached the database."""
        last = self._last_beat
        return None if last is None else time.monotonic() - last

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except psycopg.Error as error:
                if self._connection is not None:
                    self._connection.close()
                self._connection = None
                log.warning(
                    "journal.heartbeat_failed",
                    node=self.journal.node,
                    error=self.journal.database.scrub(str(error)).strip(),
                )

    def _db(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._connection is None or self._connection.closed:
            # Not patient: the loop itself is the retry, at the heartbeat's pace.
            self._connection = self.journal.database.open_connection()
        return self._connection

    def beat(self) -> None:
        """One heartbeat: alive, leases renewed, changed rows read."""
        journal = self.journal
        db = self._db()
        db.execute(
            "UPDATE ocr_inbox_nodes SET heartbeat_at = clock_timestamp() WHERE node = %s",
            (journal.node,),
        )
        held = journal.memory.held()
        if held:
            renewed = db.execute(
                "UPDATE ocr_inbox_files AS f"
                " SET lease_until = clock_timestamp() + make_interval(secs => %s)"
                " FROM unnest(%s::text[], %s::text[]) AS k(inbox, relative)"
                " WHERE f.inbox = k.inbox AND f.relative = k.relative"
                " AND f.claim_node = %s AND f.lease_until > clock_timestamp()"
                " RETURNING f.inbox, f.relative",
                (
                    journal.lease_seconds,
                    [key.inbox for key in held],
                    [key.relative for key in held],
                    journal.node,
                ),
            ).fetchall()
            kept = {FileKey(str(row[0]), str(row[1])) for row in renewed}
            # A claim released or finished meanwhile on the main thread is not
            # renewed either; forgetting it again is harmless.
            gone = [key for key in held if key not in kept]
            if gone:
                journal.memory.expire(*gone)
                for key in gone:
                    log.warning("journal.lease_lost", key=str(key), node=journal.node)
        self._last_beat = time.monotonic()
        self.refresh_final()

    def refresh_final(self) -> None:
        """Read the rows changed since the last look (all final rows the first time) into the index."""
        db = self._db()
        stamp = db.execute("SELECT clock_timestamp()").fetchone()
        everything = self._last_look is None
        if everything:
            rows = db.execute(
                "SELECT inbox, relative, size, mtime_ns, state FROM ocr_inbox_files"
                " WHERE state <> %s",
                (State.PENDING.value,),
            ).fetchall()
        else:
            rows = db.execute(
                "SELECT inbox, relative, size, mtime_ns, state FROM ocr_inbox_files"
                " WHERE updated_at > %s::timestamptz - make_interval(secs => %s)",
                (self._last_look, _LOOK_BACK_SECONDS),
            ).fetchall()
        changes: dict[FileKey, tuple[int, int] | None] = {}
        for row in rows:
            key = FileKey(str(row[0]), str(row[1]))
            final = row[4] != State.PENDING.value
            changes[key] = (int(row[2]), int(row[3])) if final else None
        self.journal.memory.replace_final(changes, everything)
        self._last_look = stamp[0] if stamp is not None else None
