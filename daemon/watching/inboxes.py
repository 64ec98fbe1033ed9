"""One watched inbox folder: attaching its observer, noticing it is gone, detaching.

An inbox is attached while its observer runs and the folder at its path is
the one the observer was started on (same device and inode): a folder that
was deleted and created again needs a new observer, since inotify watches
inodes, not names. Each problem (missing, not a folder, no permission) is
logged once until the inbox attaches again. Used by the watcher's thread only.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from watchdog.observers.api import BaseObserver

from daemon.settings import InboxProfile, WatchSettings, inbox_name, inbox_root
from daemon.watching.observers import Change, observer_alive, start_observer, stop_observer

log = structlog.get_logger("daemon.watching.watcher")


def watched_inboxes(
    settings: WatchSettings, profiles: Iterable[InboxProfile] | None = None
) -> dict[Path, tuple[str, WatchSettings]]:
    """Each inbox's root, name and the watch settings it runs with.

    An inbox profile (daemon.settings.inboxes) may choose its own mode,
    recursion and settle window; without profiles, the `[watch]` list is
    watched with `[watch]` as it stands.
    """
    if profiles is None:
        return {inbox_root(path): (inbox_name(path), settings) for path in settings.inboxes}
    return {
        profile.root: (
            profile.name,
            settings.model_copy(
                update={
                    "mode": profile.mode,
                    "recursive": profile.recursive,
                    "settle_seconds": profile.settle_seconds,
                }
            ),
        )
        for profile in profiles
    }


@dataclass(slots=True)
class Inbox:
    path: Path  # daemon.settings.inbox_root() of the configured path
    settings: WatchSettings  # [watch], with the mode, recursion and settle of its profile
    name: str = ""
    real: str = ""  # realpath, to judge where symlinks point
    observer: BaseObserver | None = None
    identity: tuple[int, int] | None = None  # (st_dev, st_ino) when attached
    problem: str | None = None  # the last problem logged, so each is logged once
    symlinks_noted: set[Path] = field(default_factory=set)  # each is logged once

    @property
    def attached(self) -> bool:
        """The observer runs and still watches the folder now at this path."""
        if self.observer is None or not observer_alive(self.observer):
            return False
        try:
            result = os.stat(self.path)
        except OSError:
            return False
        return (result.st_dev, result.st_ino) == self.identity

    @property
    def recursive(self) -> bool:
        return self.settings.recursive

    def attach(self, post: Callable[[Change], None]) -> bool:
        """Start watching (creating the folder when create_missing); False, logged once, if not."""
        settings = self.settings
        try:
            try:
                result = os.stat(self.path)
            except FileNotFoundError:
                self._report("missing", settings)
                if not settings.create_missing:
                    return False
                self.path.mkdir(parents=True, exist_ok=True)
                log.info("watch.inbox_created", inbox=str(self.path))
                result = os.stat(self.path)
            if not stat.S_ISDIR(result.st_mode):
                self._report("not_a_directory", settings)
                return False
            self.observer = start_observer(self.path, settings, post)
        except OSError as error:
            self._report(error.strerror or str(error), settings)
            return False
        self.identity = (result.st_dev, result.st_ino)
        self.real = os.path.realpath(self.path)
        self.problem = None
        log.info(
            "watch.inbox_attached",
            inbox=str(self.path),
            name=self.name,
            mode=settings.mode,
            recursive=settings.recursive,
        )
        return True

    def detach(self) -> None:
        """Stop the observer, if any (waits for its thread)."""
        observer, self.observer, self.identity = self.observer, None, None
        if observer is not None:
            stop_observer(observer)

    def relative_parts(self, path: str) -> list[str] | None:
        """Path's components below the inbox; None when outside it or too deep for the mode."""
        recursive = self.settings.recursive
        root = str(self.path) + os.sep
        if not path.startswith(root):
            return None
        parts = path[len(root) :].split(os.sep)
        if len(parts) > 1 and not recursive:
            return None
        return parts

    def holds(self, target: str) -> bool:
        """Whether a resolved path (a symlink's target) lies inside this inbox."""
        return target == self.real or target.startswith(self.real + os.sep)

    def note_symlink(self, path: Path) -> None:
        """A symlink in the inbox is never a candidate: say so once, louder when it points out."""
        if path in self.symlinks_noted:
            return
        self.symlinks_noted.add(path)
        target = os.path.realpath(path)
        if self.holds(target):
            log.debug("watch.ignored", path=str(path), reason="symlink", target=target)
        else:
            log.info("watch.symlink_outside", path=str(path), target=target)

    def _report(self, problem: str, settings: WatchSettings) -> None:
        if self.problem == problem:
            return
        self.problem = problem
        if problem == "missing":
            log.warning(
                "watch.inbox_missing", inbox=str(self.path), create_missing=settings.create_missing
            )
        else:
            log.warning("watch.inbox_unavailable", inbox=str(self.path), reason=problem)


def settle_windows(inboxes: dict[Path, Inbox]) -> dict[Path, float]:
    """Each inbox's settle window, for the settle tracker."""
    return {root: inbox.settings.settle_seconds for root, inbox in inboxes.items()}


def reconcile(
    inboxes: dict[Path, Inbox],
    wanted: dict[Path, tuple[str, WatchSettings]],
    attach: Callable[[Inbox], bool],
) -> None:
    """Bring the watched inboxes in line with reloaded settings (SIGHUP).

    An inbox no longer wanted is detached and dropped; one whose mode,
    recursion or poll interval changed is attached again (an observer is
    started with them); a new one is attached.
    """
    for root in list(inboxes):
        if root not in wanted:
            inboxes.pop(root).detach()
            log.info("watch.inbox_removed", inbox=str(root))
    for root, (name, watch) in wanted.items():
        inbox = inboxes.setdefault(root, Inbox(root, watch, name))
        old, inbox.settings, inbox.name = inbox.settings, watch, name
        observed = (old.mode, old.recursive, old.poll_interval_seconds)
        if observed != (watch.mode, watch.recursive, watch.poll_interval_seconds):
            inbox.detach()
        if inbox.observer is None:
            attach(inbox)
