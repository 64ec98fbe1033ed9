"""The shared journal's per-node tables: the webhook outbox, the moves in progress, the nodes gone.

Both belong to the node that wrote them (a `node` column): a node reads back
only its own at start. A finished file's webhook (stored with the file's
outcome, under its claim: daemon.journal.postgres.finishing) and an input
half moved into its archive are this node's promise, kept by this node when
it restarts under its name (the default name, host and state folder, is the
same after a restart). A node that never comes back leaves its rows here;
`ocr-inbox status` shows its webhooks waiting.

The nodes table says which other nodes are gone (closed, or silent past
their lease): their temp files are leftovers that this node may remove.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from daemon.journal.interface import Departure, FileKey, WebhookEvent
from daemon.journal.postgres.memory import NodeMemory

T = TypeVar("T")
Connection = psycopg.Connection[tuple[Any, ...]]

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS ocr_inbox_webhooks (
    seq       BIGSERIAL PRIMARY KEY,
    node      TEXT NOT NULL,
    key       TEXT NOT NULL,
    url       TEXT NOT NULL,
    body      TEXT NOT NULL,
    queued_at DOUBLE PRECISION NOT NULL,
    UNIQUE (node, key)
);
CREATE TABLE IF NOT EXISTS ocr_inbox_moves (
    inbox       TEXT NOT NULL,
    relative    TEXT NOT NULL,
    node        TEXT NOT NULL,
    destination TEXT NOT NULL,
    PRIMARY KEY (inbox, relative)
);
"""


class PostgresNodeTables:
    """The Journal protocol's outbox, move and departed-node methods, for PostgresJournal."""

    node: str
    memory: NodeMemory

    def _run(self, operation: Callable[[Connection], T]) -> T:
        raise NotImplementedError

    # --- other nodes ------------------------------------------------------------------

    def departed(self) -> list[Departure]:
        """Nodes that closed, or silent past their lease with no lease of theirs live (database time).

        A claim made or fenced after the node's last heartbeat runs longer than
        heartbeat + lease, and until it runs out the node may still pass its
        fence and rename: it is not gone before. Each is gone since the earlier
        of its close and the later of those two ends (a node frozen past its
        leases that closed later was gone from the first).
        """
        silent_until = (
            "GREATEST(n.heartbeat_at + make_interval(secs => n.lease_seconds),"
            " (SELECT max(f.lease_until) FROM ocr_inbox_files f WHERE f.claim_node = n.node))"
        )
        rows = self._run(
            lambda db: db.execute(
                f"SELECT n.node, EXTRACT(EPOCH FROM LEAST(n.stopped_at, {silent_until})),"
                " n.lease_seconds FROM ocr_inbox_nodes n"
                f" WHERE n.node <> %s AND (n.stopped_at IS NOT NULL OR {silent_until}"
                " < clock_timestamp()) ORDER BY n.node",
                (self.node,),
            ).fetchall()
        )
        return [Departure(str(row[0]), float(row[1]), float(row[2])) for row in rows]

    # --- the webhook outbox ----------------------------------------------------------

    def webhooks(self) -> list[WebhookEvent]:
        rows = self._run(
            lambda db: db.execute(
                "SELECT key, url, body, queued_at FROM ocr_inbox_webhooks WHERE node = %s"
                " ORDER BY seq",
                (self.node,),
            ).fetchall()
        )
        return [_event(row) for row in rows]

    def webhook_delivered(self, key: str) -> None:
        self._run(
            lambda db: db.execute(
                "DELETE FROM ocr_inbox_webhooks WHERE node = %s AND key = %s", (self.node, key)
            )
        )

    # --- moving a finished input out of its inbox ------------------------------------

    def note_move(self, key: FileKey, destination: str) -> None:
        self._run(
            lambda db: db.execute(
                "INSERT INTO ocr_inbox_moves (inbox, relative, node, destination)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (inbox, relative)"
                " DO UPDATE SET node = EXCLUDED.node, destination = EXCLUDED.destination",
                (key.inbox, key.relative, self.node, destination),
            )
        )

    def moves(self) -> list[tuple[FileKey, str]]:
        rows = self._run(
            lambda db: db.execute(
                "SELECT inbox, relative, destination FROM ocr_inbox_moves WHERE node = %s",
                (self.node,),
            ).fetchall()
        )
        return [(FileKey(row[0], row[1]), row[2]) for row in rows]

    def finish_move(self, key: FileKey) -> None:
        def finish(db: Connection) -> None:
            with db.transaction():
                params = (key.inbox, key.relative)
                db.execute("DELETE FROM ocr_inbox_moves WHERE inbox = %s AND relative = %s", params)
                db.execute("DELETE FROM ocr_inbox_files WHERE inbox = %s AND relative = %s", params)

        self._run(finish)
        self.memory.let_go(key)
        self.memory.drop_final(key)


def store_webhook(
    db: Connection, node: str, event: WebhookEvent, limit: int | None
) -> list[WebhookEvent]:
    """Store `node`'s `event` in the transaction open on `db`; remove and return its oldest beyond `limit`."""
    # Deleted and inserted again: the same event becomes the newest.
    db.execute("DELETE FROM ocr_inbox_webhooks WHERE node = %s AND key = %s", (node, event.key))
    db.execute(
        "INSERT INTO ocr_inbox_webhooks (node, key, url, body, queued_at)"
        " VALUES (%s, %s, %s, %s, %s)",
        (node, event.key, event.url, event.body, event.queued_at),
    )
    if limit is None:
        return []
    rows = db.execute(
        "DELETE FROM ocr_inbox_webhooks WHERE seq IN ("
        " SELECT seq FROM ocr_inbox_webhooks WHERE node = %s ORDER BY seq DESC"
        " OFFSET %s) RETURNING key, url, body, queued_at, seq",
        (node, limit),
    ).fetchall()
    return [_event(row) for row in sorted(rows, key=lambda row: row[4])]


def _event(row: tuple[Any, ...]) -> WebhookEvent:
    return WebhookEvent(key=row[0], url=row[1], body=row[2], queued_at=float(row[3]))
