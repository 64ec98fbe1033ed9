"""Inbox: attaching a real observer to a real folder, noticing the folder replaced, each problem logged once."""

from __future__ import annotations

import queue
from pathlib import Path

import structlog.testing

from daemon.settings import WatchSettings, inbox_root
from daemon.watching.inboxes import Inbox
from daemon.watching.observers import Change


def settings_for(inbox: Path, **overrides: object) -> WatchSettings:
    return WatchSettings.model_validate({"inboxes": [str(inbox)], **overrides})


def test_attached_until_the_folder_is_replaced(tmp_path: Path) -> None:
    """A folder moved away and replaced by a new one of the same name is no longer the attached one."""
    folder = tmp_path / "in"
    folder.mkdir()
    inbox = Inbox(inbox_root(folder), settings_for(folder))
    changes: queue.SimpleQueue[Change] = queue.SimpleQueue()
    try:
        assert inbox.attach(changes.put)
        assert inbox.attached
        # Moved, not deleted: a deleted folder's inode number may be reused at
        # once. (A deletion also sends inbox_gone, which the watcher acts on.)
        folder.rename(tmp_path / "moved-away")
        folder.mkdir()
        assert not inbox.attached  # same name, new inode: inotify watches the old one
    finally:
        inbox.detach()
    assert inbox.observer is None and not inbox.attached


def test_a_missing_folder_is_created_only_when_asked(tmp_path: Path) -> None:
    """create_missing false: not attached, folder not made; true: made and attached."""
    folder = tmp_path / "later"
    inbox = Inbox(inbox_root(folder), settings_for(folder, create_missing=False))
    assert not inbox.attach(lambda change: None)
    assert not folder.exists()
    inbox.settings = settings_for(folder, create_missing=True)
    try:
        assert inbox.attach(lambda change: None)
        assert folder.is_dir() and inbox.attached
    finally:
        inbox.detach()


def test_each_problem_is_logged_once(tmp_path: Path) -> None:
    """Trying again every second does not repeat the same warning; a new problem is logged."""
    target = tmp_path / "in"
    inbox = Inbox(inbox_root(target), settings_for(target, create_missing=False))
    with structlog.testing.capture_logs() as logged:
        for _ in range(3):
            assert not inbox.attach(lambda change: None)
        target.write_text("a file where the folder should be")
        for _ in range(3):
            assert not inbox.attach(lambda change: None)
    events = [(entry["event"], entry.get("reason")) for entry in logged]
    assert events == [("watch.inbox_missing", None), ("watch.inbox_unavailable", "not_a_directory")]


def test_relative_parts_respect_the_mode(tmp_path: Path) -> None:
    """A file below a subfolder belongs to the inbox only in recursive mode; outside paths never do."""
    inbox = Inbox(inbox_root(tmp_path / "in"), settings_for(tmp_path / "in"))
    root = str(inbox.path)
    assert inbox.relative_parts(f"{root}/a.png") == ["a.png"]
    assert inbox.relative_parts(f"{root}/sub/a.png") is None
    inbox.settings = settings_for(tmp_path / "in", recursive=True)
    assert inbox.relative_parts(f"{root}/sub/a.png") == ["sub", "a.png"]
    assert inbox.relative_parts(f"{root}-other/a.png") is None


def test_holds_judges_resolved_targets(tmp_path: Path) -> None:
    """A symlink target inside the inbox's real path is held; a sibling with a shared prefix is not."""
    folder = tmp_path / "in"
    folder.mkdir()
    inbox = Inbox(inbox_root(folder), settings_for(folder))
    try:
        assert inbox.attach(lambda change: None)
        real = inbox.real
        assert inbox.holds(real) and inbox.holds(f"{real}/x/y.png")
        assert not inbox.holds(f"{real}-2/y.png")
        assert not inbox.holds(str(tmp_path / "elsewhere.png"))
    finally:
        inbox.detach()
