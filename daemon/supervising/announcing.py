"""Completion webhooks as the ledger sees them: store each finish in the outbox, then hand it on.

An event is stored in the journal's outbox before the ledger marks the
outcome (a crash between the two sends it once more, never loses it), then
handed to the sending thread (daemon.webhooks.sender), which never blocks
the main loop. What the sender saw accepted leaves the outbox when the loop
asks (`delivered`), on the main thread like every other journal write.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.journal.interface import FileKey, Journal
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

    def announce(
        self,
        path: Path,
        key: FileKey,
        outcome: Outcome,
        sha256: str,
        outputs: dict[str, Path],
        model: str | None,
        seconds: float | None,
        error: dict[str, Any] | None = None,
    ) -> None:
        """Store the file's completion event in the outbox, then hand it to the sender.

        The sender is also given the events the outbox dropped to stay within its bound.
        """
        if self.sender is None:
            return
        url = self.url_for(key.inbox)
        if url is None:
            return
        event = finished_event(url, key, path, sha256, outcome, outputs, model, seconds, error)
        self.sender.submit(event, dropped=self.journal.queue_webhook(event, self.sender.limit))

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
