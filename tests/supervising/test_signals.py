"""LoopSignals: handlers only queue the signal and wake the loop; restore gives the handlers back."""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Iterator

import pytest

from daemon.supervising.signals import LoopSignals


@pytest.fixture
def signals() -> Iterator[LoopSignals]:
    loop_signals = LoopSignals()
    loop_signals.install()
    try:
        yield loop_signals
    finally:
        loop_signals.restore()
        loop_signals.close()


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_a_delivered_signal_is_queued_and_wakes_the_loop(signals: LoopSignals) -> None:
    """A real SIGHUP and SIGTERM to this process end up queued in order, and the wake fd turns readable."""
    assert not readable(signals.wake_fd)
    os.kill(os.getpid(), signal.SIGHUP)
    os.kill(os.getpid(), signal.SIGTERM)
    assert readable(signals.wake_fd)
    assert list(signals.pending()) == [signal.SIGHUP, signal.SIGTERM]
    assert list(signals.pending()) == []  # each is handed out once


def test_wake_from_another_caller_needs_no_signal(signals: LoopSignals) -> None:
    """wake() alone makes the fd readable (the watcher's way in) and queues no signal."""
    signals.wake()
    assert readable(signals.wake_fd)
    assert list(signals.pending()) == []


def test_many_wakes_never_block(signals: LoopSignals) -> None:
    """More wakes than the pipe holds do not block or raise: the loop needs one byte to wake."""
    for _ in range(200_000):
        signals.wake()
    assert readable(signals.wake_fd)


def test_restore_puts_the_previous_handlers_back() -> None:
    """After restore(), SIGHUP reaches the handler that was installed before install()."""
    seen: list[int] = []
    before = signal.signal(signal.SIGHUP, lambda signum, _frame: seen.append(signum))
    loop_signals = LoopSignals()
    try:
        loop_signals.install()
        loop_signals.restore()
        os.kill(os.getpid(), signal.SIGHUP)
        assert seen == [signal.SIGHUP]
        assert list(loop_signals.pending()) == []
    finally:
        loop_signals.close()
        signal.signal(signal.SIGHUP, before)
