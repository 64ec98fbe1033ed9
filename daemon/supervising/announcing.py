"""Completion webhooks as the ledger sees them: the event of each finish, and handing it on.

The ledger asks for a finished file's event (`event`) and marks the outcome
with it (`finish`): the journal's mark_done or mark_failed store the event in
the outbox in the same transaction as the outcome, under the same claim
check, so a daemon that lost the file's claim stores neither (the daemon that
took it over reports it), and a crash leaves both or neither. Only after that
commit is the event handed to the sending thread (daemon.webhooks.sender),
which never blocks the main loop. What the sender saw accepted leaves the
outbox when the loop asks (`delivered`), on the main thread like every other
journal write.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.journal.interface import FileKey, Journal, WebhookEvent
from daemon.tasks import FileTask
from daemon.webhooks.events import Outcome, finished_event
from daemon.webhooks.sender import WebhookSender


class Announcer:
    def __init__(
        self,
        journal: Journal,
        sender: WebhookSender | None,
        url_for: Callable[[str], str | None],
    ) -> None:
        self.journal = journal
        # None: nothing is sent (`once`, whose journal lives in memory).
        self.sender = sender
        # The URL for an inbox's name (None: that inbox sends none).
        self.url_for = url_for

    def event(
        self,
        path: Path,
        key: FileKey,
        outcome: Outcome,
        sha256: str,
        outputs: dict[str, Path],
        model: str | None,
        seconds: float | None,
        error: dict[str, Any] | None = None,
    ) -> WebhookEvent | None:
        """The file's completion event, for the journal to store with its outcome (None: none is sent)."""
        if self.sender is None:
            return None
        url = self.url_for(key.inbox)
        if url is None:
            return None
        return finished_event(url, key, path, sha256, outcome, outputs, model, seconds, error)

    def finish(
        self,
        key: FileKey,
        outcome: Outcome,
        sha256: str,
        size: int,
        mtime_ns: int,
        event: WebhookEvent | None,
        error: str = "",
    ) -> None:
        """Mark the ledger's outcome with its event (one transaction, under the claim), then send it.

        Raises ClaimLost, having stored nothing, when the daemon lost the
        file's claim. The sender gets the event only once it is committed,
        with the events the outbox dropped to stay within its bound.
        """
        # The outbox's bound (webhook_queue_limit), which the journal keeps as it stores.
        bound = self.sender.limit if self.sender is not None else None
        if outcome == "done":
            dropped = self.journal.mark_done(
                key, sha256, size, mtime_ns, webhook=event, outbox_limit=bound
            )
        else:
            dropped = self.journal.mark_failed(
                key, sha256, size, mtime_ns, error, webhook=event, outbox_limit=bound
            )
        if event is not None and self.sender is not None:
            self.sender.submit(event, dropped=dropped)

    def resume(self) -> None:
        """At start: hand the events a previous run left undelivered to the sender."""
        if self.sender is not None:
            self.sender.resume(self.journal.webhooks())

    def delivered(self) -> None:
        """Remove the events the sender saw accepted from the outbox."""
        if self.sender is not None:
            for key in self.sender.delivered():
                self.journal.webhook_delivered(key)


def where_they_end(task: FileTask, outputs: dict[str, Path]) -> tuple[Path, dict[str, Path]]:
    """The input and its outputs where they end up: in the archive (or failed_dir) when the
    input moves there, its outputs with it unless the inbox writes them to an output_dir."""
    target = task.archive_target
    if target is None:
        return task.path, outputs
    if task.profile is not None and task.profile.output_dir is not None:
        return target, outputs
    prefix = len(task.path.name)  # NAME.ocr.json -> TARGET_NAME.ocr.json
    return target, {
        name: target.with_name(target.name + path.name[prefix:])
        if path.parent == task.path.parent and path.name.startswith(task.path.name)
        else path
        for name, path in outputs.items()
    }
