"""The settle tracker: real files, a hand-driven clock (times are plain numbers)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.watching.stability import FileState, SettleTracker

SETTLE = 2.0


def _track(tracker: SettleTracker, path: Path, now: float) -> None:
    tracker.track(path, path.parent, FileState.of(os.lstat(path)), now)


@pytest.fixture
def page(tmp_path: Path) -> Path:
    path = tmp_path / "page.png"
    path.write_bytes(b"first")
    return path


def test_not_settled_before_the_window(page: Path) -> None:
    """A file is not settled until settle_seconds after the stat that started its window."""
    tracker = SettleTracker(SETTLE)
    _track(tracker, page, 100.0)
    assert tracker.next_settled(100.0) is None
    assert tracker.next_settled(101.9) is None
    assert page in tracker


def test_settles_after_two_equal_stats(page: Path) -> None:
    """Same state on a stat settle_seconds after the first: settled, with that state, and untracked."""
    tracker = SettleTracker(SETTLE)
    _track(tracker, page, 100.0)
    settled = tracker.next_settled(102.0)
    assert settled is not None
    assert settled.path == page
    assert settled.inbox == page.parent
    assert settled.state == FileState.of(os.lstat(page))
    assert settled.first_seen == 100.0
    assert page not in tracker
    assert len(tracker) == 0


def test_a_change_restarts_the_window(page: Path) -> None:
    """A file that grew between the two stats needs another full window with no change."""
    tracker = SettleTracker(SETTLE)
    _track(tracker, page, 100.0)
    with page.open("ab") as handle:
        handle.write(b" more")
    assert tracker.next_settled(102.0) is None
    assert page in tracker
    assert tracker.next_settled(103.9) is None
    settled = tracker.next_settled(104.0)
    assert settled is not None
    assert settled.state.size == len(b"first more")


def test_an_event_pushes_the_window_back(page: Path) -> None:
    """A touch (an event) means no hand-on until settle_seconds after it, even if stat agrees."""
    tracker = SettleTracker(SETTLE)
    _track(tracker, page, 100.0)
    assert tracker.touch(page, 101.5)
    assert tracker.next_settled(102.0) is None
    assert tracker.next_settled(103.4) is None
    assert tracker.next_settled(103.5) is not None


def test_touch_of_an_untracked_path_says_so(tmp_path: Path) -> None:
    """touch() answers False for a path the tracker does not know, and tracks nothing."""
    tracker = SettleTracker(SETTLE)
    assert not tracker.touch(tmp_path / "other.png", 1.0)
    assert len(tracker) == 0


def test_vanished_file_is_dropped(page: Path) -> None:
    """A file deleted while settling is dropped, never settled."""
    tracker = SettleTracker(SETTLE)
    _track(tracker, page, 100.0)
    page.unlink()
    assert tracker.next_settled(102.0) is None
    assert len(tracker) == 0


def test_file_replaced_by_a_folder_is_dropped(page: Path) -> None:
    """A path that is no longer a regular file (here a folder) is dropped."""
    tracker = SettleTracker(SETTLE)
    _track(tracker, page, 100.0)
    page.unlink()
    page.mkdir()
    assert tracker.next_settled(102.0) is None
    assert len(tracker) == 0


def test_file_replaced_under_the_same_name_restarts(page: Path, tmp_path: Path) -> None:
    """A rename onto the path (new inode, same size) is a change, not a settled file."""
    tracker = SettleTracker(SETTLE)
    _track(tracker, page, 100.0)
    other = tmp_path / "other.bin"
    other.write_bytes(b"FIRST")
    os.utime(other, ns=(os.lstat(page).st_atime_ns, os.lstat(page).st_mtime_ns))
    os.replace(other, page)
    assert tracker.next_settled(102.0) is None
    assert page in tracker


def test_forget_and_retain(tmp_path: Path) -> None:
    """forget() drops one path; retain() drops those its predicate rejects; neither settles later."""
    tracker = SettleTracker(SETTLE)
    paths = []
    for name in ("a.png", "b.png", "c.png"):
        path = tmp_path / name
        path.write_bytes(name.encode())
        _track(tracker, path, 100.0)
        paths.append(path)
    assert tracker.forget(paths[0])
    assert not tracker.forget(paths[0])
    assert tracker.retain(lambda path, inbox: path.name != "b.png") == 1
    assert len(tracker) == 1
    settled = tracker.next_settled(200.0)
    assert settled is not None and settled.path == paths[2]
    assert tracker.next_settled(200.0) is None


def test_only_due_entries_are_stated(tmp_path: Path) -> None:
    """With 1,000 files tracked at different times, a check stats only the ones that are due."""
    calls: list[Path] = []

    def counting_lstat(path: Path) -> os.stat_result:
        calls.append(path)
        return os.lstat(path)

    tracker = SettleTracker(SETTLE, lstat=counting_lstat)
    for index in range(1000):
        path = tmp_path / f"{index:04}.png"
        path.write_bytes(b"x")
        _track(tracker, path, float(index))
    settled = []
    while (item := tracker.next_settled(SETTLE + 9.0)) is not None:
        settled.append(item.path.name)
    assert settled == [f"{index:04}.png" for index in range(10)]
    assert len(calls) == 10
    assert tracker.next_due() == SETTLE + 10.0


def test_next_settled_stops_after_max_checks(tmp_path: Path) -> None:
    """next_settled gives up after max_checks stats of unsettled files, so the caller stays responsive."""
    calls: list[Path] = []

    def counting_lstat(path: Path) -> os.stat_result:
        calls.append(path)
        return os.lstat(path)

    tracker = SettleTracker(SETTLE, lstat=counting_lstat)
    for index in range(5):
        path = tmp_path / f"{index}.png"
        path.write_bytes(b"x")
        _track(tracker, path, 0.0)
        path.write_bytes(b"changed")
    assert tracker.next_settled(SETTLE, max_checks=2) is None
    assert len(calls) == 2
    # The other three are still due; the two checked wait for the next window.
    assert tracker.next_settled(SETTLE, max_checks=10) is None
    assert len(calls) == 5
    assert len(tracker) == 5
    assert tracker.next_settled(2 * SETTLE) is not None


def test_settle_seconds_change_applies_to_tracked_files(page: Path) -> None:
    """A longer settle window (reload) holds back files already being tracked."""
    tracker = SettleTracker(SETTLE)
    _track(tracker, page, 100.0)
    tracker.settle_seconds = 5.0
    assert tracker.next_settled(102.0) is None
    assert tracker.next_settled(105.0) is not None


def test_content_key_ignores_ctime(page: Path) -> None:
    """A chmod moves ctime (a new state to settle) but not the content key."""
    before = FileState.of(os.lstat(page))
    os.chmod(page, 0o600)
    after = FileState.of(os.lstat(page))
    assert after.content_key == before.content_key
    with page.open("ab") as handle:
        handle.write(b"!")
    assert FileState.of(os.lstat(page)).content_key != before.content_key
