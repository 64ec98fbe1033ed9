"""The shared journal on a real PostgreSQL: claims between nodes, leases, takeover, fencing, outages."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from structlog.testing import capture_logs

from daemon.journal.interface import (
    Admission,
    ClaimLost,
    FileKey,
    JournalUnusable,
    State,
    WebhookEvent,
)
from daemon.journal.opening import default_node, open_journal
from daemon.journal.postgres.connection import redact
from daemon.journal.postgres.journal import PostgresJournal
from daemon.settings.sections import StateSettings
from harness.pg_proxy import LossyProxy
from harness.postgres_cluster import ROLE_PASSWORD, Cluster

SHA = "a" * 64
A = FileKey("scans", "a.png")
LEASE = 0.6  # seconds: long enough for a beat or two, short enough to wait out
_names = itertools.count()


@pytest.fixture
def nodes(pg_url: str, tmp_path: Path) -> Iterator[dict[str, PostgresJournal]]:
    """Two nodes, "a" and "b", on one fresh shared journal with short leases."""
    opened: dict[str, PostgresJournal] = {}
    for name in ("a", "b"):
        state = StateSettings(dir=tmp_path / name, url=pg_url, node=name, lease_seconds=LEASE)
        journal = open_journal(state)
        assert isinstance(journal, PostgresJournal)
        opened[name] = journal
    yield opened
    for journal in opened.values():
        journal.close()


def _wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_claim_held_by_one_node_is_refused_to_another(nodes: dict[str, PostgresJournal]) -> None:
    """While node a holds a file's live lease, node b cannot claim it, and b's writes for it raise ClaimLost."""
    a, b = nodes["a"], nodes["b"]
    assert a.admit(A, 1, 1, SHA) is Admission.NEW
    assert b.admit(A, 1, 1, SHA) is Admission.PENDING  # the same file seen by both: one row
    assert a.claim(A)
    assert not b.claim(A)
    with pytest.raises(ClaimLost):
        b.fence(A)
    assert A not in b.takeable()  # a live lease is not for taking


def test_the_heartbeat_keeps_a_lease_alive_past_its_length(
    nodes: dict[str, PostgresJournal],
) -> None:
    """A node whose heartbeat runs keeps its claim for many lease lengths; the other node waits."""
    a, b = nodes["a"], nodes["b"]
    a.admit(A, 1, 1, SHA)
    assert a.claim(A)
    time.sleep(LEASE * 4)
    assert not b.claim(A)
    a.fence(A)
    a.mark_done(A, SHA, 1, 1)
    report = a.leases()
    assert report.heartbeat_age_seconds is not None and report.heartbeat_age_seconds < LEASE


def test_a_silent_node_is_taken_over_and_then_fenced_out(nodes: dict[str, PostgresJournal]) -> None:
    """When a node stops beating its lease runs out; another takes the file over; the first then writes nothing."""
    a, b = nodes["a"], nodes["b"]
    a.admit(A, 1, 1, SHA)
    assert a.claim(A)
    a.heartbeat.stop()  # as a frozen (SIGSTOP) or cut-off daemon: no more renewals
    _wait_until(lambda: A in b.takeable())
    assert b.claim(A)
    assert b.leases().taken_over == 1
    with pytest.raises(ClaimLost):
        a.fence(A)  # the check at commit time
    with pytest.raises(ClaimLost):
        a.mark_done(A, SHA, 1, 1)
    assert a.leases().lost == 1
    b.fence(A)
    b.mark_done(A, SHA, 1, 1)
    entry = b.get(A)
    assert entry is not None and entry.state.value == "done"


def test_a_node_taken_over_stores_no_webhook_and_the_new_holder_reports_once(
    nodes: dict[str, PostgresJournal],
) -> None:
    """The outcome's claim check covers its webhook: the late node stores none; the one that took over does."""
    a, b = nodes["a"], nodes["b"]
    a.admit(A, 1, 1, SHA)
    assert a.claim(A)
    a.heartbeat.stop()  # frozen: a still believes it holds the claim
    _wait_until(lambda: A in b.takeable())
    assert b.claim(A)
    event = WebhookEvent(key="k", url="http://127.0.0.1:9/hook", body="{}", queued_at=1.0)
    assert a.memory.holds(A)  # so the refusal comes from the check in the transaction
    with pytest.raises(ClaimLost):
        a.mark_done(A, SHA, 1, 1, webhook=event, outbox_limit=10)
    assert a.webhooks() == [] and a.leases().lost == 1
    entry = b.get(A)
    assert entry is not None and entry.state is State.PENDING  # a's finish left no trace
    assert b.mark_done(A, SHA, 1, 1, webhook=event, outbox_limit=10) == []
    assert b.webhooks() == [event] and a.webhooks() == []


def test_a_finish_whose_reply_was_lost_counts_as_made(pg_url: str, tmp_path: Path) -> None:
    """The COMMIT lands, the link breaks before its answer: mark_done returns, the file is done, one event."""
    proxy = LossyProxy(pg_url)
    state = StateSettings(dir=tmp_path, url=proxy.url, node="a", lease_seconds=30)
    journal = open_journal(state)
    try:
        journal.admit(A, 1, 1, SHA)
        assert journal.claim(A)
        event = WebhookEvent(key="k", url="http://127.0.0.1:9/hook", body="{}", queued_at=1.0)
        proxy.lose_reply_after(b"finished_by")  # the finishing UPDATE, then its COMMIT
        with capture_logs() as logs:
            assert journal.mark_done(A, SHA, 1, 1, webhook=event, outbox_limit=10) == []
        assert proxy.replies_lost == 1  # the fault did happen
        events = [record["event"] for record in logs]
        assert "journal.unreachable" in events and "journal.finish_confirmed" in events
        entry = journal.get(A)
        assert entry is not None and entry.state is State.DONE
        assert journal.webhooks() == [event]
        report = journal.leases()
        assert (report.claims_held, report.lost) == (0, 0)  # not counted as a lost claim
        assert journal.is_final(A, 1, 1)
    finally:
        journal.close()
        proxy.stop()


def test_a_journal_without_finished_by_gains_it_and_keeps_its_rows(
    pg_url: str, tmp_path: Path
) -> None:
    """A journal made before finished_by existed gains the column on open, rows kept; a reopened row has none."""
    state = StateSettings(dir=tmp_path, url=pg_url, node="a", lease_seconds=30)
    journal = open_journal(state)
    journal.admit(A, 1, 1, SHA)
    journal.close()
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute("ALTER TABLE ocr_inbox_files DROP COLUMN finished_by")
    journal = open_journal(state)
    try:
        assert journal.claim(A)
        journal.mark_done(A, SHA, 1, 1)
        with psycopg.connect(pg_url, autocommit=True) as db:
            row = db.execute("SELECT state, finished_by FROM ocr_inbox_files").fetchone()
        assert row == ("done", "a")
        journal.reopen(A)  # pending again: nobody's finish
        with psycopg.connect(pg_url, autocommit=True) as db:
            row = db.execute("SELECT state, finished_by FROM ocr_inbox_files").fetchone()
        assert row == ("pending", None)
    finally:
        journal.close()


def test_a_lost_lease_the_heartbeat_noticed_first_still_counts_as_lost(
    nodes: dict[str, PostgresJournal],
) -> None:
    """Woken up, the heartbeat finds the lease gone before the main loop writes: ClaimLost, counted once."""
    a, b = nodes["a"], nodes["b"]
    a.admit(A, 1, 1, SHA)
    assert a.claim(A)
    a.heartbeat.stop()
    _wait_until(lambda: A in b.takeable())
    assert b.claim(A)
    a.heartbeat.beat()  # the first beat after waking up: the lease is not renewed
    assert a.leases().claims_held == 0
    with pytest.raises(ClaimLost):
        a.note_outputs(A, ["c" * 64])
    with pytest.raises(ClaimLost):
        a.mark_done(A, SHA, 1, 1)
    assert a.leases().lost == 1


def test_a_file_released_by_one_node_is_takeable_by_another(
    nodes: dict[str, PostgresJournal],
) -> None:
    """A claim given up (a daemon stopping) leaves the pending file to the next node at once."""
    a, b = nodes["a"], nodes["b"]
    a.admit(A, 1, 1, SHA)
    a.claim(A)
    a.release(A)
    assert A in b.takeable()
    assert b.claim(A)
    assert b.leases().taken_over == 0  # nobody held it: no takeover


def test_outcomes_of_other_nodes_reach_the_final_index(nodes: dict[str, PostgresJournal]) -> None:
    """What node a finished, node b's is_final learns from its heartbeat (no query from the watcher)."""
    a, b = nodes["a"], nodes["b"]
    a.admit(A, 1, 7, SHA)
    a.claim(A)
    a.mark_done(A, SHA, 1, 7)
    _wait_until(lambda: b.is_final(A, 1, 7))


def test_closing_releases_this_nodes_claims(nodes: dict[str, PostgresJournal]) -> None:
    """A daemon that stops cleanly leaves its pending files to the others without waiting for a lease."""
    a, b = nodes["a"], nodes["b"]
    a.admit(A, 1, 1, SHA)
    a.claim(A)
    a.close()
    assert b.claim(A)


def test_nodes_closed_or_silent_past_their_lease_are_departed(
    nodes: dict[str, PostgresJournal], pg_url: str, tmp_path: Path
) -> None:
    """A closed node is gone since it closed, a silent one since its last beat plus its lease; a live one is not."""
    a, b = nodes["a"], nodes["b"]
    closing = open_journal(
        StateSettings(dir=tmp_path / "c", url=pg_url, node="c", lease_seconds=60)
    )
    assert a.departed() == [] and b.departed() == []
    before = time.time()
    closing.close()
    [c] = a.departed()
    assert c.node == "c" and c.lease_seconds == 60
    assert before - 1 < c.since < time.time() + 1  # its stop, not its lease's end a minute on
    b.heartbeat.stop()  # frozen or cut off: its heartbeat ages past its lease
    _wait_until(lambda: [d.node for d in a.departed()] == ["b", "c"])
    with psycopg.connect(pg_url) as db:
        row = db.execute(
            "SELECT EXTRACT(EPOCH FROM heartbeat_at) FROM ocr_inbox_nodes WHERE node = 'b'"
        ).fetchone()
    assert row is not None
    [gone_b, gone_c] = a.departed()
    assert gone_b.since == pytest.approx(float(row[0]) + LEASE) and gone_c == c
    assert "a" not in [d.node for d in b.departed()]  # a beats on


def test_a_silent_node_with_a_live_lease_is_not_departed_until_it_runs_out(
    nodes: dict[str, PostgresJournal], pg_url: str
) -> None:
    """A claim made after a node's last heartbeat keeps it from counting as gone; it is gone when that lease ends."""
    a, b = nodes["a"], nodes["b"]
    a.admit(A, 1, 1, SHA)
    b.heartbeat.stop()
    _wait_until(lambda: [d.node for d in a.departed()] == ["b"])  # silent, holding nothing
    assert b.claim(A)  # its main thread still reaches the database: it could commit
    assert a.departed() == []
    _wait_until(lambda: [d.node for d in a.departed()] == ["b"])
    with psycopg.connect(pg_url) as db:
        row = db.execute("SELECT EXTRACT(EPOCH FROM lease_until) FROM ocr_inbox_files").fetchone()
    assert row is not None and a.departed()[0].since == pytest.approx(float(row[0]))


def test_the_password_is_never_shown(postgres_cluster: Cluster) -> None:
    """redact() hides the password of a URL; the journal's own URL for logs is redacted."""
    url = postgres_cluster.url("anything")
    assert ROLE_PASSWORD in url
    shown = redact(url)
    assert ROLE_PASSWORD not in shown and "***" in shown and "anything" in shown
    assert redact("postgresql://ocr@db/x") == "postgresql://ocr@db/x"


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("password", "wrong password"),
        ("database", "no such database"),
        ("syntax", "not a valid PostgreSQL URL"),
    ],
)
def test_a_url_that_cannot_work_is_refused_at_once(
    postgres_cluster: Cluster, pg_url: str, tmp_path: Path, damage: str, says: str
) -> None:
    """Wrong credentials, no such database or bad syntax: JournalUnusable naming it, password redacted."""
    url = {
        "password": postgres_cluster.url(pg_url.rsplit("/", 1)[1], password="not-the-password"),
        "database": postgres_cluster.url("no_such_database"),
        "syntax": pg_url + "?sslmode=sideways",
    }[damage]
    with pytest.raises(JournalUnusable) as raised:
        open_journal(StateSettings(dir=tmp_path, url=url, node="a"))
    message = str(raised.value)
    assert says in message
    assert ROLE_PASSWORD not in message and "not-the-password" not in message


def test_the_password_may_come_from_a_file(
    postgres_cluster: Cluster, pg_url: str, tmp_path: Path
) -> None:
    """A URL without a password works with state.password_file holding it."""
    secret = tmp_path / "db-password"
    secret.write_text(ROLE_PASSWORD + "\n")
    url = postgres_cluster.url(pg_url.rsplit("/", 1)[1], password=None)
    journal = open_journal(
        StateSettings(dir=tmp_path, url=url, node="a", password_file=str(secret))
    )
    try:
        assert journal.counts() == {}
    finally:
        journal.close()


def test_default_node_differs_per_state_folder_and_keeps_across_restarts(tmp_path: Path) -> None:
    """Two state folders on one machine give two nodes; the same folder gives the same node again."""
    first, second = default_node(tmp_path / "one"), default_node(tmp_path / "two")
    assert first != second
    assert default_node(tmp_path / "one") == first


def _in_thread(target: object) -> tuple[threading.Thread, dict[str, object]]:
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = target()  # type: ignore[operator]
        except BaseException as error:
            box["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_a_server_down_at_start_and_restarted_later_loses_nothing(
    own_cluster: Cluster, tmp_path: Path
) -> None:
    """Opening waits while the server is down (problem says why); a restart mid-use is ridden out, nothing lost."""
    postgres_cluster = own_cluster
    pg_url = postgres_cluster.new_database("outage")
    state = StateSettings(dir=tmp_path, url=pg_url, node="a", lease_seconds=30)
    postgres_cluster.stop_server()
    try:
        thread, box = _in_thread(lambda: open_journal(state))
        time.sleep(1.5)
        assert thread.is_alive() and "value" not in box  # still waiting, not exited
    finally:
        postgres_cluster.start_server()
    thread.join(60)
    journal = box.get("value")
    assert isinstance(journal, PostgresJournal), box.get("error")
    try:
        journal.admit(A, 1, 1, SHA)
        assert journal.claim(A)
        postgres_cluster.stop_server()
        thread, box = _in_thread(lambda: journal.note_outputs(A, ["c" * 64]))
        _wait_until(lambda: journal.problem() is not None)
        assert "unreachable" in str(journal.problem())
        postgres_cluster.start_server()
        thread.join(60)
        assert "error" not in box, box.get("error")
        assert journal.problem() is None
        journal.mark_done(
            A, SHA, 1, 1
        )  # the claim outlived the restart (its lease did not run out)
        entry = journal.get(A)
        assert entry is not None and entry.output_hashes == ("c" * 64,)
        assert journal.counts() == {"done": 1}
    finally:
        journal.close()
