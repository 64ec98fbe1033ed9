"""The files the supervisor holds: queued, delayed (a retry later) or in flight.

A plain data structure with no I/O: the supervisor decides, this keeps count.
Files needing a per-file fallback model are counted by model, so deciding
which fallback workers to run does not walk the whole queue.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path

from daemon.tasks import FileTask
from daemon.watching.intake import Arrival


class FileQueue:
    def __init__(self) -> None:
        self._queue: deque[FileTask] = deque()
        self._delayed: list[FileTask] = []
        self._held: dict[Path, FileTask] = {}  # queued, delayed or in flight
        self._flying: set[FileTask] = set()  # taken for a worker and not back yet
        self._followups: dict[Path, Arrival] = {}  # new arrivals for files in flight
        self.overrides: Counter[str] = Counter()  # queued files per fallback model

    def __len__(self) -> int:
        """Files waiting: queued or delayed (not those in flight)."""
        return len(self._queue) + len(self._delayed)

    def __iter__(self) -> Iterator[FileTask]:
        """The queued files, in order (a snapshot: safe to change the queue meanwhile)."""
        return iter(list(self._queue))

    @property
    def held(self) -> int:
        return len(self._held)

    def get(self, path: Path) -> FileTask | None:
        return self._held.get(path)

    def in_flight(self, task: FileTask) -> bool:
        """Taken for a worker (and not pushed, delayed, dropped or released since)."""
        return task in self._flying

    def push(self, task: FileTask, now: float, *, front: bool = False) -> None:
        """Queue a file (at the front for a retry, so a retried file keeps its turn)."""
        task.queued_at = now
        self._flying.discard(task)
        if front:
            self._queue.appendleft(task)
        else:
            self._queue.append(task)
        self._held[task.path] = task
        if task.model_override is not None:
            self.overrides[task.model_override] += 1

    def take(self, task: FileTask) -> None:
        """Out of the queue and into flight (still held)."""
        self._queue.remove(task)
        self._uncount(task)
        self._flying.add(task)

    def clear_override(self, task: FileTask, now: float) -> None:
        """A queued file's fallback model is out of service: the active model takes
        it, at the front so it keeps its turn (and the per-model count stays true)."""
        self.retarget(task, None, now)

    def retarget(self, task: FileTask, model: str | None, now: float) -> None:
        """A queued file goes to `model` (None: the daemon's active model), keeping its turn."""
        self.take(task)
        task.model_override = model
        self.push(task, now, front=True)

    def delay(self, task: FileTask, until: float) -> None:
        task.not_before = until
        self._flying.discard(task)
        self._delayed.append(task)
        self._held[task.path] = task

    def due(self, now: float) -> list[FileTask]:
        """Delayed files whose time has come (removed from the delayed list, still held)."""
        ready = [task for task in self._delayed if task.not_before <= now]
        for task in ready:
            self._delayed.remove(task)
        return ready

    def drop(self, task: FileTask) -> None:
        """Forget a file that is queued or delayed (superseded, or gone)."""
        if task in self._queue:
            self.take(task)
        if task in self._delayed:
            self._delayed.remove(task)
        self._flying.discard(task)
        self._held.pop(task.path, None)

    def release(self, task: FileTask) -> Arrival | None:
        """A file leaves the daemon's hands; returns an arrival that came meanwhile."""
        self._flying.discard(task)
        if self._held.get(task.path) is task:
            del self._held[task.path]
        return self._followups.pop(task.path, None)

    def follow_up(self, arrival: Arrival) -> None:
        """New content arrived for a file in flight: look again once it is finished."""
        self._followups[arrival.path] = arrival

    def _uncount(self, task: FileTask) -> None:
        model = task.model_override
        if model is not None:
            self.overrides[model] -= 1
            if self.overrides[model] <= 0:
                del self.overrides[model]
