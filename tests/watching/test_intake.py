"""Intake: stable files hashed off the main loop, or the reason they could not be read."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from daemon.watching import intake as intake_module
from daemon.watching.intake import Intake, content_key
from tests.support.privileges import run_python_obeying_permissions


def test_content_key_is_the_sha256_of_the_bytes(tmp_path: Path) -> None:
    """The key of a file is the SHA-256 of its content, read in chunks."""
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "big.pdf"
    path.write_bytes(data)
    info = path.stat()
    assert (
        content_key(path, info.st_size, info.st_mtime_ns, 10**9) == hashlib.sha256(data).hexdigest()
    )


def test_oversized_files_are_not_read(tmp_path: Path) -> None:
    """A file over the size limit is keyed by size and mtime: it is refused unread anyway."""
    path = tmp_path / "huge.tif"
    path.write_bytes(b"x" * 100)
    info = path.stat()
    assert content_key(path, 100, info.st_mtime_ns, 99) == f"oversize:100:{info.st_mtime_ns}"


def test_arrivals_queue_and_wake_the_main_loop(tmp_path: Path) -> None:
    """Each readable file becomes one arrival and one wake-up; a vanished one becomes nothing."""
    wakes: list[int] = []
    intake = Intake(10**9, lambda: wakes.append(1))
    present = tmp_path / "a.png"
    present.write_bytes(b"png")
    intake.put(present, tmp_path, 3, present.stat().st_mtime_ns, settle=2.0)
    intake.put(tmp_path / "gone.png", tmp_path, 3, 0)
    [arrival] = intake.drain()
    assert arrival.sha256 == hashlib.sha256(b"png").hexdigest()
    assert arrival.settle_seconds == 2.0 and arrival.error is None
    assert wakes == [1] and intake.drain() == []


def test_unreadable_file_arrives_with_its_reason(tmp_path: Path) -> None:
    """A file the daemon may not read arrives without a hash but with the error, for its sidecar."""
    path = tmp_path / "secret.png"
    path.write_bytes(b"png")
    path.chmod(0o000)
    script = f"""
from pathlib import Path
from daemon.watching.intake import Intake
intake = Intake(10**9, lambda: None)
intake.put(Path({str(path)!r}), Path({str(tmp_path)!r}), 3, 0)
[arrival] = intake.drain()
print(arrival.sha256, arrival.error)
"""
    result = run_python_obeying_permissions(script)
    path.chmod(0o644)
    assert result.stdout.strip() == "None Permission denied", result.stderr


def test_recheck_hashes_on_the_intake_thread_and_reports_when_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """recheck() stats and hashes away from the caller's thread; busy() holds until it arrives."""
    hashed_on: list[str] = []
    release = threading.Event()
    real_key = intake_module.content_key

    def slow_key(path: Path, size: int, mtime_ns: int, max_bytes: int) -> str:
        hashed_on.append(threading.current_thread().name)
        release.wait(10)
        return real_key(path, size, mtime_ns, max_bytes)

    monkeypatch.setattr(intake_module, "content_key", slow_key)
    wakes: list[int] = []
    intake = Intake(10**9, lambda: wakes.append(1))
    changed = tmp_path / "changed.png"
    changed.write_bytes(b"new content")
    intake.recheck(changed, tmp_path)  # returns while the hash is still waiting
    assert intake.busy()
    release.set()
    intake.close()
    [arrival] = intake.drain()
    assert arrival.path == changed and arrival.sha256 == hashlib.sha256(b"new content").hexdigest()
    assert hashed_on and hashed_on[0].startswith("intake-recheck")
    assert not intake.busy() and wakes


def test_recheck_of_a_vanished_or_odd_path_arrives_as_nothing(tmp_path: Path) -> None:
    """A file gone, or now a folder, gives no arrival, but still wakes the loop and ends busy()."""
    wakes: list[int] = []
    intake = Intake(10**9, lambda: wakes.append(1))
    (tmp_path / "now-a-folder.png").mkdir()
    intake.recheck(tmp_path / "gone.png", tmp_path)
    intake.recheck(tmp_path / "now-a-folder.png", tmp_path)
    deadline = time.monotonic() + 10
    while intake.busy() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not intake.busy() and len(wakes) == 2
    assert intake.drain() == []
    intake.close()


def test_close_finishes_the_running_recheck_and_cancels_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() waits for the recheck under way, drops the queued one, and leaves busy() false."""
    started, release = threading.Event(), threading.Event()
    real_key = intake_module.content_key

    def held_key(path: Path, size: int, mtime_ns: int, max_bytes: int) -> str:
        started.set()
        release.wait(10)
        return real_key(path, size, mtime_ns, max_bytes)

    monkeypatch.setattr(intake_module, "content_key", held_key)
    intake = Intake(10**9, lambda: None)
    running, queued = tmp_path / "running.png", tmp_path / "queued.png"
    running.write_bytes(b"one")
    queued.write_bytes(b"two")
    intake.recheck(running, tmp_path)
    intake.recheck(queued, tmp_path)
    assert started.wait(10)  # the first is under way; the second waits behind it
    threading.Timer(0.2, release.set).start()
    intake.close()
    assert [arrival.path for arrival in intake.drain()] == [running]
    assert not intake.busy()
