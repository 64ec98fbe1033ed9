"""The ledger's completion webhooks: each finish stored in the outbox before its outcome, then handed to the sender."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from daemon.journal.interface import WebhookEvent
from daemon.journal.sqlite import SqliteJournal
from daemon.observing.metrics import Metrics
from daemon.protocol import Fault
from daemon.settings import InboxProfile
from daemon.supervising.ledger import Ledger
from daemon.webhooks.posting import Answer
from daemon.webhooks.sender import WebhookSender
from tests.supervising.fakes import FakeClock, result_of
from tests.supervising.test_ledger import admitted
from tests.webhooks.test_sender import ScriptedReceivers

URL = "http://127.0.0.1:9/hook"


class RecordingJournal(SqliteJournal):
    """The real journal, noting the order of the calls that matter here."""

    calls: list[str]

    def queue_webhook(self, event: WebhookEvent, limit: int) -> list[WebhookEvent]:
        self.calls.append("queue_webhook")
        return super().queue_webhook(event, limit)

    def mark_done(self, *args: Any) -> None:
        self.calls.append("mark_done")
        super().mark_done(*args)

    def mark_failed(self, *args: Any) -> None:
        self.calls.append("mark_failed")
        super().mark_failed(*args)


def make(
    url: str | None = URL, *, limit: int = 100, journal: SqliteJournal | None = None
) -> tuple[Ledger, WebhookSender]:
    metrics = Metrics()
    post = ScriptedReceivers({URL: [Answer(200, "ok")]})
    sender = WebhookSender(metrics, timeout=5.0, backoff_cap=1.0, limit=limit, post=post)
    if journal is None:
        journal = RecordingJournal.open(None)
        journal.calls = []
    ledger = Ledger(journal, metrics, FakeClock(), 2, webhooks=sender, webhook_url=lambda _: url)
    return ledger, sender


def stored(ledger: Ledger) -> list[dict[str, Any]]:
    return [json.loads(event.body) for event in ledger.journal.webhooks()]


def test_a_done_file_is_stored_in_the_outbox_before_it_is_marked_done(tmp_path: Path) -> None:
    """done(): the event (outputs, model, key) is durable before the outcome, and waits in the sender."""
    ledger, sender = make()
    task = admitted(ledger, tmp_path / "scan.png")
    result = result_of(task.path, "rapid")

    assert ledger.done(task, result, "rapid") is None

    assert ledger.journal.calls == ["queue_webhook", "mark_done"]  # type: ignore[attr-defined]
    (body,) = stored(ledger)
    assert (body["outcome"], body["model"], body["sha256"]) == ("done", "rapid", result.sha256)
    assert body["outputs"] == {
        "json": f"{task.path}.ocr.json",
        "md": f"{task.path}.ocr.md",
    }
    assert all(Path(path).is_file() for path in body["outputs"].values())
    assert sender.depth() == 1
    assert ledger.metrics.webhooks_queued._value.get() == 1


def test_a_failed_file_announces_its_sidecar_and_error(tmp_path: Path) -> None:
    """failed(): the event names the error sidecar and carries the error, before the outcome is marked."""
    ledger, _ = make()
    task = admitted(ledger, tmp_path / "bad.png")

    ledger.failed(task, Fault(kind="bad_input", message="corrupt"), None, "rapid", "cannot read")

    assert ledger.journal.calls == ["queue_webhook", "mark_failed"]  # type: ignore[attr-defined]
    (body,) = stored(ledger)
    assert body["outcome"] == "failed"
    assert body["outputs"] == {"error": f"{task.path}.ocr.error.json"}
    assert (body["error"]["kind"], body["error"]["message"]) == ("bad_input", "corrupt")


def test_an_inbox_without_a_url_announces_nothing(tmp_path: Path) -> None:
    """No webhook_url: nothing stored, nothing sent, nothing counted."""
    ledger, sender = make(url=None)
    task = admitted(ledger, tmp_path / "scan.png")

    ledger.done(task, result_of(task.path, "m"), "m")

    assert ledger.journal.webhooks() == [] and sender.depth() == 0
    assert ledger.metrics.webhooks_queued._value.get() == 0


def test_a_full_outbox_drops_the_oldest_event(tmp_path: Path) -> None:
    """With room for one event, the second finish drops the first from journal and sender alike."""
    ledger, sender = make(limit=1)
    first = admitted(ledger, tmp_path / "first.png")
    second = admitted(ledger, tmp_path / "second.png")
    ledger.done(first, result_of(first.path, "m"), "m")
    ledger.done(second, result_of(second.path, "m"), "m")

    assert [body["file"] for body in stored(ledger)] == [str(second.path)]
    assert sender.depth() == 1
    assert ledger.metrics.webhooks_dropped._value.get() == 1


def test_delivered_events_leave_the_outbox(tmp_path: Path) -> None:
    """What the sender saw accepted is removed from the journal when the loop asks the ledger."""
    ledger, sender = make()
    task = admitted(ledger, tmp_path / "scan.png")
    ledger.done(task, result_of(task.path, "m"), "m")
    sender.start()
    try:
        deadline = time.monotonic() + 30
        while sender.depth() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(ledger.journal.webhooks()) == 1  # until the loop notes the delivery
        ledger.announcer.delivered()
        assert ledger.journal.webhooks() == []
    finally:
        sender.stop(5.0)


def test_events_left_by_a_previous_run_are_resumed(tmp_path: Path) -> None:
    """At start the outbox's events go to the sender, oldest first, without counting them as new."""
    journal = SqliteJournal.open(tmp_path)
    for key in ("k1", "k2"):
        journal.queue_webhook(WebhookEvent(key, URL, "{}", 1.0), 100)
    ledger, sender = make(journal=journal)

    ledger.announcer.resume()

    assert sender.depth() == 2
    assert ledger.metrics.webhooks_queued._value.get() == 0


def test_outputs_found_after_a_crash_are_announced_only_for_a_pending_row(tmp_path: Path) -> None:
    """found_on_disk(announce=True) stores the event again (model unknown); without it, nothing."""
    ledger, _ = make()
    quiet = admitted(ledger, tmp_path / "known.png")
    crashed = admitted(ledger, tmp_path / "crashed.png")
    ledger.let_go(quiet)
    ledger.let_go(crashed)

    assert ledger.found_on_disk(quiet, "done")
    assert ledger.found_on_disk(crashed, "done", announce=True)

    (body,) = stored(ledger)
    assert (body["file"], body["model"], body["seconds"]) == (str(crashed.path), None, None)
    assert body["idempotency_key"] == ledger.journal.webhooks()[0].key


def test_an_archived_file_is_announced_where_it_ends_up(tmp_path: Path) -> None:
    """With archive_dir the event names the archived input and its outputs beside it there."""
    ledger, _ = make()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    task = admitted(ledger, inbox / "scan.png")
    task.profile = InboxProfile(
        name="inbox",
        root=inbox,
        chain=("m",),
        formats=("md", "json"),
        recursive=False,
        mode="native",
        settle_seconds=1.0,
        archive_dir=tmp_path / "done",
    )
    task.archive_target = tmp_path / "done" / "scan-2.png"  # a name clash got a suffix

    ledger.done(task, result_of(task.path, "m"), "m")

    (body,) = stored(ledger)
    assert body["file"] == str(tmp_path / "done" / "scan-2.png")
    assert body["outputs"] == {
        "json": str(tmp_path / "done" / "scan-2.png.ocr.json"),
        "md": str(tmp_path / "done" / "scan-2.png.ocr.md"),
    }
    assert body["relative_path"] == "scan.png"  # where it was found in its inbox
