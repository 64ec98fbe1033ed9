"""Health: /readyz's answer and what systemd is told, turn by turn."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.observing.health import EXTEND_TIMEOUT_EVERY_SECONDS, STATUS_EVERY_SECONDS, Health


class Recorder:
    """A notifier that records every call (the real one is tested on a real socket)."""

    def __init__(self, watchdog_interval: float | None = None) -> None:
        self.watchdog_interval = watchdog_interval
        self.calls: list[tuple[str, Any]] = []

    def ready(self, status: str | None = None) -> None:
        self.calls.append(("ready", status))

    def status(self, text: str) -> None:
        self.calls.append(("status", text))

    def extend_timeout(self, seconds: float) -> None:
        self.calls.append(("extend", seconds))

    def watchdog(self) -> None:
        self.calls.append(("watchdog", None))

    def reloading(self) -> None:
        self.calls.append(("reloading", None))

    def stopping(self, status: str | None = None) -> None:
        self.calls.append(("stopping", status))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]


def turn(health: Health, now: float, **state: Any) -> None:
    values = {
        "stopping": False,
        "exhausted": False,
        "active": "qwen",
        "serving": False,
        "loading": True,
        "position": 0,
        "waiting": 0,
    }
    values.update(state)
    health.update(now, **values)


def test_ready_once_when_a_worker_serves_and_time_extended_before() -> None:
    """READY is sent once, when a worker serves; until then the start timeout is extended."""
    notifier = Recorder()
    health = Health(notifier, clock=lambda: 0.0)
    start = 1000.0  # a monotonic clock reading
    turn(health, start)
    turn(health, start + 1.0)
    turn(health, start + EXTEND_TIMEOUT_EVERY_SECONDS + 0.1)
    assert health.readiness == (False, "loading model qwen")
    assert notifier.kinds().count("extend") == 2 and "ready" not in notifier.kinds()
    turn(health, start + 30.0, serving=True, loading=False)
    turn(health, start + 31.0, serving=True, loading=False)
    assert notifier.kinds().count("ready") == 1
    assert health.readiness == (True, "serving with qwen")
    turn(health, start + 60.0, serving=True, loading=False)
    assert notifier.kinds().count("extend") == 2


def test_readiness_names_the_reason() -> None:
    """/readyz's reason says stopping, no model, loading or restarting."""
    health = Health(Recorder(), clock=lambda: 0.0)
    turn(health, 0.0, loading=False)
    assert health.readiness == (False, "worker for qwen is restarting")
    turn(health, 1.0, exhausted=True, active=None)
    assert health.readiness == (False, "no model of the chain can run")
    turn(health, 2.0, stopping=True)
    assert health.readiness == (False, "stopping")


def test_watchdog_pings_at_its_interval_from_each_turn() -> None:
    """WATCHDOG=1 goes out on a turn once the interval has passed since the last one."""
    notifier = Recorder(watchdog_interval=5.0)
    health = Health(notifier, clock=lambda: 0.0)
    for now in (5.0, 6.0, 9.9, 10.0, 15.5):
        turn(health, now, serving=True, loading=False)
    assert notifier.kinds().count("watchdog") == 3


def test_status_says_fallback_and_waiting_files() -> None:
    """STATUS names a fallback model's place in the chain and the files waiting."""
    notifier = Recorder()
    health = Health(notifier, clock=lambda: 0.0)
    turn(health, 10.0, serving=True, loading=False, position=1, waiting=4)
    assert (
        "status",
        "serving with qwen (fallback: model 2 of the chain); 4 file(s) waiting",
    ) in notifier.calls


def test_the_loop_is_told_when_the_next_ping_is_due() -> None:
    """After a ping at t, the next message is due at t + interval, so the loop wakes in time for it."""
    notifier = Recorder(watchdog_interval=0.5)
    health = Health(notifier, clock=lambda: 0.0)
    turn(health, 100.0, serving=True, loading=False)
    assert notifier.kinds().count("watchdog") == 1
    assert health.seconds_to_next_message(100.2) == pytest.approx(0.3)
    assert health.seconds_to_next_message(100.9) == 0.0  # overdue: do not wait at all


def test_nothing_due_without_a_watchdog_or_a_held_back_status() -> None:
    """Outside systemd (no watchdog) and with every STATUS sent, the loop keeps its own tick."""
    notifier = Recorder()
    health = Health(notifier, clock=lambda: 0.0)
    turn(health, 100.0, serving=True, loading=False)
    assert health.seconds_to_next_message(100.1) is None


def test_a_status_held_back_by_the_throttle_is_sent_when_it_expires() -> None:
    """A state that changes within the 2 s throttle is told once the throttle ends, not lost."""
    notifier = Recorder()
    health = Health(notifier, clock=lambda: 0.0)
    turn(health, 100.0, serving=True, loading=False, waiting=1)
    turn(health, 100.5, serving=True, loading=False, waiting=7)  # held back
    due = health.seconds_to_next_message(100.5)
    assert due == pytest.approx(STATUS_EVERY_SECONDS - 0.5)
    turn(health, 100.5 + due, serving=True, loading=False, waiting=7)
    statuses = [text for kind, text in notifier.calls if kind == "status"]
    assert statuses[-1] == "serving with qwen; 7 file(s) waiting"
    assert health.seconds_to_next_message(103.0) is None


def test_an_inbox_without_a_model_is_named_while_the_daemon_stays_ready() -> None:
    """An inbox whose own chain has no model left is named in /readyz, which stays ready."""
    health = Health(Recorder(), clock=lambda: 0.0)
    turn(health, 1.0, serving=True, loading=False, inboxes_without_model=("boards",))
    assert health.readiness == (
        True,
        "serving with qwen; no model left for inbox(es) boards until the cool-down",
    )
