"""Finds files in the inboxes and hands each one on only once it is complete.

Threads: one watchdog observer per inbox (inotify in native mode; polling for
NFS/SMB, where no inotify events arrive) turns each event into a small record
on a queue and does nothing else. The watcher's own thread owns all state: it
stats, scans, settles (see daemon.watching.stability) and calls `on_stable` and
`already_final`, so both callbacks run on that thread, never concurrently.

A candidate is a regular file whose name is ours (daemon.watching.candidates).
Symlinks are never followed: a symlink is never a candidate, whatever it
points to, and in recursive mode symlinked folders are not descended into.

Safety nets: scans (daemon.watching.scanning), which ask `already_final`
first, so finished files cost one stat each. Every second the inboxes are
checked: one deleted (or replaced, or whose observer died) is re-attached
(daemon.watching.inboxes), and created again when create_missing. Where
inotify cannot start (its per-user limits), an inbox falls back to polling
with a warning rather than going unwatched.
"""

from __future__ import annotations

import os
import queue
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from daemon.settings import InboxProfile, WatchSettings
from daemon.watching.candidates import Candidate, parts_reason
from daemon.watching.handoff import Handoff
from daemon.watching.inboxes import Inbox, reconcile, settle_windows, watched_inboxes
from daemon.watching.observers import Change, forget_lost_events, watch_for_lost_events
from daemon.watching.scanning import Scans, walk
from daemon.watching.stability import FileState, SettleTracker

log = structlog.get_logger(__name__)

_INBOX_CHECK_SECONDS = 1.0
_MAX_WAIT_SECONDS = 0.25
_SCAN_STEPS_PER_TURN = 2000
_HANDOFFS_PER_TURN = 256


@dataclass(slots=True)
class _Command:
    run: Callable[[], None]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class Watcher:
    """Watches the inboxes and calls on_stable(candidate) for each file once it has settled."""

    def __init__(
        self,
        settings: WatchSettings,
        on_stable: Callable[[Candidate], None],
        *,
        already_final: Callable[[Candidate], bool] = lambda candidate: False,
        clock: Callable[[], float] = time.monotonic,
        profiles: Iterable[InboxProfile] | None = None,
    ) -> None:
        self._settings = settings
        self._handoff = Handoff(on_stable, already_final)
        self._clock = clock
        self._tracker = SettleTracker(settings.settle_seconds)
        self._inboxes: dict[Path, Inbox] = {
            root: Inbox(root, watch, name)
            for root, (name, watch) in watched_inboxes(settings, profiles).items()
        }
        self._tracker.per_inbox = settle_windows(self._inboxes)
        self._changes: queue.SimpleQueue[Change | _Command | None] = queue.SimpleQueue()
        self._scans = Scans(clock)
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()
        self._running = False
        self._stopping = threading.Event()
        self._next_rescan = 0.0
        # Set from watchdog's thread when the kernel dropped events (see daemon.watching.observers).
        self._events_lost = threading.Event()
        self._next_inbox_check = 0.0

    # --- public ---------------------------------------------------------------

    @property
    def tracking(self) -> int:
        """Files currently waiting to settle."""
        return len(self._tracker)

    @property
    def alive(self) -> bool:
        """The watcher's thread is running (false before start, after stop, or after a crash)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Create missing inboxes (create_missing), start the observers, then scan the backlog."""
        with self._lifecycle:
            if self._thread is not None or self._stopping.is_set():
                raise RuntimeError("a Watcher starts once")
            self._running = True
            watch_for_lost_events(self._events_lost)
            now = self._clock()
            self._next_rescan = now + self._settings.rescan_interval_seconds
            self._next_inbox_check = now + _INBOX_CHECK_SECONDS
            # Before the thread exists, so nothing else touches the state yet;
            # each attach queues its inbox's backlog scan for the thread.
            for inbox in self._inboxes.values():
                self._attach(inbox)
            self._thread = threading.Thread(target=self._run, name="ocr-inbox-watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and every observer and wait for them; idempotent."""
        with self._lifecycle:
            if self._stopping.is_set():
                return
            self._stopping.set()
        self._changes.put(None)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        for inbox in self._inboxes.values():
            inbox.detach()
        forget_lost_events(self._events_lost)
        self._running = False

    def rescan(self) -> None:
        """Check the inboxes and scan them all now; returns when the scan is done."""
        if self._stopping.is_set():
            return
        if not self._through_thread():
            self._check_inboxes()
            for _ in self._full_scan():
                pass
            return
        done = threading.Event()

        def queue_scan() -> None:
            self._check_inboxes()
            self._scans.add_full(self._full_scan(), "requested", done)

        self._call(queue_scan)
        self._wait(done)

    def update(
        self, settings: WatchSettings, profiles: Iterable[InboxProfile] | None = None
    ) -> None:
        """Apply reloaded settings (SIGHUP); files being tracked stay tracked where still in scope."""
        self._call(lambda: self._apply(settings, profiles))

    # --- the watcher's thread -------------------------------------------------

    def _through_thread(self) -> bool:
        """Whether work must go through the thread (it runs and we are not on it)."""
        thread = self._thread
        return (
            thread is not None
            and thread.is_alive()
            and thread is not threading.current_thread()
            and not self._stopping.is_set()
        )

    def _call(self, run: Callable[[], None]) -> None:
        if self._stopping.is_set():
            return  # a stopped watcher has nothing left to change
        if not self._through_thread():
            run()
            return
        command = _Command(run)
        self._changes.put(command)
        self._wait(command.done)
        if command.error is not None:
            raise command.error

    def _wait(self, done: threading.Event) -> None:
        while not done.wait(0.1):
            if not self.alive:
                return

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._drain(self._wait_seconds())
                now = self._clock()
                if now >= self._next_inbox_check:
                    self._check_inboxes()
                    self._next_inbox_check = now + _INBOX_CHECK_SECONDS
                rescan_reason = "periodic"
                if self._events_lost.is_set():
                    # The kernel's inotify queue overflowed: events were dropped,
                    # so only a scan can find the files they named. Now, not at
                    # the next periodic rescan (a 10,000-file drop does this).
                    self._events_lost.clear()
                    log.warning("watch.events_lost", action="rescan now")
                    self._next_rescan = now
                    rescan_reason = "events_lost"
                if now >= self._next_rescan:
                    if not self._scans.full_scan_waiting:
                        self._scans.add_full(self._full_scan(), rescan_reason)
                    self._next_rescan = now + self._settings.rescan_interval_seconds
                self._scans.advance(_SCAN_STEPS_PER_TURN, settling=lambda: len(self._tracker))
                self._hand_on_settled()
        except Exception:
            log.exception("watch.crashed")
            raise

    def _wait_seconds(self) -> float:
        if self._scans:
            return 0.0
        now = self._clock()
        wake = min(self._next_inbox_check, self._next_rescan)
        due = self._tracker.next_due()
        if due is not None:
            wake = min(wake, due)
        return min(max(wake - now, 0.0), _MAX_WAIT_SECONDS)

    def _drain(self, timeout: float) -> None:
        try:
            item = self._changes.get(timeout=timeout) if timeout > 0 else self._changes.get_nowait()
        except queue.Empty:
            return
        for _ in range(10_000):
            self._handle(item)
            try:
                item = self._changes.get_nowait()
            except queue.Empty:
                return
        self._handle(item)

    def _handle(self, item: Change | _Command | None) -> None:
        if item is None:
            return
        if isinstance(item, _Command):
            try:
                item.run()
            except Exception as error:
                item.error = error
            finally:
                item.done.set()
            return
        inbox = self._inboxes.get(item.inbox)
        if inbox is None:
            return  # from an inbox that a reload removed
        if item.kind == "inbox_gone":
            inbox.detach()
            self._attach(inbox)
        elif item.kind == "gone":
            if self._tracker.forget(Path(item.path)):
                log.debug("watch.vanished", path=item.path)
        elif item.kind == "folder":
            self._on_folder(inbox, item.path)
        elif not self._tracker.touch(Path(item.path), self._clock()):
            self._on_new_file(inbox, item.path)

    def _on_new_file(self, inbox: Inbox, path: str) -> None:
        parts = inbox.relative_parts(path)
        if parts is None:
            return
        reason = parts_reason(parts)
        if reason is not None:
            log.debug("watch.ignored", path=path, reason=reason)
            return
        try:
            result = os.lstat(path)
        except OSError:
            return  # gone already; its events are stale
        if stat.S_ISLNK(result.st_mode):
            inbox.note_symlink(Path(path))
        elif stat.S_ISREG(result.st_mode):
            self._tracker.track(Path(path), inbox.path, FileState.of(result), self._clock())

    def _on_folder(self, inbox: Inbox, path: str) -> None:
        if not inbox.recursive:
            return
        parts = inbox.relative_parts(path)
        if parts is None or any(part.startswith(".") for part in parts):
            return
        try:
            is_folder = stat.S_ISDIR(os.lstat(path).st_mode)
        except OSError:
            return
        if is_folder:
            # Files written before the observer watched this folder send no events.
            self._scans.add_partial(self._walk(inbox, path, full=False))

    def _hand_on_settled(self) -> None:
        for _ in range(_HANDOFFS_PER_TURN):
            if self._stopping.is_set():
                return
            settled = self._tracker.next_settled(self._clock())
            if settled is None:
                return
            # Events that came while earlier callbacks ran may name this file again.
            self._drain(0.0)
            path, state = settled.path, settled.state
            if path in self._tracker or not self._in_scope(path, settled.inbox):
                continue
            if self._handoff.handed(path, state):
                log.debug("watch.unchanged", path=str(path))
                continue
            candidate = Candidate(
                path, settled.inbox, state.size, state.mtime_ns, settled.first_seen
            )
            if self._handoff.is_final(candidate):
                log.debug("watch.already_final", path=str(path))
                continue
            self._handoff.hand_on(candidate, state)

    # --- scanning -------------------------------------------------------------

    def _full_scan(self) -> Iterator[None]:
        for inbox in list(self._inboxes.values()):
            if inbox.observer is not None:
                yield from self._walk(inbox, str(inbox.path), full=True)

    def _walk(self, inbox: Inbox, top: str, *, full: bool) -> Iterator[None]:
        """Offer every candidate under top to the settle tracker, one entry per step."""
        # Handed-on files this scan does not find are gone: forget them. Only
        # those handed on before it started: later ones may be behind it.
        unseen = self._handoff.under(top) if full else set()

        def found_file(path: Path, state: FileState) -> None:
            unseen.discard(path)
            self._offer(inbox, path, state)

        whole = yield from walk(
            top,
            recursive=inbox.recursive,
            watched=lambda: self._inboxes.get(inbox.path) is inbox and inbox.observer is not None,
            found_file=found_file,
            found_symlink=inbox.note_symlink,
        )
        if whole:
            self._handoff.forget(unseen)

    def _offer(self, inbox: Inbox, path: Path, state: FileState) -> None:
        """A scan found a regular file: track it unless it is settling, final or handed on."""
        if path in self._tracker:
            return
        if self._handoff.is_final(Candidate(path, inbox.path, state.size, state.mtime_ns)):
            return
        if self._handoff.handed(path, state):
            return  # handed on and not final yet: the supervisor has it
        self._tracker.track(path, inbox.path, state, self._clock())

    # --- inboxes --------------------------------------------------------------

    def _check_inboxes(self) -> None:
        for inbox in list(self._inboxes.values()):
            if not inbox.attached:
                inbox.detach()
                self._attach(inbox)

    def _attach(self, inbox: Inbox) -> bool:
        if not self._running or self._stopping.is_set():
            return False
        if not inbox.attach(self._changes.put):
            return False
        # After the observer starts: whatever the scan misses, an event reports.
        self._scans.add_full(self._walk(inbox, str(inbox.path), full=True), "attached")
        return True

    def _in_scope(self, path: Path, inbox: Path) -> bool:
        watched = self._inboxes.get(inbox)
        return watched is not None and watched.relative_parts(str(path)) is not None

    def _apply(self, settings: WatchSettings, profiles: Iterable[InboxProfile] | None) -> None:
        self._settings = settings
        self._tracker.settle_seconds = settings.settle_seconds
        wanted = watched_inboxes(settings, profiles)
        reconcile(self._inboxes, wanted, self._attach)
        self._tracker.per_inbox = settle_windows(self._inboxes)
        dropped = self._tracker.retain(self._in_scope)
        self._next_rescan = min(self._next_rescan, self._clock() + settings.rescan_interval_seconds)
        log.info(
            "watch.reloaded",
            inboxes=[str(root) for root in wanted],
            mode=settings.mode,
            recursive=settings.recursive,
            dropped=dropped,
        )
