"""Several daemons on one inbox through a shared PostgreSQL journal: each file once, a dead daemon's files taken over."""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from daemon.journal.interface import FileKey
from daemon.outputs.paths import TEMP_SUFFIX
from daemon.outputs.writing import writer_tag
from harness.driver import Daemon, outputs_of, read_json, start_daemon, wait_until
from harness.drops import drop_png, faulty_settings
from harness.postgres_cluster import Cluster
from tests.support.webhook_receiver import WebhookReceiver

LEASE_SECONDS = 3.0


def _start(
    root: Path,
    inbox: Path,
    url: str,
    node: str,
    page_seconds: float,
    hook: str | None = None,
    lease_seconds: float = LEASE_SECONDS,
    **model: Any,
) -> Daemon:
    root.mkdir(parents=True, exist_ok=True)
    settings = faulty_settings(inbox, root / "state", page_seconds=page_seconds, **model)
    if hook is not None:
        settings.setdefault("outputs", {})["webhook_url"] = hook
    # As on a share: no inotify events, polling only.
    settings["watch"].update({"mode": "polling", "poll_interval_seconds": 0.3})
    settings["state"].update({"url": url, "node": node, "lease_seconds": lease_seconds})
    return start_daemon(root, settings, inbox=inbox)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A webhook receiver answering 200, for every daemon of the fleet."""
    server = WebhookReceiver()
    server.listen()
    yield server
    server.close()


def _keys_per_file(receiver: WebhookReceiver) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for request in receiver.received():
        keys.setdefault(request.body["file"], []).append(request.body["idempotency_key"])
    return keys


@pytest.fixture
def fleet(tmp_path: Path, pg_url: str) -> Iterator[tuple[Path, str, list[Daemon]]]:
    """An inbox, a fresh shared journal, and the daemons a test starts on them (stopped after)."""
    started: list[Daemon] = []
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    yield inbox, pg_url, started
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.kill()


def _done_across(daemons: list[Daemon]) -> list[str]:
    return [record["file"] for daemon in daemons for record in daemon.find("file.done")]


def _wait_all_done(daemons: list[Daemon], count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while len(set(_done_across(daemons))) < count:
        assert time.monotonic() < deadline, (
            f"only {len(set(_done_across(daemons)))} of {count} done"
        )
        time.sleep(0.2)


def test_three_daemons_do_each_file_of_a_burst_exactly_once(
    fleet: tuple[Path, str, list[Daemon]], tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """Three daemons polling one inbox: one output pair, one file.done and one webhook per file across them."""
    inbox, url, daemons = fleet
    for name in ("n1", "n2", "n3"):
        daemons.append(
            _start(tmp_path / name, inbox, url, name, page_seconds=0.05, hook=receiver.url())
        )
    for daemon in daemons:
        daemon.wait_ready()
    files = [drop_png(inbox / f"scan-{n:02d}.png", seed=9000 + n) for n in range(24)]
    _wait_all_done(daemons, len(files))
    time.sleep(LEASE_SECONDS)  # room for a late duplicate to show itself
    done = _done_across(daemons)
    assert sorted(done) == sorted(str(path) for path in files)  # each exactly once
    nodes = set()
    for path in files:
        outputs = outputs_of(path)
        assert set(outputs) == {"md", "json"}, path
        nodes.add(read_json(outputs["json"])["node"])
    assert nodes <= {"n1", "n2", "n3"}
    assert not list(inbox.glob("*.error.json"))
    receiver.wait_for(len(files))
    keys = _keys_per_file(receiver)
    assert sorted(keys) == sorted(str(path) for path in files)
    assert all(len(sent) == 1 for sent in keys.values()), keys  # reported by one daemon, once


def test_a_killed_daemons_files_are_taken_over(
    fleet: tuple[Path, str, list[Daemon]], tmp_path: Path
) -> None:
    """kill -9 mid-file: the other daemon does the file; a daemon starting later removes the dead one's temp files."""
    inbox, url, daemons = fleet
    slow = _start(tmp_path / "slow", inbox, url, "slow", page_seconds=30.0)
    daemons.append(slow)
    slow.wait_ready()
    path = drop_png(inbox / "held.png", seed=9100)
    slow.wait_for("file.dispatched")
    other = _start(tmp_path / "other", inbox, url, "other", page_seconds=0.05)
    daemons.append(other)
    other.wait_ready()
    killed_at = time.time()
    slow.kill()
    [record] = other.wait_for("file.taken_over", timeout=60)
    assert record["from_node"] == "slow"
    other.wait_for("file.done", file=str(path), timeout=60)
    assert read_json(outputs_of(path)["json"])["node"] == "other"
    assert other.metric("ocr_inbox_leases_taken_over_total", node="other") == 1
    # A daemon starting now removes the dead node's leftover temp file, not a live node's.
    leftover = inbox / f".held.png.ocr.md.w{writer_tag('slow')}.0badf00d{TEMP_SUFFIX}"
    in_progress = inbox / f".next.png.ocr.md.w{writer_tag('other')}.0c0ffee0{TEMP_SUFFIX}"
    leftover.write_bytes(b"half")
    os.utime(leftover, (killed_at - 10, killed_at - 10))  # as written before the kill
    in_progress.write_bytes(b"half")
    late = _start(tmp_path / "late", inbox, url, "late", page_seconds=0.05)
    daemons.append(late)
    late.wait_ready()
    assert not leftover.exists() and in_progress.exists()
    [removed] = late.find("outputs.stale_temp_removed")
    assert removed["count"] == 1


@contextmanager
def _row_locked(url: str, key: FileKey) -> Iterator[None]:
    """Hold a file's journal row locked, as another session's long transaction would: writes to it wait."""
    with psycopg.connect(url) as db:
        row = db.execute(
            "SELECT 1 FROM ocr_inbox_files WHERE inbox = %s AND relative = %s FOR UPDATE",
            (key.inbox, key.relative),
        ).fetchone()
        assert row is not None
        try:
            yield
        finally:
            db.rollback()


def test_a_running_daemon_removes_the_temp_files_of_one_killed_mid_write(
    fleet: tuple[Path, str, list[Daemon]], tmp_path: Path
) -> None:
    """kill -9 between its temp files and their rename: a daemon already running removes them once the lease ran out."""
    inbox, url, daemons = fleet
    lease = 6.0  # a third of it is the clock margin: more than the write takes after a heartbeat
    victim = _start(
        tmp_path / "victim", inbox, url, "victim", page_seconds=1.5, lease_seconds=lease
    )
    daemons.append(victim)
    victim.wait_ready()
    # Running before the file comes, with a model slow to load, so the victim claims the file.
    survivor = _start(
        tmp_path / "survivor", inbox, url, "survivor", 0.05, lease_seconds=lease, load_seconds=8.0
    )
    daemons.append(survivor)
    survivor.wait_for("daemon.started")
    path = drop_png(inbox / "stalled.png", seed=9400)
    victim.wait_for("file.dispatched", file=str(path))
    mark = f".w{writer_tag('victim')}."

    def victims_temps() -> list[Path]:
        return [p for p in inbox.iterdir() if mark in p.name and p.name.endswith(TEMP_SUFFIX)]

    # The journal's row locked: the victim writes its temp files, then waits to note their hashes.
    with _row_locked(url, FileKey("inbox", "stalled.png")):
        wait_until(lambda: len(victims_temps()) == 2, timeout=30)  # .ocr.md and .ocr.json
        left = victims_temps()
        victim.kill()
    wait_until(
        lambda: not any(p.exists() for p in left),
        timeout=60,
        explain=lambda: survivor.log_text()[-4000:],
    )
    [removed] = survivor.find("outputs.stale_temp_removed")
    assert removed["departed"] == ["victim"] and removed["count"] == 2
    assert survivor.process.poll() is None and len(survivor.find("daemon.started")) == 1
    assert survivor.metric("ocr_inbox_stale_temp_files_removed_total", node="survivor") == 2
    survivor.wait_for("file.done", file=str(path), timeout=60)  # and the file is taken over
    assert not [p.name for p in inbox.iterdir() if p.name.endswith(TEMP_SUFFIX)]


def _signal_tree(daemon: Daemon, signum: int) -> None:
    """Send `signum` to the daemon and its workers, as when the whole host (or VM) is paused."""
    root = psutil.Process(daemon.process.pid)
    for process in [root, *root.children(recursive=True)]:
        os.kill(process.pid, signum)


def _snapshot(outputs: dict[str, Path]) -> dict[str, tuple[int, int, bytes]]:
    return {
        kind: (path.stat().st_ino, path.stat().st_mtime_ns, path.read_bytes())
        for kind, path in outputs.items()
    }


def test_a_frozen_daemon_resumed_after_a_takeover_writes_nothing(
    fleet: tuple[Path, str, list[Daemon]], tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """SIGSTOP past the lease, the file taken over and done, SIGCONT: the late daemon writes and reports nothing."""
    inbox, url, daemons = fleet
    hook = receiver.url()
    frozen = _start(tmp_path / "frozen", inbox, url, "frozen", page_seconds=4.0, hook=hook)
    daemons.append(frozen)
    frozen.wait_ready()
    path = drop_png(inbox / "contested.png", seed=9200)
    frozen.wait_for("file.dispatched", file=str(path))
    _signal_tree(frozen, signal.SIGSTOP)  # mid-file: its worker is recognising the page
    try:
        other = _start(tmp_path / "other", inbox, url, "other", page_seconds=0.05, hook=hook)
        daemons.append(other)
        other.wait_ready()
        [record] = other.wait_for("file.taken_over", timeout=60)
        assert record["from_node"] == "frozen"
        other.wait_for("file.done", file=str(path), timeout=60)
        taken_over = outputs_of(path)
        assert set(taken_over) == {"md", "json"}
        before = _snapshot(taken_over)
    finally:
        _signal_tree(frozen, signal.SIGCONT)
    # Awake again, the frozen daemon finishes the page and finds its claim gone.
    frozen.wait_for("file.claim_lost", file=str(path), timeout=60)
    wait_until(
        lambda: frozen.metric("ocr_inbox_claims_lost_total", node="frozen") == 1,
        timeout=30,
        explain=lambda: frozen.log_text()[-4000:],
    )
    assert frozen.process.poll() is None  # it keeps running
    assert _snapshot(outputs_of(path)) == before  # not rewritten, not replaced
    assert read_json(taken_over["json"])["node"] == "other"
    assert not frozen.find("file.done")
    assert [r["file"] for r in other.find("file.done")] == [str(path)]
    assert not [p.name for p in inbox.iterdir() if p.name.endswith(TEMP_SUFFIX)]
    assert not list(inbox.glob("*.error.json"))
    receiver.wait_for(1)
    assert [len(sent) for sent in _keys_per_file(receiver).values()] == [1]  # other's only


def _readiness(daemon: Daemon) -> tuple[int, str]:
    """/readyz: its status code and body."""
    try:
        with urllib.request.urlopen(daemon.url("/readyz"), timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_a_database_restart_in_a_backlog_loses_and_repeats_nothing(
    own_cluster: Cluster, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """PostgreSQL stopped mid-backlog past the lease, then started: not ready meanwhile, each file done and reported once."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    url = own_cluster.new_database("restarted")
    hook = receiver.url()
    daemons = [
        _start(tmp_path / name, inbox, url, name, page_seconds=0.3, hook=hook)
        for name in ("n1", "n2")
    ]
    try:
        for daemon in daemons:
            daemon.wait_ready()
        files = [drop_png(inbox / f"backlog-{n:02d}.png", seed=9300 + n) for n in range(16)]
        wait_until(lambda: len(_done_across(daemons)) >= 3, timeout=90)
        own_cluster.stop_server()  # fast: every session is cut off
        try:
            first = daemons[0]
            wait_until(
                lambda: _readiness(first)[0] == 503,
                timeout=30,
                explain=lambda: first.log_text()[-4000:],
            )
            assert "unreachable" in _readiness(first)[1]
            time.sleep(LEASE_SECONDS + 1)  # the leases held run out meanwhile
            assert all(daemon.process.poll() is None for daemon in daemons)
        finally:
            own_cluster.start_server()
        _wait_all_done(daemons, len(files))
        time.sleep(LEASE_SECONDS)  # room for a late duplicate to show itself
        assert sorted(_done_across(daemons)) == sorted(str(path) for path in files)
        for path in files:
            assert set(outputs_of(path)) == {"md", "json"}, path
        assert not list(inbox.glob("*.error.json"))
        assert not [p.name for p in inbox.iterdir() if p.name.endswith(TEMP_SUFFIX)]
        assert first.find("journal.reconnected")
        assert _readiness(first)[0] == 200
        receiver.wait_for(len(files))
        keys = _keys_per_file(receiver)
        assert sorted(keys) == sorted(str(path) for path in files)
        assert all(len(sent) == 1 for sent in keys.values()), keys
    finally:
        for daemon in daemons:
            daemon.kill()
