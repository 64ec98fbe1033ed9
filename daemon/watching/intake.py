"""From a stable file to an admission: hashing, off the supervisor's main loop.

The watcher calls `Intake.on_stable` from its own thread; the file is hashed
there (a large scan may take a second) and the result queued for the main
loop, which alone talks to the journal and the workers. When the main loop
itself wants a file looked at again (it changed while in flight, or could not
be read), `Intake.recheck` hashes it on the intake's own thread: a loop busy
hashing would miss watchdog pings and worker messages.
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import structlog

from daemon.watching.candidates import Candidate

log = structlog.get_logger("daemon.watching.intake")

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
        # One thread: rechecks are rare, and in order per file.
        self._rechecker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intake-recheck")
        self._rechecks: set[Future[None]] = set()  # submitted, not yet done or cancelled
        self._lock = threading.Lock()

    def on_stable(self, candidate: Candidate) -> None:
        """Watcher callback (its thread): hash the file and queue the arrival."""
        first_seen = candidate.first_seen
        settle = time.monotonic() - first_seen if first_seen is not None else None
        self.put(candidate.path, candidate.inbox, candidate.size, candidate.mtime_ns, settle)

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

    def recheck(self, path: Path, inbox: Path) -> None:
        """From the main loop: look at the file again (stat, hash) on the intake's thread.

        A file gone, or no longer a regular file, arrives as nothing.
        """
        future = self._rechecker.submit(self._recheck, path, inbox)
        with self._lock:
            self._rechecks.add(future)
        future.add_done_callback(self._recheck_done)  # at once if it is done already

    def _recheck(self, path: Path, inbox: Path) -> None:
        try:
            info = path.lstat()
            if stat.S_ISREG(info.st_mode):
                self.put(path, inbox, info.st_size, info.st_mtime_ns)
        except OSError as error:
            log.debug("intake.recheck_failed", path=str(path), error=str(error))

    def _recheck_done(self, future: Future[None]) -> None:
        with self._lock:
            self._rechecks.discard(future)
        self._wake()  # `once` waits for rechecks before it decides it is finished

    def busy(self) -> bool:
        """A recheck is under way or an arrival waits to be drained."""
        with self._lock:
            return bool(self._rechecks) or not self._queue.empty()

    def close(self) -> None:
        """Finish a recheck under way, drop those not started (the journal keeps them pending)."""
        self._rechecker.shutdown(wait=True, cancel_futures=True)

    def drain(self, limit: int = 10_000) -> list[Arrival]:
        arrivals: list[Arrival] = []
        while len(arrivals) < limit:
            try:
                arrivals.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return arrivals
