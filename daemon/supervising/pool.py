"""The worker processes: starting, waiting on, stopping and killing them.

The pool knows processes, deadlines and restart backoff; it does not know
files or the chain. The supervisor asks it for workers and is told what
happened (messages, exits). How a worker is started is injected (`start`),
so tests run the pool, and the supervisor around it, on scripted workers.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait

import structlog

from daemon.protocol import FromWorker, Shutdown, WorkerConfig
from daemon.supervising.worker_handles import WorkerHandle, WorkerState

log = structlog.get_logger("daemon.supervising.pool")

FALLBACK_SLOT = "fallback:"

# How a worker is started: (slot, config, generation, now, load deadline) -> its handle.
StartWorker = Callable[[str, WorkerConfig, int, float, float], WorkerHandle]


# Seconds to wait before the n-th consecutive restart: 0, 1, 1, 2, 3, 5, 8, ...
# The first restart is immediate; repeated ones back off so a crash loop
# does not spin on a GPU that needs a moment (or an operator).
class RestartBackoff:
    """Fibonacci delays between consecutive restarts, capped; reset by a success."""

    def __init__(self) -> None:
        self._previous: float
        self._current: float
        self.restarts: int
        self.reset()

    def next_delay(self, cap_seconds: float) -> float:
        """The delay before the next restart, advancing the sequence.

        The cap is passed on each call, so a reloaded backoff_cap_seconds
        applies to a slot that is already backing off.
        """
        delay = min(self._current, cap_seconds)
        self._previous, self._current = self._current, self._previous + self._current
        self.restarts += 1
        return delay

    def reset(self) -> None:
        # Seeded so that the sequence runs 0, 1, 1, 2, 3, ...
        self._previous = 1.0
        self._current = 0.0
        self.restarts = 0


def fallback_slot(model: str) -> str:
    return FALLBACK_SLOT + model


def is_fallback_slot(slot: str) -> bool:
    return slot.startswith(FALLBACK_SLOT)


class WorkerPool:
    def __init__(
        self,
        *,
        backoff_cap: float,
        grace: float,
        clock: Callable[[], float],
        start: StartWorker = WorkerHandle.spawn,
    ) -> None:
        self.workers: list[WorkerHandle] = []
        self.backoff_cap = backoff_cap
        self.grace = grace
        self.clock = clock
        self._start = start
        self._backoff: dict[str, RestartBackoff] = {}
        self._restart_due: dict[str, float] = {}

    def __iter__(self) -> Iterator[WorkerHandle]:
        return iter(list(self.workers))

    def slots(self) -> set[str]:
        return {worker.slot for worker in self.workers}

    def idle(self, generation: int) -> list[WorkerHandle]:
        """Workers of this generation that may take a file now (idle, or with room for more)."""
        return [w for w in self.workers if w.has_room and w.generation == generation]

    def busy(self) -> bool:
        """Some worker holds a file (one told to stop may still be finishing its files)."""
        return self.in_flight()

    def in_flight(self) -> bool:
        return any(worker.tasks for worker in self.workers)

    # --- starting ----------------------------------------------------------

    def may_start(self, slot: str, now: float) -> bool:
        return now >= self._restart_due.get(slot, 0.0)

    def spawn(
        self, slot: str, config: WorkerConfig, generation: int, load_deadline: float
    ) -> WorkerHandle:
        worker = self._start(slot, config, generation, self.clock(), load_deadline)
        self.workers.append(worker)
        self._restart_due.pop(slot, None)
        log.info("worker.started", slot=slot, model=config.model_name, pid=worker.pid)
        return worker

    def schedule_restart(self, slot: str) -> float:
        """After an unexpected exit: when may this slot start again? Returns the delay."""
        backoff = self._backoff.setdefault(slot, RestartBackoff())
        delay = backoff.next_delay(self.backoff_cap)
        self._restart_due[slot] = self.clock() + delay
        log.info("worker.restart_scheduled", slot=slot, in_seconds=delay, restarts=backoff.restarts)
        return delay

    def succeeded(self, slot: str) -> None:
        """A job went through: the next failure starts the backoff afresh."""
        backoff = self._backoff.get(slot)
        if backoff is not None:
            backoff.reset()

    def next_restart(self, now: float) -> float | None:
        future = [due for due in self._restart_due.values() if due > now]
        return min(future) if future else None

    # --- stopping ----------------------------------------------------------

    def retire(self, worker: WorkerHandle, why: str) -> None:
        """Stop a worker that is no longer wanted: politely when idle, else SIGTERM."""
        log.info("worker.retiring", slot=worker.slot, model=worker.model_name, why=why)
        now = self.clock()
        # A worker that holds several files finishes them first (its job
        # deadlines still apply): killing it would lose them all.
        finishing = worker.state == WorkerState.BUSY and worker.capacity > 1
        if (worker.state == WorkerState.IDLE or finishing) and worker.send(Shutdown(why)):
            worker.state = WorkerState.STOPPING
            worker.exit_reason = "retired"
            worker.kill_at = None if worker.tasks else now + self.grace
        else:
            worker.terminate(now, self.grace, "retired")

    def enforce_deadlines(self, now: float) -> list[WorkerHandle]:
        """SIGKILL workers that ignored SIGTERM; SIGTERM those past their deadline.

        Returns the workers that were found hung just now.
        """
        hung: list[WorkerHandle] = []
        for worker in self.workers:
            if worker.kill_at is not None and now >= worker.kill_at and not worker.has_exited():
                log.warning(
                    "worker.killed", slot=worker.slot, pid=worker.pid, why="did not stop in time"
                )
                worker.kill()
                worker.kill_at = None
            elif worker.deadline is not None and now >= worker.deadline and worker.kill_at is None:
                worker.deadline = None
                worker.terminate(now, self.grace, "hang")
                hung.append(worker)
        return hung

    def shutdown(self, *, immediately: bool) -> None:
        """Stop every worker: idle ones are asked, busy ones (or all, immediately) signalled."""
        now = self.clock()
        for worker in self.workers:
            if worker.state in (WorkerState.IDLE, WorkerState.LOADING) and not immediately:
                worker.send(Shutdown("daemon stopping"))
                worker.exit_reason = "stop"
            else:
                worker.terminate(now, self.grace, "stop")
        deadline = time.monotonic() + self.grace
        for worker in self.workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if not worker.has_exited():
                worker.kill()
            worker.reap()

    # --- events ------------------------------------------------------------

    def messages(self) -> list[tuple[WorkerHandle, FromWorker]]:
        return [(worker, message) for worker in self for message in worker.receive_all()]

    def exited(self) -> list[tuple[WorkerHandle, int | None, list[FromWorker]]]:
        """Workers whose process has ended, reaped and removed from the pool.

        Each comes with its last words: messages it sent after messages() last
        looked (a JobDone just before a SIGKILL, the LoadFailed or fatal
        JobFailed before its exit). Acting on the exit without them would
        redo a finished file or miss why the worker ended.
        """
        gone = []
        for worker in self:
            if worker.has_exited():
                last_words = worker.receive_all()
                code = worker.reap()
                self.workers.remove(worker)
                gone.append((worker, code, last_words))
        return gone

    def wait(self, timeout: float, wake_fd: int) -> None:
        """Block until a worker speaks or dies, the wake pipe fires, or `timeout` passes."""
        now = self.clock()
        for worker in self.workers:
            for moment in (worker.deadline, worker.kill_at):
                if moment is not None:
                    timeout = min(timeout, max(0.0, moment - now))
        restart = self.next_restart(now)
        if restart is not None:
            timeout = min(timeout, restart - now)
        objects: list[Connection | int] = [wake_fd]
        for worker in self.workers:
            objects.extend((worker.conn, worker.sentinel))
        wait(objects, max(0.0, timeout))
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(wake_fd, 4096):
                pass
