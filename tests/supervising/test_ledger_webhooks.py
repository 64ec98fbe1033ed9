"""The ledger's completion webhooks: each stored with its outcome in one journal call, then handed to the sender."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from daemon.journal.interface import ClaimLost, FileKey, WebhookEvent
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
    """The real journal, noting its outcome calls and the event each carried."""

    calls: list[tuple[str, str | None]]

    def mark_done(self, *args: Any, **kwargs: Any) -> list[WebhookEvent]:
        self.calls.append(("mark_done", _key_of(kwargs.get("webhook"))))
        return super().mark_done(*args, **kwargs)

    def mark_failed(self, *args: Any, **kwargs: Any) -> list[WebhookEvent]:
        self.calls.append(("mark_failed", _key_of(kwargs.get("webhook"))))
        return super().mark_failed(*args, **kwargs)


def _key_of(event: WebhookEvent | None) -> str | None:
    return None if event is None else event.key


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


def test_a_done_file_is_stored_in_the_outbox_with_its_outcome(tmp_path: Path) -> None:
    """done(): the event (outputs, model, key) is stored by mark_done itself, and waits in the sender."""
    ledger, sender = make()
    task = admitted(ledger, tmp_path / "scan.png")
    result = result_of(task.path, "rapid")

    assert ledger.done(task, result, "rapid") is None

    (body,) = stored(ledger)
    assert ledger.journal.calls == [("mark_done", body["idempotency_key"])]  # type: ignore[attr-defined]
    assert (body["outcome"], body["model"], body["sha256"]) == ("done", "rapid", result.sha256)
    assert body["outputs"] == {
        "json": f"{task.path}.ocr.json",
        "md": f"{task.path}.ocr.md",
    }
    assert all(Path(path).is_file() for path in body["outputs"].values())
    assert sender.depth() == 1
    assert ledger.metrics.webhooks_queued._value.get() == 1


def test_a_failed_file_announces_its_sidecar_and_error(tmp_path: Path) -> None:
    """failed(): the event names the error sidecar and carries the error, stored by mark_failed itself."""
    ledger, _ = make()
    task = admitted(ledger, tmp_path / "bad.png")

    ledger.failed(task, Fault(kind="bad_input", message="corrupt"), None, "rapid", "cannot read")

    (body,) = stored(ledger)
    assert ledger.journal.calls == [("mark_failed", body["idempotency_key"])]  # type: ignore[attr-defined]
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
        file = FileKey("scans", f"{key}.png")
        journal.admit(file, 1, 1, "a" * 64)
        journal.claim(file)
        journal.mark_done(file, "a" * 64, 1, 1, webhook=WebhookEvent(key, URL, "{}", 1.0))
    ledger, sender = make(journal=journal)

    ledger.announcer.resume()

    assert sender.depth() == 2
    assert ledger.metrics.webhooks_queued._value.get() == 0


def test_a_finish_after_the_claim_was_lost_stores_and_sends_nothing(tmp_path: Path) -> None:
    """done() and failed() without the claim: ClaimLost, no event in the outbox, none for the sender."""
    ledger, sender = make()
    task = admitted(ledger, tmp_path / "scan.png")
    ledger.let_go(task)  # as when a shared journal gave the file to another daemon

    with pytest.raises(ClaimLost):
        ledger.done(task, result_of(task.path, "m"), "m")
    with pytest.raises(ClaimLost):
        ledger.failed(task, Fault(kind="bad_input", message="corrupt"), None, "m", "cannot read")

    assert ledger.journal.webhooks() == [] and sender.depth() == 0
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
