"""From a stable file to an admission: hashing, off the supervisor's main loop.

The watcher calls `Intake.on_stable` from its own thread; the file is hashed
there (a large scan may take a second) and the result queued for the main
loop, which alone talks to the journal and the workers.
"""

from __future__ import annotations

import hashlib
import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("daemon.intake")

CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Arrival:
    """A stable file, hashed (or the reason it could not be read)."""

    path: Path
    inbox: Path
    size: int
    mtime_ns: int
    sha256: str | None
    error: str | None = None
    settle_seconds: float | None = None


def content_key(path: Path, size: int, mtime_ns: int, max_bytes: int) -> str:
    """SHA-256 of the content. A file over the size limit is not read: it is
    refused anyway, and its size and mtime identify it well enough."""
    if size > max_bytes:
        return f"oversize:{size}:{mtime_ns}"
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class Intake:
    """A thread-safe queue of arrivals, with a callback that wakes the main loop."""

    def __init__(self, max_bytes: int, wake: Callable[[], None]) -> None:
        self.max_bytes = max_bytes
        self._wake = wake
        self._queue: queue.SimpleQueue[Arrival] = queue.SimpleQueue()

    def on_stable(self, candidate: object) -> None:
        """Watcher callback (its thread): hash the file and queue the arrival."""
        path: Path = candidate.path  # type: ignore[attr-defined]
        inbox: Path = candidate.inbox  # type: ignore[attr-defined]
        size: int = candidate.size  # type: ignore[attr-defined]
        mtime_ns: int = candidate.mtime_ns  # type: ignore[attr-defined]
        first_seen = getattr(candidate, "first_seen", None)
        settle = time.monotonic() - first_seen if isinstance(first_seen, float) else None
        self.put(path, inbox, size, mtime_ns, settle)

    def put(
        self, path: Path, inbox: Path, size: int, mtime_ns: int, settle: float | None = None
    ) -> None:
        try:
            sha = content_key(path, size, mtime_ns, self.max_bytes)
            arrival = Arrival(path, inbox, size, mtime_ns, sha, settle_seconds=settle)
        except FileNotFoundError:
            log.debug("intake.vanished", path=str(path))
            return
        except OSError as error:
            arrival = Arrival(
                path,
                inbox,
                size,
                mtime_ns,
                None,
                error=error.strerror or str(error),
                settle_seconds=settle,
            )
        self._queue.put(arrival)
        self._wake()

    def drain(self, limit: int = 10_000) -> list[Arrival]:
        arrivals: list[Arrival] = []
        while len(arrivals) < limit:
            try:
                arrivals.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return arrivals
