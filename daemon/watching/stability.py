"""When a file has stopped changing: the settle window behind the watcher.

File events lie (scanners write slowly over SMB, network filesystems send no
events at all), so events only say "look again later". A tracked file is
settled once `settle_seconds` have passed with no event AND two lstat() calls
at least `settle_seconds` apart agree on device, inode, size, mtime and ctime.
ctime is in the comparison because nothing can set it back: a writer that
restores mtime (cp -p, rsync -t) still moves ctime.

The tracker is plain data plus lstat; it is owned by the watcher's thread and
is not thread-safe. Due times live in a heap, so a backlog of 100,000 tracked
files costs O(log n) per check, not a sweep per tick.
"""

from __future__ import annotations

import heapq
import itertools
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class FileState:
    """What lstat says about a file, reduced to what moves when it is written."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, result: os.stat_result) -> FileState:
        return cls(
            result.st_dev, result.st_ino, result.st_size, result.st_mtime_ns, result.st_ctime_ns
        )

    @property
    def content_key(self) -> tuple[int, int, int, int]:
        """Equal keys mean the same content as far as stat can tell.

        ctime is left out: a chmod moves it, but it is no new content to read.
        """
        return (self.device, self.inode, self.size, self.mtime_ns)


@dataclass(frozen=True, slots=True)
class Settled:
    """A file that has stopped changing, with the state it settled in."""

    path: Path
    inbox: Path
    state: FileState
    first_seen: float  # when tracking began, on the caller's clock


@dataclass(slots=True)
class _Entry:
    inbox: Path
    state: FileState
    first_seen: float
    stat_at: float  # when `state` was read
    event_at: float  # the last event that named this path
    sequence: int  # identifies the entry's live heap item; older items are stale

    def due(self, settle_seconds: float) -> float:
        return max(self.stat_at, self.event_at) + settle_seconds


class SettleTracker:
    """Files waiting to settle, keyed by absolute path."""

    def __init__(
        self, settle_seconds: float, *, lstat: Callable[[Path], os.stat_result] = os.lstat
    ) -> None:
        self.settle_seconds = settle_seconds
        # Inboxes whose profile chose a settle window of their own, by root.
        self.per_inbox: dict[Path, float] = {}
        self._lstat = lstat
        self._entries: dict[Path, _Entry] = {}
        self._heap: list[tuple[float, int, Path]] = []
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    def track(self, path: Path, inbox: Path, state: FileState, now: float) -> None:
        """Start (or restart) the settle window for a file whose state was just read."""
        entry = _Entry(inbox, state, now, stat_at=now, event_at=now, sequence=next(self._sequence))
        self._entries[path] = entry
        heapq.heappush(self._heap, (entry.due(self._window(entry)), entry.sequence, path))

    def _window(self, entry: _Entry) -> float:
        return self.per_inbox.get(entry.inbox, self.settle_seconds)

    def touch(self, path: Path, now: float) -> bool:
        """Note an event for a tracked path (pushes its window back); False if not tracked."""
        entry = self._entries.get(path)
        if entry is None:
            return False
        # No heap push: the entry's item comes up early, sees the later due
        # time and is pushed again then, so a burst of events costs nothing.
        entry.event_at = now
        return True

    def forget(self, path: Path) -> bool:
        """Stop tracking a path; False if it was not tracked."""
        return self._entries.pop(path, None) is not None

    def retain(self, keep: Callable[[Path, Path], bool]) -> int:
        """Drop every entry for which keep(path, inbox) is false; returns how many went."""
        dropped = [path for path, entry in self._entries.items() if not keep(path, entry.inbox)]
        for path in dropped:
            del self._entries[path]
        return len(dropped)

    def next_due(self) -> float | None:
        """When the earliest entry may be due (a wake-up hint; it may turn out to be later)."""
        while self._heap:
            _, sequence, path = self._heap[0]
            entry = self._entries.get(path)
            if entry is not None and entry.sequence == sequence:
                return self._heap[0][0]
            heapq.heappop(self._heap)
        return None

    def next_settled(self, now: float, *, max_checks: int = 256) -> Settled | None:
        """Check due entries until one has settled; None when none is due (or after max_checks stats).

        A settled entry leaves the tracker; a vanished one is dropped.
        """
        checks = 0
        while self._heap and self._heap[0][0] <= now and checks < max_checks:
            _, sequence, path = heapq.heappop(self._heap)
            entry = self._entries.get(path)
            if entry is None or entry.sequence != sequence:
                continue
            due = entry.due(self._window(entry))
            if due > now:
                self._push(path, entry, due)
                continue
            checks += 1
            settled = self._check(path, entry, now)
            if settled is not None:
                return settled
        return None

    def _check(self, path: Path, entry: _Entry, now: float) -> Settled | None:
        try:
            result = self._lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            del self._entries[path]
            log.debug("watch.vanished", path=str(path))
            return None
        except OSError as error:
            # EIO/ESTALE on a network share are often brief: look again a window later.
            log.debug("watch.stat_failed", path=str(path), error=error.strerror or str(error))
            entry.stat_at = now
            self._push(path, entry, entry.due(self._window(entry)))
            return None
        if not stat.S_ISREG(result.st_mode):
            del self._entries[path]
            log.debug("watch.ignored", path=str(path), reason="not_a_regular_file")
            return None
        state = FileState.of(result)
        if state == entry.state:
            del self._entries[path]
            return Settled(path, entry.inbox, state, entry.first_seen)
        entry.state = state
        entry.stat_at = now
        self._push(path, entry, entry.due(self._window(entry)))
        return None

    def _push(self, path: Path, entry: _Entry, due: float) -> None:
        entry.sequence = next(self._sequence)
        heapq.heappush(self._heap, (due, entry.sequence, path))
