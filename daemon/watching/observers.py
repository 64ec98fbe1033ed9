"""The watchdog observers behind the watcher: one per inbox, native or polling.

An observer's thread only turns each event into a small Change record and
queues it; all I/O and every decision happen on the watcher's own thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal, NamedTuple

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserverVFS

from daemon.settings import WatchSettings

log = structlog.get_logger("daemon.watching.watcher")


class Change(NamedTuple):
    """What an observer saw, as queued for the watcher's thread."""

    inbox: Path
    kind: Literal["file", "gone", "folder", "inbox_gone"]
    path: str


# Reading a file (the supervisor hashing it) is no change.
_NOISE_EVENTS = frozenset({"opened", "closed_no_write"})


class ChangeForwarder(FileSystemEventHandler):
    """Runs on an observer's thread: turns an event into Change records and queues them, no I/O.

    The observer watches the inbox's real path (inotify would watch a symlinked
    inbox's link, not its folder); paths are put back under the inbox's name.
    """

    def __init__(self, inbox: Path, watched: str, post: Callable[[Change], None]) -> None:
        self._inbox = inbox
        self._name = str(inbox)
        self._watched = watched
        self._post = post

    def _named(self, path: bytes | str) -> str:
        text = os.fsdecode(path)
        if self._watched == self._name or not text.startswith(self._watched):
            return text
        return self._name + text[len(self._watched) :]

    def dispatch(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind in _NOISE_EVENTS:
            return
        source = self._named(event.src_path)
        target = self._named(event.dest_path) if event.dest_path else ""
        if event.is_directory:
            if kind == "deleted" and source == self._name:
                self._post(Change(self._inbox, "inbox_gone", source))
            elif kind == "created":
                self._post(Change(self._inbox, "folder", source))
            elif kind == "moved" and target:
                self._post(Change(self._inbox, "folder", target))
            return
        if kind == "deleted":
            self._post(Change(self._inbox, "gone", source))
        elif kind == "moved":
            self._post(Change(self._inbox, "gone", source))
            if target:
                self._post(Change(self._inbox, "file", target))
        else:
            self._post(Change(self._inbox, "file", source))


def start_observer(
    root: Path, settings: WatchSettings, post: Callable[[Change], None]
) -> BaseObserver:
    """Watch `root`: natively when asked and possible, else by polling."""
    if settings.mode == "native":
        try:
            return _observe(root, settings, post, polling=False)
        except (FileNotFoundError, NotADirectoryError):
            raise
        except OSError as error:
            # Out of inotify instances or watches (fs.inotify.max_user_*):
            # polling is slower but keeps the inbox working.
            log.warning(
                "watch.native_unavailable",
                inbox=str(root),
                error=error.strerror or str(error),
                fallback="polling",
            )
    return _observe(root, settings, post, polling=True)


def _observe(
    root: Path, settings: WatchSettings, post: Callable[[Change], None], *, polling: bool
) -> BaseObserver:
    observer: BaseObserver
    if polling:
        # lstat, so the snapshot never descends into symlinked folders.
        observer = PollingObserverVFS(
            os.lstat, os.scandir, polling_interval=settings.poll_interval_seconds
        )
    else:
        observer = Observer()
    watched = os.path.realpath(root)
    try:
        observer.schedule(
            ChangeForwarder(root, watched, post),
            watched,
            recursive=settings.recursive,
        )
        observer.start()
    except BaseException:
        observer.stop()  # releases the inotify descriptor opened by Observer()
        raise
    return observer


def observer_alive(observer: BaseObserver | None) -> bool:
    if observer is None or not observer.is_alive():
        return False
    # An emitter stops itself when its folder is deleted.
    return all(emitter.is_alive() for emitter in observer.emitters)


def stop_observer(observer: BaseObserver) -> None:
    observer.stop()
    if observer.is_alive():
        observer.join(timeout=10)


# watchdog rebuilds its own watches when the kernel's inotify queue overflows,
# but tells no event handler that events were lost: it only logs this warning
# (watchdog.observers.inotify_c, "Inotify queue overflowed; filesystem events
# were lost"). A filter on that logger turns the record into a signal.
INOTIFY_LOGGER = "watchdog.observers.inotify_c"


class _LostEvents(logging.Filter):
    def __init__(self, signal: threading.Event) -> None:
        super().__init__()
        self.signal = signal

    def filter(self, record: logging.LogRecord) -> bool:
        if "overflow" in record.getMessage().lower():
            self.signal.set()
        return True  # the record itself still goes to the log


def watch_for_lost_events(signal: threading.Event) -> None:
    """Set `signal` whenever watchdog reports that the kernel dropped inotify events."""
    logger = logging.getLogger(INOTIFY_LOGGER)
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)  # the filter only sees records that are logged
    logger.addFilter(_LostEvents(signal))


def forget_lost_events(signal: threading.Event) -> None:
    logger = logging.getLogger(INOTIFY_LOGGER)
    for found in list(logger.filters):
        if isinstance(found, _LostEvents) and found.signal is signal:
            logger.removeFilter(found)
