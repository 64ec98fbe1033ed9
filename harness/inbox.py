"""Dropping files into a running daemon's inbox and waiting for what became of each."""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path
from typing import Any

from harness.driver import DEFAULT_TIMEOUT, Daemon, wait_until

OUTCOME_EVENTS = ("file.done", "file.failed", "file.vanished")


def drop(path: Path, data: bytes) -> Path:
    """Write `data` via a hidden temp name and rename it into place, as careful tools do."""
    temp = path.with_name(f".drop-{secrets.token_hex(4)}.part")  # short: `path` may be 255 bytes
    temp.write_bytes(data)
    temp.rename(path)
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def outcomes_of(daemon: Daemon, path: Path) -> list[dict[str, Any]]:
    """The per-file outcome records (done, failed, vanished) logged for `path`, oldest first."""
    return [
        record
        for record in daemon.events()
        if record.get("event") in OUTCOME_EVENTS and record.get("file") == str(path)
    ]


def wait_outcome(
    daemon: Daemon, path: Path, *, count: int = 1, timeout: float = DEFAULT_TIMEOUT
) -> dict[str, Any]:
    """Wait for the `count`-th outcome record of `path` and return it."""

    def arrived() -> bool:
        if daemon.process.poll() is not None:
            raise AssertionError(
                f"daemon exited ({daemon.process.returncode}) before {path.name} had an outcome:\n"
                + daemon.log_text()[-4000:]
            )
        return len(outcomes_of(daemon, path)) >= count

    wait_until(
        arrived,
        timeout=timeout,
        explain=lambda: f"no outcome for {path.name}:\n" + daemon.log_text()[-4000:],
    )
    return outcomes_of(daemon, path)[count - 1]


def peak_rss_bytes(pid: int) -> int:
    """A live process's peak resident memory (VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    if found is None:
        raise AssertionError(f"no VmHWM for pid {pid}:\n{status}")
    return int(found.group(1)) * 1024


class ReadWatch:
    """Counts the times a file is closed after reading (inotify IN_CLOSE_NOWRITE), from outside.

    The daemon reads an input twice: the supervisor hashes it, then the worker
    reads it to open the document. After the second close the worker holds the
    bytes it will recognise, so a test can change the file under it knowing
    exactly which content was read.
    """

    def __init__(self, path: Path) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers.inotify import InotifyObserver

        self.path = path
        self._closes = 0
        target = str(path)
        counter = self

        class _Handler(FileSystemEventHandler):
            def on_closed_no_write(self, event: FileSystemEvent) -> None:
                if event.src_path == target:
                    counter._closes += 1

        self._observer = InotifyObserver()
        self._observer.schedule(_Handler(), str(path.parent), recursive=False)

    def __enter__(self) -> ReadWatch:
        self._observer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._observer.stop()
        self._observer.join(timeout=10)

    def wait(self, closes: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until the file has been read and closed `closes` times."""
        wait_until(lambda: self._closes >= closes, timeout=timeout, interval=0.01)
