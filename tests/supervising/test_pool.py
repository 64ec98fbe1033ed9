"""WorkerPool: exits come with their last words (real spawned workers); restarts back off."""

from __future__ import annotations

import time
from pathlib import Path

from PIL import Image

from daemon.protocol import (
    EXIT_LOAD_FAILED,
    EXIT_OK,
    Job,
    JobDone,
    Loaded,
    LoadFailed,
    Progress,
    Shutdown,
)
from daemon.settings import FaultyModel
from daemon.supervising.pool import RestartBackoff, WorkerPool
from tests.support.workers import drill_config


def test_exited_returns_what_the_worker_said_before_it_died(tmp_path: Path) -> None:
    """Messages sent after the last messages() call (a JobDone, then exit) come back with the exit."""
    pool = WorkerPool(backoff_cap=30, grace=1, clock=time.monotonic)
    worker = pool.spawn("0", drill_config(FaultyModel()), generation=0, load_deadline=60)
    try:
        assert worker.conn.poll(60)
        assert [type(message) for _, message in pool.messages()] == [Loaded]
        source = tmp_path / "page.png"
        Image.new("RGB", (64, 48), "white").save(source)
        assert worker.send(Job(1, str(source)))
        assert worker.send(Shutdown("test"))  # finish the job, then exit
        worker.process.join(60)
        [(gone, code, last_words)] = pool.exited()
        assert gone is worker
        assert code == EXIT_OK
        assert [type(m) for m in last_words] == [Progress, JobDone]
        assert isinstance(last_words[1], JobDone)
        assert last_words[1].result.pages[0].text.text == "page.png 64x48"
        assert list(pool) == []
    finally:
        pool.shutdown(immediately=True)


def test_a_load_failure_is_not_lost_when_the_exit_is_seen_first() -> None:
    """A worker that reports LoadFailed and exits at once: exited() still hands over the LoadFailed."""
    pool = WorkerPool(backoff_cap=30, grace=1, clock=time.monotonic)
    worker = pool.spawn(
        "0", drill_config(FaultyModel(load_fault="error")), generation=0, load_deadline=60
    )
    worker.process.join(60)
    [(gone, code, last_words)] = pool.exited()
    assert gone is worker
    assert code == EXIT_LOAD_FAILED
    [message] = last_words
    assert isinstance(message, LoadFailed)
    assert message.fault.kind == "load_error"


def test_a_reloaded_backoff_cap_applies_to_a_slot_already_backing_off() -> None:
    """Lowering backoff_cap (SIGHUP) caps the next delay of a slot that has restarted before."""
    pool = WorkerPool(backoff_cap=30, grace=1, clock=lambda: 100.0)
    delays = [pool.schedule_restart("0") for _ in range(7)]
    assert delays == [0, 1, 1, 2, 3, 5, 8]
    pool.backoff_cap = 2
    assert pool.schedule_restart("0") == 2


def test_restarts_are_held_back_by_the_backoff() -> None:
    """A slot may start again only after the scheduled delay; a success starts the sequence afresh."""
    now = [100.0]
    pool = WorkerPool(backoff_cap=30, grace=1, clock=lambda: now[0])
    delays = []
    for _ in range(5):
        delays.append(pool.schedule_restart("0"))
        assert pool.may_start("0", now[0]) == (delays[-1] == 0)
        if delays[-1]:
            assert pool.next_restart(now[0]) == now[0] + delays[-1]
            assert not pool.may_start("0", now[0] + delays[-1] - 0.01)
            now[0] += delays[-1]
            assert pool.may_start("0", now[0])
    assert delays == [0, 1, 1, 2, 3]
    assert pool.may_start("1", now[0])  # other slots are not held back
    pool.succeeded("0")
    assert pool.schedule_restart("0") == 0


# --- RestartBackoff -----------------------------------------------------------


def test_backoff_follows_fibonacci_from_zero() -> None:
    """Consecutive restarts wait 0, 1, 1, 2, 3, 5, 8, 13, 21 seconds."""
    backoff = RestartBackoff()
    cap = 1000
    delays = [backoff.next_delay(cap) for _ in range(9)]
    assert delays == [0, 1, 1, 2, 3, 5, 8, 13, 21]
    assert backoff.restarts == 9


def test_backoff_is_capped() -> None:
    """No delay exceeds the cap, however many restarts in a row."""
    backoff = RestartBackoff()
    cap = 4
    delays = [backoff.next_delay(cap) for _ in range(12)]
    assert delays == [0, 1, 1, 2, 3, 4, 4, 4, 4, 4, 4, 4]


def test_backoff_cap_of_zero_restarts_at_once() -> None:
    """backoff_cap_seconds = 0 turns the backoff off."""
    backoff = RestartBackoff()
    cap = 0
    assert {backoff.next_delay(cap) for _ in range(6)} == {0}


def test_backoff_reset_starts_the_sequence_again() -> None:
    """After a success (reset) the next failure restarts at once again."""
    backoff = RestartBackoff()
    cap = 30
    for _ in range(5):
        backoff.next_delay(cap)
    backoff.reset()
    assert backoff.restarts == 0
    assert [backoff.next_delay(cap) for _ in range(4)] == [0, 1, 1, 2]
