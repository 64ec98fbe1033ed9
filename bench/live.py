"""A real `ocr-inbox run` for benchmarks: start it, drop files, follow its log cheaply.

The daemon is started exactly as the end-to-end tests start it
(harness.driver.start_daemon), but at log level info and with a log
follower that reads only new bytes and indexes events by name and file, so
waiting for 10,000 outcomes does not cost the CPU the daemon is measured on.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.driver import Daemon, start_daemon
from harness.inbox import drop as drop_file

POLL_SECONDS = 0.2


def drop(path: Path, data: bytes) -> float:
    """Write `data` under a hidden temp name and rename it into place; the wall time of the rename.

    Careful tools write this way, so the file is complete the moment it
    appears and the drop time is exact.
    """
    drop_file(path, data)
    return time.time()


def settings_for(
    inbox: Path,
    state: Path,
    *,
    chain: list[str],
    models: dict[str, dict[str, Any]] | None = None,
    settle_seconds: float = 2.0,
    **sections: dict[str, Any],
) -> dict[str, Any]:
    """Daemon settings for a benchmark: defaults except the named inbox, state and chain."""
    settings: dict[str, Any] = {
        "watch": {"inboxes": [str(inbox)], "settle_seconds": settle_seconds},
        "state": {"dir": str(state)},
        "worker": {"chain": chain},
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": 0},
        "log": {"level": "info", "format": "json"},
    }
    if models:
        settings["models"] = models
    for name, values in sections.items():
        settings.setdefault(name, {}).update(values)
    return settings


@dataclass
class LogFollower:
    """Reads a JSON-lines log as it grows; events indexed by name, and by name and file."""

    path: Path
    offset: int = 0
    by_event: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    by_file: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def poll(self) -> None:
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete, _, _ = chunk.rpartition(b"\n")
        if not complete:
            return
        self.offset += len(complete) + 1
        for line in complete.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a traceback or a library's plain-text warning
            if not isinstance(record, dict) or "event" not in record:
                continue
            name = str(record["event"])
            self.by_event[name].append(record)
            subject = record.get("file") or record.get("path")
            if subject is not None:
                # The first record per file: a benchmark drops each file once.
                self.by_file.setdefault((name, str(subject)), record)

    def count(self, event: str) -> int:
        return len(self.by_event.get(event, ()))

    def first(self, event: str, subject: Path | str) -> dict[str, Any] | None:
        return self.by_file.get((event, str(subject)))


class BenchDaemon:
    """One running daemon and its log."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.log = LogFollower(daemon.log_path, offset=daemon.log_path.stat().st_size)
        self.inbox = daemon.inbox

    @property
    def pid(self) -> int:
        return self.daemon.process.pid

    def wait(
        self,
        event: str,
        count: int = 1,
        *,
        timeout: float,
        subject: Path | None = None,
        poll: float = POLL_SECONDS,
    ) -> None:
        """Wait until `count` `event` records (or one for `subject`) are in the log."""
        deadline = time.monotonic() + timeout
        while True:
            self.log.poll()
            if subject is not None:
                if self.log.first(event, subject) is not None:
                    return
            elif self.log.count(event) >= count:
                return
            if self.daemon.process.poll() is not None:
                raise RuntimeError(
                    f"the daemon exited ({self.daemon.process.returncode}) before {event}:\n"
                    + self.daemon.log_text()[-3000:]
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"timed out after {timeout:.0f} s waiting for {count} x {event} "
                    f"(saw {self.log.count(event)}):\n" + self.daemon.log_text()[-3000:]
                )
            time.sleep(poll)

    def peak_rss_bytes(self) -> int | None:
        """The supervisor's peak resident memory so far (VmHWM, kept by the kernel)."""
        return peak_rss_of(self.pid)

    def stop(self) -> None:
        with contextlib.suppress(AssertionError):
            self.daemon.stop(timeout=60)
        if self.daemon.process.poll() is None:
            self.daemon.kill()


def start(root: Path, settings: dict[str, Any]) -> BenchDaemon:
    """`ocr-inbox run` on these settings; its settings file and log go in `root`."""
    root.mkdir(parents=True, exist_ok=True)
    inbox = Path(settings["watch"]["inboxes"][0])
    return BenchDaemon(start_daemon(root, settings, inbox=inbox))


@contextlib.contextmanager
def running(
    root: Path, settings: dict[str, Any], *, ready_timeout: float = 300.0
) -> Iterator[BenchDaemon]:
    """A daemon with its model loaded (after `daemon.ready`), stopped on the way out."""
    daemon = start(root, settings)
    try:
        daemon.wait("daemon.ready", timeout=ready_timeout)
        yield daemon
    finally:
        daemon.stop()


def peak_rss_of(pid: int) -> int | None:
    """A process's peak resident memory so far (VmHWM, kept by the kernel); None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None
