"""The journal contract, run against both backends: SQLite (one daemon) and PostgreSQL (shared)."""

from __future__ import annotations

import time

import pytest

from daemon.journal.interface import Admission, ClaimLost, FileKey, Journal, State, WebhookEvent
from daemon.journal.sqlite import SqliteJournal
from tests.journal.conftest import OpenJournal

SHA_A = "a" * 64
SHA_B = "b" * 64
A = FileKey("scans", "a.png")
B = FileKey("scans", "sub/b.png")


def test_new_then_pending_then_unchanged(open_node: OpenJournal) -> None:
    """A new file is NEW; seen again while pending it keeps its place; once done it is UNCHANGED."""
    journal = open_node()
    assert journal.admit(A, 10, 1, SHA_A) is Admission.NEW
    assert journal.admit(A, 10, 1, SHA_A) is Admission.PENDING
    assert journal.claim(A)
    journal.mark_done(A, SHA_A, 10, 1)
    assert journal.admit(A, 10, 2, SHA_A) is Admission.UNCHANGED
    entry = journal.get(A)
    assert entry is not None and entry.state is State.DONE and entry.key == A
    assert entry.mtime_ns == 2  # a touched file keeps its row, with its new mtime


def test_changed_content_is_new_and_forgets_attempts(open_node: OpenJournal) -> None:
    """New content at a known key is admitted afresh, without the old content's attempt counts."""
    journal = open_node()
    journal.admit(A, 10, 1, SHA_A)
    assert journal.claim(A)
    assert journal.record_attempt(A, "qwen") == 1
    assert journal.record_attempt(A, "qwen") == 2
    assert journal.record_attempt(A, "rapid") == 1
    journal.mark_failed(A, SHA_A, 10, 1, "poison")
    failed = journal.get(A)
    assert failed is not None and failed.error == "poison"
    assert failed.attempts == {"qwen": 2, "rapid": 1}
    assert journal.admit(A, 11, 2, SHA_B) is Admission.NEW
    entry = journal.get(A)
    assert entry is not None
    assert entry.state is State.PENDING and entry.attempts == {} and entry.sha256 == SHA_B
    assert entry.error is None


def test_final_index_answers_and_survives_reopening(open_node: OpenJournal) -> None:
    """is_final matches exactly (key, size, mtime) of finished files, and a journal opened later knows it."""
    journal = open_node()
    journal.admit(A, 10, 5, SHA_A)
    assert not journal.is_final(A, 10, 5)
    journal.claim(A)
    journal.mark_done(A, SHA_A, 10, 5)
    assert journal.is_final(A, 10, 5)
    assert not journal.is_final(A, 10, 6)
    assert not journal.is_final(FileKey("letters", "a.png"), 10, 5)  # another inbox, another file
    journal.close()
    assert open_node().is_final(A, 10, 5)


def test_pending_oldest_first_and_counts(open_node: OpenJournal) -> None:
    """pending() lists rows waiting for an outcome in the order they came; counts() per state."""
    journal = open_node()
    keys = [FileKey("scans", f"{n}.png") for n in range(5)]
    for n, key in enumerate(keys):
        journal.admit(key, n, n, f"{n:064d}")
    journal.claim(keys[1])
    journal.mark_done(keys[1], f"{1:064d}", 1, 1)
    journal.claim(keys[3])
    journal.mark_failed(keys[3], f"{3:064d}", 3, 3, "bad")
    assert [entry.key for entry in journal.pending()] == [keys[0], keys[2], keys[4]]
    assert journal.counts() == {"pending": 3, "done": 1, "failed": 1}


def test_trail_and_output_hashes_are_kept(open_node: OpenJournal) -> None:
    """The fallback trail and the hashes of the output set about to be committed are stored per file."""
    journal = open_node()
    journal.admit(A, 1, 1, SHA_A)
    journal.claim(A)
    journal.record_trail(A, [{"model": "qwen", "outcome": "empty_output"}])
    journal.note_outputs(A, ["c" * 64, "e" * 64])
    entry = journal.get(A)
    assert entry is not None
    assert entry.trail == [{"model": "qwen", "outcome": "empty_output"}]
    assert entry.output_hashes == ("c" * 64, "e" * 64)
    journal.mark_done(A, SHA_A, 1, 1)
    journal.admit(A, 2, 2, SHA_B)  # new content: the hashes still prove the old set ours
    entry = journal.get(A)
    assert entry is not None and entry.output_hashes == ("c" * 64, "e" * 64)


def test_forget_and_reopen(open_node: OpenJournal) -> None:
    """A vanished file's row is dropped; a finished row can be made pending again."""
    journal = open_node()
    journal.admit(A, 1, 1, SHA_A)
    journal.forget(A)
    assert journal.get(A) is None
    journal.admit(B, 1, 1, SHA_B)
    journal.claim(B)
    journal.mark_done(B, SHA_B, 1, 1)
    journal.reopen(B)
    entry = journal.get(B)
    assert entry is not None and entry.state is State.PENDING
    assert not journal.is_final(B, 1, 1)
    assert journal.claim(B)


def test_work_on_a_file_needs_its_claim(open_node: OpenJournal) -> None:
    """Writes for a file need its claim; the outcome ends it; only pending rows can be claimed."""
    journal = open_node()
    assert not journal.claim(A)  # no row
    journal.admit(A, 1, 1, SHA_A)
    with pytest.raises(ClaimLost):
        journal.record_attempt(A, "qwen")
    with pytest.raises(ClaimLost):
        journal.fence(A)
    assert journal.claim(A) and journal.claim(A)  # granted again to the node that holds it
    journal.fence(A)
    assert journal.leases().claims_held == 1
    journal.mark_done(A, SHA_A, 1, 1)
    assert journal.leases().claims_held == 0
    with pytest.raises(ClaimLost):
        journal.note_outputs(A, ["c" * 64])
    assert not journal.claim(A)  # done: nothing to claim
    journal.admit(B, 1, 1, SHA_B)
    journal.claim(B)
    journal.release(B)
    with pytest.raises(ClaimLost):
        journal.mark_failed(B, SHA_B, 1, 1, "no claim")
    journal.claim(B)
    journal.forget(B)
    with pytest.raises(ClaimLost):
        journal.fence(B)


def test_one_node_has_nothing_to_take_over(open_node: OpenJournal) -> None:
    """A node alone, holding what it claimed, finds nothing to take over; the node has its name."""
    journal = open_node("scanner-1")
    assert journal.node == "scanner-1"
    journal.admit(A, 1, 1, SHA_A)
    journal.claim(A)
    assert A not in journal.takeable()
    assert journal.problem() is None


def test_a_node_alone_knows_of_no_departed_node(open_node: OpenJournal) -> None:
    """A node never counts itself as departed, nor finds other writers' leftovers to remove."""
    journal = open_node("scanner-1")
    journal.admit(A, 1, 1, SHA_A)
    journal.claim(A)
    assert list(journal.departed()) == []


def test_a_closed_node_is_departed_since_it_closed_where_nodes_share_the_journal(
    open_node: OpenJournal,
) -> None:
    """A shared journal names a closed node gone since it closed, with its lease; one node's knows none."""
    alive, closing = open_node("a"), open_node("b", lease_seconds=45.0)
    before = time.time()
    closing.close()
    after = time.time()
    departed = list(alive.departed())
    if isinstance(alive, SqliteJournal):
        assert departed == []  # one node: its folders are its own
        return
    [gone] = departed
    assert gone.node == "b" and gone.lease_seconds == 45.0
    assert before - 1 < gone.since < after + 1  # the database's clock is this machine's


def _event(key: str, body: str = "{}") -> WebhookEvent:
    return WebhookEvent(key=key, url="http://127.0.0.1:9/hook", body=body, queued_at=1.5)


def _finish_with(journal: Journal, key: str, event: WebhookEvent, limit: int) -> list[WebhookEvent]:
    """Admit, claim and finish the file named `key` (done again if it was), storing `event` with it."""
    file = FileKey("scans", f"{key}.png")
    if journal.admit(file, 1, 1, SHA_A) is Admission.UNCHANGED:
        journal.reopen(file)
    assert journal.claim(file)
    return journal.mark_done(file, SHA_A, 1, 1, webhook=event, outbox_limit=limit)


def test_webhook_outbox_keeps_order_replaces_bounds_and_survives(open_node: OpenJournal) -> None:
    """Events come back oldest first after a reopen; a key stored again is the newest; the oldest drop."""
    journal = open_node("a")
    for key in ("k1", "k2", "k3"):
        assert _finish_with(journal, key, _event(key), limit=3) == []
    _finish_with(journal, "k1", _event("k1", body="again"), limit=3)
    dropped = _finish_with(journal, "k4", _event("k4"), limit=3)
    assert [event.key for event in dropped] == ["k2"]
    journal.webhook_delivered("k3")
    journal.webhook_delivered("unknown")
    journal.close()
    again = open_node("a")
    assert [(e.key, e.body) for e in again.webhooks()] == [("k1", "again"), ("k4", "{}")]
    assert again.webhooks()[0].queued_at == 1.5


def test_a_finish_stores_its_webhook_with_the_outcome(open_node: OpenJournal) -> None:
    """mark_done and mark_failed with an event store the outcome and the event together; without one, none."""
    journal = open_node("a")
    for key in (A, B):
        journal.admit(key, 1, 1, SHA_A)
        assert journal.claim(key)
    assert journal.mark_done(A, SHA_A, 1, 1, webhook=_event("done-a"), outbox_limit=10) == []
    assert (
        journal.mark_failed(B, SHA_A, 1, 1, "bad", webhook=_event("failed-b"), outbox_limit=10)
        == []
    )
    assert [e.key for e in journal.webhooks()] == ["done-a", "failed-b"]
    assert [journal.get(key).state for key in (A, B)] == [State.DONE, State.FAILED]  # type: ignore[union-attr]
    journal.admit(A, 2, 2, SHA_B)
    assert journal.claim(A)
    assert journal.mark_done(A, SHA_B, 2, 2) == []  # no event: the outbox is left as it was
    assert len(journal.webhooks()) == 2


def test_a_finish_without_the_claim_stores_no_webhook(open_node: OpenJournal) -> None:
    """A node that let the claim go gets ClaimLost from mark_done/mark_failed and stores no event."""
    journal = open_node("a")
    journal.admit(A, 1, 1, SHA_A)
    assert journal.claim(A)
    journal.release(A)
    with pytest.raises(ClaimLost):
        journal.mark_done(A, SHA_A, 1, 1, webhook=_event("k1"), outbox_limit=10)
    with pytest.raises(ClaimLost):
        journal.mark_failed(A, SHA_A, 1, 1, "bad", webhook=_event("k1"), outbox_limit=10)
    assert journal.webhooks() == []
    entry = journal.get(A)
    assert entry is not None and entry.state is State.PENDING


def test_a_move_noted_is_read_back_until_finished(open_node: OpenJournal) -> None:
    """A noted move outlives a reopen; finishing it drops the move and the file's row."""
    journal = open_node("a")
    journal.admit(A, 1, 1, SHA_A)
    assert journal.claim(A)
    journal.mark_done(A, SHA_A, 1, 1)
    journal.note_move(A, "/archive/a.png")
    journal.close()
    again = open_node("a")
    assert again.moves() == [(A, "/archive/a.png")]
    again.finish_move(A)
    assert again.moves() == [] and again.get(A) is None and not again.is_final(A, 1, 1)
