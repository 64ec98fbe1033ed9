"""sd_notify from the running daemon, received on a real AF_UNIX datagram socket held by the test.

The test plays systemd's part: it binds the socket, passes $NOTIFY_SOCKET and
$WATCHDOG_USEC to the daemon, and records every datagram with the time it
arrived. The model load is made slow (the fault-injection engine's
load_seconds) so that what happens before READY=1 can be seen.
"""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.driver import Daemon, record_time, running_daemon
from harness.drops import drop_png, faulty_settings
from tests.support.datagram import socket_path
from tests.support.notify_socket import NotifySocket

pytestmark = pytest.mark.slow

WATCHDOG_USEC = 1_000_000  # systemd's timeout; the daemon pings at half of it
PING_INTERVAL = WATCHDOG_USEC / 1_000_000 / 2
LOAD_SECONDS = 3.0


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    receiver = NotifySocket(socket_path(tmp_path, "notify.sock"))
    yield receiver
    receiver.close()


def systemd_env(
    notify: NotifySocket, watchdog_pid: str = "", watchdog_usec: int = WATCHDOG_USEC
) -> dict[str, str]:
    # WATCHDOG_PID empty: as if unset (the daemon's own pid is unknown before it starts).
    return {
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": str(watchdog_usec),
        "WATCHDOG_PID": watchdog_pid,
    }


def intervals(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def test_ready_comes_after_the_model_is_loaded(tmp_path: Path, notify: NotifySocket) -> None:
    """EXTEND_TIMEOUT and STATUS "loading" while the model loads; READY=1 only after model.loaded."""
    settings = faulty_settings(tmp_path / "inbox", tmp_path / "state", load_seconds=LOAD_SECONDS)
    with running_daemon(tmp_path, settings, env=systemd_env(notify)) as daemon:
        ready = notify.wait_for("READY", "1")
        [loaded] = daemon.wait_for("model.loaded")
        assert daemon.stop() == 0

    messages = notify.snapshot()
    before = [m for m in messages if m.received < ready.received]
    assert ready.received >= record_time(loaded)
    assert [m.fields["READY"] for m in messages if "READY" in m.fields] == ["1"]
    # While loading: asked for more start time (30 s in microseconds), said what it does.
    extends = [m.fields["EXTEND_TIMEOUT_USEC"] for m in before if "EXTEND_TIMEOUT_USEC" in m.fields]
    assert extends and all(int(value) == 30_000_000 for value in extends)
    assert any(m.fields.get("STATUS") == "loading fake" for m in before)
    # The main loop turns (and pings) while the worker loads: a long load is not a stuck daemon.
    assert len([m for m in before if m.fields.get("WATCHDOG") == "1"]) >= 2
    # READY carries the status it starts serving with.
    assert ready.fields["STATUS"].startswith("serving with fake")
    # The load took LOAD_SECONDS: READY cannot have come earlier than that after the first word.
    assert ready.received - messages[0].received >= LOAD_SECONDS * 0.9
    stopping = notify.with_field("STOPPING")
    assert [m.fields["STOPPING"] for m in stopping] == ["1"]
    assert stopping[0].received > ready.received


def test_pings_keep_an_interval_that_is_not_a_multiple_of_the_loop_tick(
    tmp_path: Path, notify: NotifySocket
) -> None:
    """WATCHDOG_USEC=1.4 s: pings every ~0.7 s, the loop waking for them, not every second tick."""
    settings = faulty_settings(tmp_path / "inbox", tmp_path / "state")
    env = systemd_env(notify, watchdog_usec=1_400_000)
    with running_daemon(tmp_path, settings, env=env) as daemon:
        ready = notify.wait_for("READY", "1")
        time.sleep(5.0)
        gaps = intervals(notify.pings_between(ready.received, time.time()))
        assert daemon.stop() == 0
    assert len(gaps) >= 5, gaps
    # Waiting out whole 0.5 s ticks would make every gap 1.0 s.
    assert sorted(gaps)[len(gaps) // 2] < 0.85, gaps
    assert min(gaps) >= 0.7 * 0.9, gaps


def test_watchdog_pings_at_half_the_timeout_and_stop_while_the_loop_is_stuck(
    tmp_path: Path, notify: NotifySocket
) -> None:
    """WATCHDOG=1 every ~0.5 s for WATCHDOG_USEC=1 s; none while the journal blocks the loop."""
    settings = faulty_settings(tmp_path / "inbox", tmp_path / "state")
    daemon: Daemon
    with running_daemon(tmp_path, settings, env=systemd_env(notify)) as daemon:
        ready = notify.wait_for("READY", "1")
        time.sleep(4.0)
        steady = notify.pings_between(ready.received, time.time())
        gaps = intervals(steady)

        # An operator's sqlite3 shell (or a backup) holds the journal: the main
        # loop blocks in its next write, which a new file brings on.
        journal = sqlite3.connect(daemon.state_dir / "journal.sqlite3", isolation_level=None)
        journal.execute("BEGIN EXCLUSIVE")
        try:
            stuck = drop_png(daemon.inbox / "stuck.png")
            daemon.wait_for("watch.stable", path=str(stuck))
            blocked_from = time.time() + 1.0  # the loop reaches the journal within a turn
            time.sleep(4.0)
            released_at = time.time()
            pings_while_blocked = notify.pings_between(blocked_from, released_at)
            assert daemon.process.poll() is None
        finally:
            journal.execute("ROLLBACK")
            journal.close()
        [done] = daemon.wait_for("file.done", file=str(stuck))
        time.sleep(2.0)
        resumed = notify.pings_between(released_at, time.time())
        assert daemon.stop() == 0

    # ~8 pings in 4 s; generous bounds for a loaded machine.
    assert 5 <= len(steady) <= 12, gaps
    assert min(gaps) >= PING_INTERVAL * 0.9, gaps
    # Every gap is under the timeout itself, or systemd would have killed a healthy daemon.
    assert max(gaps) < WATCHDOG_USEC / 1_000_000, gaps
    assert pings_while_blocked == []
    # The loop really was held by the journal: the file was admitted only after the release.
    assert record_time(done) >= released_at
    assert len(resumed) >= 2
    assert not daemon.find("file.failed")


def test_watchdog_pid_of_another_process_means_no_pings(
    tmp_path: Path, notify: NotifySocket
) -> None:
    """WATCHDOG_PID naming another process (a parent's watchdog) keeps the daemon from pinging."""
    settings = faulty_settings(tmp_path / "inbox", tmp_path / "state")
    with running_daemon(tmp_path, settings, env=systemd_env(notify, str(os.getpid()))) as daemon:
        ready = notify.wait_for("READY", "1")
        time.sleep(2.0)
        assert daemon.stop() == 0

    assert ready.fields["READY"] == "1"
    assert notify.with_field("WATCHDOG") == []
    assert notify.with_field("STOPPING")


def test_sighup_while_loading_does_not_announce_ready_early(
    tmp_path: Path, notify: NotifySocket
) -> None:
    """A reload during the first model load sends no READY=1 before the model is loaded."""
    settings = faulty_settings(tmp_path / "inbox", tmp_path / "state", load_seconds=LOAD_SECONDS)
    with running_daemon(tmp_path, settings, env=systemd_env(notify)) as daemon:
        daemon.wait_for("worker.started")
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for("settings.reloaded")
        first_ready = notify.wait_for("READY", "1")
        [loaded] = daemon.wait_for("model.loaded")
        assert daemon.stop() == 0

    assert first_ready.received >= record_time(loaded)


def test_status_says_when_it_runs_on_a_fallback_model(tmp_path: Path, notify: NotifySocket) -> None:
    """A first model that cannot load: READY comes with the second, and STATUS names the fallback and why."""
    settings = faulty_settings(
        tmp_path / "inbox",
        tmp_path / "state",
        chain={"broken": {"load_fault": "error"}, "spare": {}},
    )
    with running_daemon(tmp_path, settings, env=systemd_env(notify)) as daemon:
        ready = notify.wait_for("READY", "1")
        daemon.wait_for("chain.fallback")
        assert daemon.stop() == 0

    assert ready.fields["STATUS"] == (
        "serving with spare (fallback: model 2 of the chain, broken: load_error); 0 file(s) waiting"
    )
    [loaded] = daemon.find("model.loaded")
    assert loaded["model"] == "spare"
    assert ready.received >= record_time(loaded)
