"""Scans: the watcher's safety net behind the event stream, walked a few entries at a time.

A full scan runs at start (the backlog), every rescan_interval_seconds, on
rescan(), when an inbox is (re-)attached and when the kernel dropped inotify
events; a partial scan runs on every folder that appears (inotify misses files
created before the watch on a new folder is set). A scan is a generator that
yields after each directory entry, so a scan of 100,000 files never stops the
watcher's thread from draining events and handing files on.

Walking knows the rules of the filesystem (hidden entries, symlinks, folders
in recursive mode, names that are never candidates); what to do with a file
found is the watcher's decision (daemon.watching.watcher). Runs on the
watcher's thread only.
"""

from __future__ import annotations

import os
import stat
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from daemon.watching.candidates import name_reason
from daemon.watching.stability import FileState

log = structlog.get_logger(__name__)

# A walk yields once per entry and returns whether it walked the whole tree.
Walk = Generator[None, None, bool]


@dataclass(slots=True)
class ScanJob:
    steps: Iterator[None]
    full: bool
    done: threading.Event | None = None
    reason: str = ""  # why a full scan runs: start, periodic, requested, events_lost, attached
    started: float = 0.0
    entries: int = 0


class Scans:
    """The scans waiting to run, oldest first; advanced by a budget of entries per turn."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._jobs: deque[ScanJob] = deque()

    def __bool__(self) -> bool:
        return bool(self._jobs)

    @property
    def full_scan_waiting(self) -> bool:
        return any(job.full for job in self._jobs)

    def add_full(
        self, steps: Iterator[None], reason: str, done: threading.Event | None = None
    ) -> None:
        """A scan whose end is logged (watch.scan_finished) and signalled to `done`."""
        self._jobs.append(
            ScanJob(steps, full=True, done=done, reason=reason, started=self._clock())
        )

    def add_partial(self, steps: Iterator[None]) -> None:
        self._jobs.append(ScanJob(steps, full=False))

    def advance(self, budget: int, settling: Callable[[], int]) -> None:
        """Walk up to `budget` entries, finishing scans in order."""
        while self._jobs and budget > 0:
            job = self._jobs[0]
            try:
                while budget > 0:
                    next(job.steps)
                    job.entries += 1
                    budget -= 1
            except StopIteration:
                self._jobs.popleft()
                if job.full:
                    log.info(
                        "watch.scan_finished",
                        reason=job.reason,
                        entries=job.entries,
                        seconds=round(self._clock() - job.started, 3),
                        settling=settling(),
                    )
                if job.done is not None:
                    job.done.set()


def walk(
    top: str,
    *,
    recursive: bool,
    watched: Callable[[], bool],
    found_file: Callable[[Path, FileState], None],
    found_symlink: Callable[[Path], None],
) -> Walk:
    """Offer every candidate under `top`; yields after each entry so events keep flowing.

    `watched()` is asked before each folder: an inbox detached meanwhile ends
    the walk early (its next attach scans again). Returns True when the whole
    tree was walked, False when it ended early or `top` could not be read.
    """
    folders = [top]
    while folders:
        if not watched():
            return False
        folder = folders.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    _entry(entry, recursive, folders, found_file, found_symlink)
                    yield
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as error:
            log.warning("watch.scan_failed", path=folder, error=error.strerror or str(error))
            if folder == top:
                return False  # an unreadable inbox: keep what we know of it
    return True


def _entry(
    entry: os.DirEntry[str],
    recursive: bool,
    folders: list[str],
    found_file: Callable[[Path, FileState], None],
    found_symlink: Callable[[Path], None],
) -> None:
    name = entry.name
    if name.startswith("."):
        return
    try:
        if entry.is_symlink():
            if name_reason(name) is None:
                found_symlink(Path(entry.path))
            return
        if entry.is_dir(follow_symlinks=False):
            if recursive:
                folders.append(entry.path)
            return
        if name_reason(name) is not None:
            return
        result = entry.stat(follow_symlinks=False)
    except OSError:
        return
    if stat.S_ISREG(result.st_mode):
        found_file(Path(entry.path), FileState.of(result))
