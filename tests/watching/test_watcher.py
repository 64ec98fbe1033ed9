"""The watcher: real folders, real observers (inotify and polling), real threads.

Negative checks ("never handed on") use a sentinel: a candidate written after
the files that must be ignored; once the sentinel is handed on, anything
written before it would have been too.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from daemon.settings import WatchSettings, inbox_root
from daemon.watching.candidates import Candidate
from daemon.watching.watcher import Watcher

# watchdog's recursive inotify emitter may add the watch for a new folder twice
# (once for its IN_CREATE, once while walking its parent) and warns about it
# from its own thread; the duplicate is harmless and not the watcher's doing.
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id .* already exists:RuntimeWarning")

WAIT_SECONDS = 30.0
FAST_SETTLE = 0.3


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


class Handoffs:
    """Collects what on_stable receives (called from the watcher's thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Candidate] = []
        self._times: dict[Path, float] = {}

    def __call__(self, candidate: Candidate) -> None:
        with self._lock:
            self._items.append(candidate)
            self._times[candidate.path] = time.monotonic()

    def handed_at(self, path: Path) -> float:
        """When (time.monotonic) path was last handed on."""
        with self._lock:
            return self._times[path]

    @property
    def items(self) -> list[Candidate]:
        with self._lock:
            return list(self._items)

    def of(self, path: Path) -> list[Candidate]:
        return [item for item in self.items if item.path == path]

    def count(self, path: Path) -> int:
        return len(self.of(path))

    def wait_for(self, path: Path, times: int = 1, timeout: float = WAIT_SECONDS) -> Candidate:
        wait_until(lambda: self.count(path) >= times, f"{path.name} handed on", timeout)
        return self.of(path)[-1]


def settings_for(inboxes: list[Path], mode: str = "native", **overrides: Any) -> WatchSettings:
    values: dict[str, Any] = {
        "inboxes": inboxes,
        "mode": mode,
        "settle_seconds": FAST_SETTLE,
        "poll_interval_seconds": 0.1,
        "rescan_interval_seconds": 300.0,
    }
    values.update(overrides)
    return WatchSettings(**values)


StartWatcher = Callable[..., tuple[Watcher, Handoffs]]


@pytest.fixture
def start_watcher() -> Iterator[StartWatcher]:
    """Starts watchers with a Handoffs recorder; stops them all after the test."""
    started: list[Watcher] = []

    def start(settings: WatchSettings, **kwargs: Any) -> tuple[Watcher, Handoffs]:
        handoffs = Handoffs()
        watcher = Watcher(settings, kwargs.pop("on_stable", handoffs), **kwargs)
        started.append(watcher)
        watcher.start()
        return watcher, handoffs

    yield start
    for watcher in started:
        watcher.stop()


@pytest.fixture(params=["native", "polling"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


# --- names ----------------------------------------------------------------------


def test_file_is_handed_on_once_after_settling(
    mode: str, inbox: Path, start_watcher: StartWatcher
) -> None:
    """A new file is handed on once, with its absolute path, inbox, size, mtime and first sight."""
    watcher, handoffs = start_watcher(settings_for([inbox], mode))
    page = inbox / "scan.png"
    page.write_bytes(b"0123456789")
    candidate = handoffs.wait_for(page)
    info = os.stat(page)
    assert (candidate.path, candidate.inbox) == (page, inbox_root(inbox))
    assert (candidate.size, candidate.mtime_ns) == (10, info.st_mtime_ns)
    assert candidate.path.is_absolute()
    assert candidate.first_seen is not None
    # Load can only lengthen the wait, never shorten it below the window.
    assert handoffs.handed_at(page) - candidate.first_seen >= FAST_SETTLE
    sentinel = inbox / "sentinel.png"
    sentinel.write_bytes(b"s")
    handoffs.wait_for(sentinel)
    assert handoffs.count(page) == 1
    assert watcher.tracking == 0


def test_slow_writer_is_handed_on_only_when_complete(
    mode: str, inbox: Path, start_watcher: StartWatcher
) -> None:
    """A file written a chunk every 0.5 s for 10 s is handed on once, after the last write, whole."""
    _watcher, handoffs = start_watcher(settings_for([inbox], mode, settle_seconds=2.0))
    page = inbox / "slow.pdf"
    chunk = b"%" * 4096
    chunks = 20
    for index in range(chunks):
        assert handoffs.count(page) == 0, f"handed on before chunk {index + 1} of {chunks}"
        with page.open("ab") as handle:
            handle.write(chunk)
        time.sleep(0.5)  # the writer's pace, not a check
    candidate = handoffs.wait_for(page)
    assert candidate.size == chunks * len(chunk)
    sentinel = inbox / "sentinel.png"
    sentinel.write_bytes(b"s")
    handoffs.wait_for(sentinel)
    assert [item.size for item in handoffs.of(page)] == [chunks * len(chunk)]


def test_ignored_names_are_never_handed_on(
    mode: str, inbox: Path, start_watcher: StartWatcher
) -> None:
    """Hidden, temp, partial, lock, output and unsupported files are never handed on."""
    watcher, handoffs = start_watcher(settings_for([inbox], mode))
    ignored = [
        ".hidden.png",
        "scan.png.part",
        "scan.png.crdownload",
        "scan.png.tmp",
        "~$lock.pdf",
        ".~lock.doc.pdf#",
        ".syncthing.x.png.tmp",
        "done.png.ocr.md",
        "done.png.ocr.json",
        "done.png.ocr.error.json",
        ".done.png.ocr.md.0badcafe.ocr-inbox.tmp",
        "notes.txt",
    ]
    for name in ignored:
        (inbox / name).write_bytes(b"data")
    sentinel = inbox / "sentinel.png"
    sentinel.write_bytes(b"s")
    handoffs.wait_for(sentinel)
    watcher.rescan()
    (inbox / "sentinel2.png").write_bytes(b"s")
    handoffs.wait_for(inbox / "sentinel2.png")
    assert sorted(item.path.name for item in handoffs.items) == ["sentinel.png", "sentinel2.png"]


def test_backlog_at_start_is_handed_on(mode: str, inbox: Path, start_watcher: StartWatcher) -> None:
    """Files already in the inbox at start go through the settle window and are handed on once."""
    pages = [inbox / f"old{index}.png" for index in range(5)]
    for page in pages:
        page.write_bytes(page.name.encode())
    (inbox / "old.txt").write_bytes(b"not ours")
    _watcher, handoffs = start_watcher(settings_for([inbox], mode))
    for page in pages:
        handoffs.wait_for(page)
    sentinel = inbox / "sentinel.png"
    sentinel.write_bytes(b"s")
    handoffs.wait_for(sentinel)
    assert sorted(item.path.name for item in handoffs.items) == sorted(
        [page.name for page in pages] + ["sentinel.png"]
    )


def test_already_final_files_cost_a_stat_and_no_callback(
    inbox: Path, start_watcher: StartWatcher
) -> None:
    """Scans ask already_final with the file's size and mtime; finished files are never tracked."""
    finished = {}
    for index in range(300):
        page = inbox / f"done{index:03}.png"
        page.write_bytes(b"x" * index)
        info = os.stat(page)
        finished[page] = (info.st_size, info.st_mtime_ns)
    fresh = inbox / "fresh.png"
    fresh.write_bytes(b"new")
    asked: list[tuple[Path, int, int]] = []

    def already_final(candidate: Candidate) -> bool:
        asked.append((candidate.path, candidate.size, candidate.mtime_ns))
        return finished.get(candidate.path) == (candidate.size, candidate.mtime_ns)

    watcher, handoffs = start_watcher(settings_for([inbox]), already_final=already_final)
    handoffs.wait_for(fresh)
    watcher.rescan()
    assert watcher.tracking == 0
    assert [item.path for item in handoffs.items] == [fresh]
    for page, (size, mtime_ns) in finished.items():
        assert asked.count((page, size, mtime_ns)) == 2  # the start-up scan and the rescan


def test_rename_from_partial_is_picked_up(
    mode: str, inbox: Path, start_watcher: StartWatcher
) -> None:
    """A download written as x.part and renamed to x.png is handed on under the new name only."""
    _watcher, handoffs = start_watcher(settings_for([inbox], mode))
    partial = inbox / "download.png.part"
    partial.write_bytes(b"a" * 1000)
    final = inbox / "download.png"
    partial.rename(final)
    candidate = handoffs.wait_for(final)
    assert candidate.size == 1000
    assert handoffs.count(partial) == 0


@pytest.mark.parametrize("recursive", [True, False])
def test_subfolders_only_when_recursive(
    mode: str, recursive: bool, inbox: Path, start_watcher: StartWatcher
) -> None:
    """Files in subfolders (backlog and new) are handed on in recursive mode and only then."""
    (inbox / "old").mkdir()
    (inbox / "old" / "backlog.png").write_bytes(b"b")
    watcher, handoffs = start_watcher(settings_for([inbox], mode, recursive=recursive))
    (inbox / "new" / "deeper").mkdir(parents=True)
    deep = inbox / "new" / "deeper" / "deep.png"
    deep.write_bytes(b"d")
    (inbox / ".hidden").mkdir()
    (inbox / ".hidden" / "secret.png").write_bytes(b"h")
    sentinel = inbox / "sentinel.png"
    sentinel.write_bytes(b"s")
    handoffs.wait_for(sentinel)
    if recursive:
        handoffs.wait_for(deep)
        handoffs.wait_for(inbox / "old" / "backlog.png")
        expected = {sentinel, deep, inbox / "old" / "backlog.png"}
    else:
        expected = {sentinel}
    watcher.rescan()
    (inbox / "sentinel2.png").write_bytes(b"s")
    handoffs.wait_for(inbox / "sentinel2.png")
    assert {item.path for item in handoffs.items} == expected | {inbox / "sentinel2.png"}
    assert len(handoffs.items) == len(expected) + 1


def test_symlinks_are_never_followed(
    mode: str, tmp_path: Path, inbox: Path, start_watcher: StartWatcher
) -> None:
    """Symlinks (to files outside or inside, to folders) are never handed on; outside ones log once."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"secret")
    (outside / "nested.png").write_bytes(b"nested")
    real = inbox / "real.png"
    real.write_bytes(b"real")
    with capture_logs() as logs:
        watcher, handoffs = start_watcher(settings_for([inbox], mode, recursive=True))
        (inbox / "escape.png").symlink_to(outside / "secret.png")
        (inbox / "alias.png").symlink_to(real)
        (inbox / "linked_folder").symlink_to(outside, target_is_directory=True)
        handoffs.wait_for(real)
        watcher.rescan()
        watcher.rescan()
        sentinel = inbox / "sentinel.png"
        sentinel.write_bytes(b"s")
        handoffs.wait_for(sentinel)
    assert sorted(item.path.name for item in handoffs.items) == ["real.png", "sentinel.png"]
    outside_lines = [entry for entry in logs if entry["event"] == "watch.symlink_outside"]
    assert [entry["path"] for entry in outside_lines] == [str(inbox / "escape.png")]


# --- the inbox itself -------------------------------------------------------------


def test_missing_inbox_is_created_at_start(tmp_path: Path, start_watcher: StartWatcher) -> None:
    """With create_missing, start() creates the inbox (parents too) and watches it."""
    inbox = tmp_path / "a" / "b" / "inbox"
    _watcher, handoffs = start_watcher(settings_for([inbox]))
    assert inbox.is_dir()
    page = inbox / "page.png"
    page.write_bytes(b"p")
    handoffs.wait_for(page)


def test_inbox_deleted_and_recreated_by_the_watcher(
    mode: str, inbox: Path, start_watcher: StartWatcher
) -> None:
    """With create_missing, a deleted inbox comes back and its files are handed on again."""
    watcher, handoffs = start_watcher(settings_for([inbox], mode))
    (inbox / "before.png").write_bytes(b"1")
    handoffs.wait_for(inbox / "before.png")
    shutil.rmtree(inbox)
    wait_until(inbox.is_dir, "the watcher to create the inbox again")
    page = inbox / "after.png"
    page.write_bytes(b"2")
    handoffs.wait_for(page)
    assert watcher.alive


def test_inbox_deleted_and_recreated_by_someone_else(
    mode: str, inbox: Path, start_watcher: StartWatcher
) -> None:
    """Without create_missing, the watcher notices the inbox gone, waits, and re-attaches when it is back."""
    with capture_logs() as logs:
        _watcher, handoffs = start_watcher(settings_for([inbox], mode, create_missing=False))
        shutil.rmtree(inbox)
        wait_until(
            lambda: any(entry["event"] == "watch.inbox_missing" for entry in logs),
            "watch.inbox_missing",
        )
        assert not inbox.exists()
        inbox.mkdir()
        early = inbox / "early.png"
        early.write_bytes(b"written before the watcher re-attached")
        handoffs.wait_for(early)
        late = inbox / "late.png"
        late.write_bytes(b"written after")
        handoffs.wait_for(late)
    missing = [entry for entry in logs if entry["event"] == "watch.inbox_missing"]
    assert len(missing) == 1
    assert missing[0]["inbox"] == str(inbox)


def test_missing_inbox_without_create_is_attached_when_it_appears(
    tmp_path: Path, start_watcher: StartWatcher
) -> None:
    """An inbox missing at start (create_missing off) is not created, and is watched once it exists."""
    inbox = tmp_path / "later"
    _watcher, handoffs = start_watcher(settings_for([inbox], create_missing=False))
    assert not inbox.exists()
    inbox.mkdir()
    page = inbox / "page.png"
    page.write_bytes(b"p")
    handoffs.wait_for(page)


@pytest.mark.parametrize("how", ["moved_in", "made_in_place"])
def test_new_subfolder_with_files_already_inside(
    mode: str, how: str, tmp_path: Path, inbox: Path, start_watcher: StartWatcher
) -> None:
    """A folder that arrives with files inside (recursive mode) has all of them handed on."""
    _watcher, handoffs = start_watcher(settings_for([inbox], mode, recursive=True))
    names = ["a.png", "b.pdf", "deeper/c.jpg", "deeper/deepest/d.tif"]
    if how == "moved_in":
        staging = tmp_path / "staging" / "batch"
        for name in names:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(name.encode())
        os.rename(staging, inbox / "batch")
    else:
        for name in names:
            (inbox / "batch" / name).parent.mkdir(parents=True, exist_ok=True)
            (inbox / "batch" / name).write_bytes(name.encode())
    for name in names:
        candidate = handoffs.wait_for(inbox / "batch" / name)
        assert candidate.size == len(name)
    sentinel = inbox / "sentinel.png"
    sentinel.write_bytes(b"s")
    handoffs.wait_for(sentinel)
    assert len(handoffs.items) == len(names) + 1


def test_thousand_files_at_once_each_handed_on_once(
    mode: str, inbox: Path, start_watcher: StartWatcher
) -> None:
    """1,000 files dropped at once are all handed on, each exactly once."""
    _watcher, handoffs = start_watcher(settings_for([inbox], mode))
    pages = [inbox / f"page{index:04}.png" for index in range(1000)]
    for page in pages:
        page.write_bytes(page.name.encode())
    wait_until(
        lambda: len({item.path for item in handoffs.items}) >= len(pages),
        "all 1,000 files handed on",
        timeout=120,
    )
    sentinel = inbox / "sentinel.png"
    sentinel.write_bytes(b"s")
    handoffs.wait_for(sentinel)
    counts: dict[Path, int] = {}
    for item in handoffs.items:
        counts[item.path] = counts.get(item.path, 0) + 1
    assert set(counts) == {*pages, sentinel}
    assert set(counts.values()) == {1}


# --- changes, failures, lifecycle -------------------------------------------------


def test_changed_after_hand_on_is_handed_on_again(
    mode: str, inbox: Path, start_watcher: StartWatcher
) -> None:
    """A file that changes after it was handed on is handed on again, with its new size."""
    _watcher, handoffs = start_watcher(settings_for([inbox], mode))
    page = inbox / "page.png"
    page.write_bytes(b"one")
    assert handoffs.wait_for(page).size == 3
    with page.open("ab") as handle:
        handle.write(b" two")
    assert handoffs.wait_for(page, times=2).size == 7


def test_vanished_while_settling_is_dropped(
    mode: str, inbox: Path, start_watcher: StartWatcher
) -> None:
    """A file deleted before it settles is never handed on and stops being tracked."""
    watcher, handoffs = start_watcher(settings_for([inbox], mode, settle_seconds=1.5))
    page = inbox / "brief.png"
    page.write_bytes(b"here and gone")
    wait_until(lambda: watcher.tracking == 1, "the file to be tracked")
    page.unlink()
    sentinel = inbox / "sentinel.png"
    sentinel.write_bytes(b"s")
    handoffs.wait_for(sentinel)
    assert handoffs.count(page) == 0
    wait_until(lambda: watcher.tracking == 0, "nothing left to settle")


def test_rescan_finds_files_whose_events_were_lost(
    inbox: Path, start_watcher: StartWatcher
) -> None:
    """With no events (a poll interval of an hour), rescan() finds the file."""
    watcher, handoffs = start_watcher(
        settings_for([inbox], "polling", poll_interval_seconds=3600.0)
    )
    page = inbox / "quiet.png"
    page.write_bytes(b"q")
    watcher.rescan()
    assert watcher.tracking == 1
    handoffs.wait_for(page)


def test_periodic_rescan_runs_by_itself(inbox: Path, start_watcher: StartWatcher) -> None:
    """Without events, the rescan every rescan_interval_seconds finds a new file."""
    _watcher, handoffs = start_watcher(
        settings_for([inbox], "polling", poll_interval_seconds=3600.0, rescan_interval_seconds=0.5)
    )
    page = inbox / "quiet.png"
    page.write_bytes(b"q")
    handoffs.wait_for(page)


def test_rescan_does_not_hand_on_again_what_is_in_flight(
    inbox: Path, start_watcher: StartWatcher
) -> None:
    """A file handed on but not final yet is not handed on again by a rescan."""
    watcher, handoffs = start_watcher(settings_for([inbox]))
    page = inbox / "page.png"
    page.write_bytes(b"p")
    handoffs.wait_for(page)
    watcher.rescan()
    assert watcher.tracking == 0
    sentinel = inbox / "sentinel.png"
    sentinel.write_bytes(b"s")
    handoffs.wait_for(sentinel)
    assert handoffs.count(page) == 1


def test_failing_callback_does_not_stop_the_watcher(
    inbox: Path, start_watcher: StartWatcher
) -> None:
    """An exception from on_stable is logged; later files are still handed on."""
    received: list[Path] = []

    def on_stable(candidate: Candidate) -> None:
        received.append(candidate.path)
        if candidate.path.name == "bad.png":
            raise RuntimeError("supervisor bug")

    with capture_logs() as logs:
        watcher, _ = start_watcher(settings_for([inbox]), on_stable=on_stable)
        (inbox / "bad.png").write_bytes(b"b")
        wait_until(lambda: inbox / "bad.png" in received, "bad.png handed on")
        (inbox / "good.png").write_bytes(b"g")
        wait_until(lambda: inbox / "good.png" in received, "good.png handed on")
    assert watcher.alive
    assert any(entry["event"] == "watch.handoff_failed" for entry in logs)


def test_update_adds_a_second_inbox_and_keeps_tracked_files(
    tmp_path: Path, start_watcher: StartWatcher
) -> None:
    """update() with a second inbox watches it too; a file tracked before the reload is still handed on."""
    first = tmp_path / "first"
    second = tmp_path / "second"
    first.mkdir()
    watcher, handoffs = start_watcher(settings_for([first], settle_seconds=1.0))
    waiting = first / "waiting.png"
    waiting.write_bytes(b"w")
    wait_until(lambda: watcher.tracking == 1, "the file to be tracked")
    watcher.update(settings_for([first, second], settle_seconds=1.0))
    assert second.is_dir()
    handoffs.wait_for(waiting)
    page = second / "page.png"
    page.write_bytes(b"p")
    candidate = handoffs.wait_for(page)
    assert candidate.inbox == inbox_root(second)
    again = first / "again.png"
    again.write_bytes(b"a")
    handoffs.wait_for(again)
    assert handoffs.count(waiting) == 1


def test_update_switches_mode_and_drops_removed_inboxes(
    tmp_path: Path, start_watcher: StartWatcher
) -> None:
    """update() to polling keeps the kept inbox working; a removed inbox is no longer watched."""
    kept = tmp_path / "kept"
    removed = tmp_path / "removed"
    watcher, handoffs = start_watcher(settings_for([kept, removed]))
    watcher.update(settings_for([kept], "polling"))
    (removed / "orphan.png").write_bytes(b"o")
    page = kept / "page.png"
    page.write_bytes(b"p")
    handoffs.wait_for(page)
    watcher.rescan()
    sentinel = kept / "sentinel.png"
    sentinel.write_bytes(b"s")
    handoffs.wait_for(sentinel)
    assert {item.path for item in handoffs.items} == {page, sentinel}


def test_stop_is_idempotent_and_final(inbox: Path) -> None:
    """stop() joins the thread, can be called twice, and a stopped watcher does not start again."""
    before = set(threading.enumerate())
    watcher = Watcher(settings_for([inbox]), Handoffs())
    watcher.start()
    assert watcher.alive
    watcher.stop()
    watcher.stop()
    assert not watcher.alive
    assert set(threading.enumerate()) - before == set()  # observers joined too
    with pytest.raises(RuntimeError):
        watcher.start()


def test_logs_use_structlog_events(inbox: Path, start_watcher: StartWatcher) -> None:
    """Hand-on is logged as watch.stable with the path and size as fields."""
    with capture_logs() as logs:
        _watcher, handoffs = start_watcher(settings_for([inbox]))
        page = inbox / "page.png"
        page.write_bytes(b"12345")
        handoffs.wait_for(page)
    stable = [entry for entry in logs if entry["event"] == "watch.stable"]
    assert stable == [
        {
            "event": "watch.stable",
            "log_level": "info",
            "path": str(page),
            "size": 5,
            "inbox": str(inbox_root(inbox)),
        }
    ]


def test_watcher_does_not_import_torch() -> None:
    """The watcher (supervisor side) must not pull in torch."""
    import subprocess
    import sys

    code = "import sys, daemon.watching.watcher; sys.exit('torch' in sys.modules)"
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, check=False)
    assert result.returncode == 0


def test_backlog_handed_on_during_the_scan_is_not_handed_on_again(
    inbox: Path, start_watcher: StartWatcher
) -> None:
    """Files handed on while the start-up scan is still running are not handed on again by a rescan."""
    pages = [inbox / f"page{index:04}.png" for index in range(5000)]
    for page in pages:
        page.write_bytes(b"p")
    watcher, handoffs = start_watcher(settings_for([inbox], settle_seconds=0.0))
    wait_until(lambda: len(handoffs.items) >= len(pages), "the backlog handed on", timeout=120)
    watcher.rescan()
    # Written under a hidden name and renamed: with a zero settle window a
    # file written in place could be handed on empty, then again when written.
    sentinel = inbox / "sentinel.png"
    (inbox / ".sentinel.png").write_bytes(b"s")
    (inbox / ".sentinel.png").rename(sentinel)
    handoffs.wait_for(sentinel)
    assert len(handoffs.items) == len(pages) + 1


def test_failing_already_final_does_not_stop_the_watcher(
    inbox: Path, start_watcher: StartWatcher
) -> None:
    """An exception from already_final is logged and the file is handed on (the supervisor decides)."""

    def already_final(candidate: Candidate) -> bool:
        raise OSError("journal unavailable")

    page = inbox / "backlog.png"
    page.write_bytes(b"b")
    with capture_logs() as logs:
        watcher, handoffs = start_watcher(settings_for([inbox]), already_final=already_final)
        handoffs.wait_for(page)
    assert watcher.alive
    assert any(entry["event"] == "watch.already_final_failed" for entry in logs)


def test_inbox_that_is_a_symlink_is_watched_under_its_own_name(
    mode: str, tmp_path: Path, start_watcher: StartWatcher
) -> None:
    """An inbox configured as a symlink to a folder (a mounted share) gets events; paths keep its name."""
    real = tmp_path / "share"
    real.mkdir()
    inbox = tmp_path / "inbox"
    inbox.symlink_to(real, target_is_directory=True)
    _watcher, handoffs = start_watcher(settings_for([inbox], mode, recursive=True))
    top = inbox / "top.png"
    top.write_bytes(b"t")
    (inbox / "sub").mkdir()
    deep = inbox / "sub" / "deep.png"
    deep.write_bytes(b"d")
    # Well before the 300 s rescan: events arrive for the folder behind the link.
    for page in (top, deep):
        assert handoffs.wait_for(page, timeout=20).inbox == inbox_root(inbox)
    assert all(item.path.is_relative_to(inbox) for item in handoffs.items)


def test_lost_inotify_events_trigger_an_immediate_rescan(
    inbox: Path, start_watcher: StartWatcher
) -> None:
    """When watchdog reports a kernel queue overflow, the inboxes are rescanned at once, not at the next periodic rescan."""
    missed = inbox / "missed.png"
    missed.write_bytes(b"written before the watcher; no event will ever name it")
    pretend_final = threading.Event()
    pretend_final.set()

    def already_final(candidate: Candidate) -> bool:
        # The start-up scan is told the file is finished, as if its event had
        # been the one the kernel dropped.
        return pretend_final.is_set() and candidate.path == missed

    _, handoffs = start_watcher(
        settings_for([inbox], "native", rescan_interval_seconds=3600.0),
        already_final=already_final,
    )
    sentinel = inbox / "sentinel.png"
    sentinel.write_bytes(b"x")
    handoffs.wait_for(sentinel)  # the start-up scan is over and events flow
    pretend_final.clear()
    assert handoffs.count(missed) == 0
    logging.getLogger("watchdog.observers.inotify_c").warning(
        "Inotify queue overflowed; filesystem events were lost"
    )
    candidate = handoffs.wait_for(missed)
    assert candidate.size == missed.stat().st_size
