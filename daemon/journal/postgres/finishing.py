"""A file's outcome in the shared journal: done or failed, with its webhook, under the claim, once.

One transaction marks the row final and stores the file's completion event
in this node's outbox, and its UPDATE is also the claim check: a node whose
lease ran out (another may own the file now, and will report it) updates no
row, stores no event and gets ClaimLost. So only the node holding a file's
claim reports it, and never after another node took the file over.

The row remembers who finished it (`finished_by`). PostgresJournal._run
makes an operation again when the connection broke; if it broke after the
COMMIT reached the server but before its reply came back, the second try
finds the row final and the claim gone. That is not a lost claim: a second
try that finds the row final for this content and this outcome, finished by
this node, counts as the finish it is (the event is stored again by its key,
which changes nothing but its place in the queue).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import structlog

from daemon.journal.interface import ClaimLost, FileKey, State, WebhookEvent
from daemon.journal.postgres.memory import NodeMemory
from daemon.journal.postgres.outbox import store_webhook

log = structlog.get_logger("daemon.journal.postgres")

T = TypeVar("T")
Connection = psycopg.Connection[tuple[Any, ...]]

_KEY = "inbox = %s AND relative = %s"


def _params(key: FileKey) -> tuple[str, str]:
    return (key.inbox, key.relative)


class PostgresFinishing:
    """The Journal protocol's mark_done and mark_failed, for PostgresJournal."""

    node: str
    memory: NodeMemory

    def _run(self, operation: Callable[[Connection], T]) -> T:
        raise NotImplementedError

    def _must_hold(self, key: FileKey) -> None:
        raise NotImplementedError

    def _lost_claim(self, key: FileKey) -> None:
        raise NotImplementedError

    def mark_done(
        self,
        key: FileKey,
        sha256: str,
        size: int,
        mtime_ns: int,
        *,
        webhook: WebhookEvent | None = None,
        outbox_limit: int | None = None,
    ) -> list[WebhookEvent]:
        return self._finish(key, State.DONE, sha256, size, mtime_ns, None, webhook, outbox_limit)

    def mark_failed(
        self,
        key: FileKey,
        sha256: str,
        size: int,
        mtime_ns: int,
        error: str,
        *,
        webhook: WebhookEvent | None = None,
        outbox_limit: int | None = None,
    ) -> list[WebhookEvent]:
        return self._finish(key, State.FAILED, sha256, size, mtime_ns, error, webhook, outbox_limit)

    def _finish(
        self,
        key: FileKey,
        state: State,
        sha256: str,
        size: int,
        mtime_ns: int,
        error: str | None,
        webhook: WebhookEvent | None,
        outbox_limit: int | None,
    ) -> list[WebhookEvent]:
        self._must_hold(key)
        tries = 0

        def finish(db: Connection) -> list[WebhookEvent] | None:
            """The outcome and the event in one transaction; None (nothing written) without the claim."""
            nonlocal tries
            tries += 1
            with db.transaction():
                updated = db.execute(
                    "UPDATE ocr_inbox_files SET state = %s, sha256 = %s, size = %s,"
                    " mtime_ns = %s, error = %s, claim_node = NULL, lease_until = NULL,"
                    " finished_by = %s, updated_at = clock_timestamp()"
                    f" WHERE {_KEY} AND claim_node = %s AND lease_until > clock_timestamp()"
                    " RETURNING 1",
                    (
                        state.value,
                        sha256,
                        size,
                        mtime_ns,
                        error,
                        self.node,
                        *_params(key),
                        self.node,
                    ),
                ).fetchone()
                if updated is None:
                    if tries == 1 or not self._finished_here(db, key, state, sha256):
                        return None
                    log.info("journal.finish_confirmed", key=str(key), node=self.node, tries=tries)
                if webhook is None:
                    return []
                return store_webhook(db, self.node, webhook, outbox_limit)

        dropped = self._run(finish)
        if dropped is None:
            self._lost_claim(key)
            raise ClaimLost(key)
        self.memory.let_go(key)
        self.memory.set_final(key, size, mtime_ns)
        return dropped

    def _finished_here(self, db: Connection, key: FileKey, state: State, sha256: str) -> bool:
        """The row is final as this finish would leave it, by this node: an earlier try committed."""
        row = db.execute(
            f"SELECT 1 FROM ocr_inbox_files WHERE {_KEY} AND state = %s AND sha256 = %s"
            " AND finished_by = %s",
            (*_params(key), state.value, sha256, self.node),
        ).fetchone()
        return row is not None
