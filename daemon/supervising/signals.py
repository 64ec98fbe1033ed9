"""Signals and wake-ups for the single-threaded main loop.

A signal handler runs between two bytecodes of whatever the main thread was
doing, so it only queues the signal and wakes the loop; the loop acts on it
at the top of its next turn (gunicorn's arbiter does the same). Other
threads (the watcher, the HTTP server) wake the loop the same way: one byte
down a non-blocking self-pipe that the loop's wait includes.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from signal import _HANDLER  # what signal.signal() takes and returns (typeshed)

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class LoopSignals:
    def __init__(self) -> None:
        self._pending: deque[int] = deque()
        # wake_fd is what the loop waits on; the loop drains it after waking.
        self.wake_fd, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._previous: dict[int, _HANDLER] = {}

    def install(self) -> None:
        """Route SIGTERM, SIGINT and SIGHUP here (main thread only)."""
        for signum in HANDLED:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def restore(self) -> None:
        """Give the signals back to the handlers they had before install()."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def wake(self) -> None:
        """Make the loop's wait return now (from any thread or a signal handler)."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"!")

    def pending(self) -> Iterator[int]:
        """The signals received since the last call, oldest first."""
        while self._pending:
            yield self._pending.popleft()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.wake_fd)
            os.close(self._wake_w)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._pending.append(signum)
        self.wake()
