"""Run the real daemon as a subprocess on a temporary inbox, and watch what it does.

The daemon logs JSON lines to stdout; the harness sends them to a file and
reads them back, so tests wait for events ("file.done", "daemon.ready") rather
than for time to pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import tomli_w

from daemon.journal.interface import FileKey
from daemon.outputs.paths import ERROR_SUFFIX, FORMAT_SUFFIXES
from daemon.settings import inbox_root

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TIMEOUT = 90.0


def write_settings(path: Path, settings: dict[str, Any]) -> Path:
    path.write_text(tomli_w.dumps(settings), encoding="utf-8")
    return path


def base_settings(inbox: Path, state_dir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """Settings for a test daemon: fast settling, metrics on a free port."""
    settings: dict[str, Any] = {
        "watch": {"inboxes": [str(inbox)], "settle_seconds": 0.3, "rescan_interval_seconds": 30.0},
        "state": {"dir": str(state_dir)},
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": 0},
        "log": {"level": "debug", "format": "json"},
    }
    for name, values in sections.items():
        settings.setdefault(name, {}).update(values)
    return settings


def daemon_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCR_INBOX_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    env.pop("NOTIFY_SOCKET", None)
    env.update(extra or {})
    return env


@dataclass
class Daemon:
    """A running `ocr-inbox run` process and its files."""

    root: Path
    inbox: Path
    state_dir: Path
    config: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    _offset: int = 0
    _events: list[dict[str, Any]] = field(default_factory=list)

    # --- logs ----------------------------------------------------------------

    def events(self) -> list[dict[str, Any]]:
        """Every JSON log line so far (non-JSON lines, e.g. tracebacks, are skipped)."""
        with self.log_path.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        complete, _, _ = chunk.rpartition(b"\n")
        if complete:
            self._offset += len(complete) + 1
            for line in complete.splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict):
                        self._events.append(record)
        return list(self._events)

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def find(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            record
            for record in self.events()
            if record.get("event") == event
            and all(record.get(key) == value for key, value in fields.items())
        ]

    def wait_for(
        self,
        event: str,
        *,
        count: int = 1,
        timeout: float = DEFAULT_TIMEOUT,
        where: Callable[[dict[str, Any]], bool] | None = None,
        **fields: Any,
    ) -> list[dict[str, Any]]:
        """Wait until `count` log records match; fail with the log tail if they do not."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.find(event, **fields) if where is None or where(r)]
            if len(found) >= count:
                return found
            if self.process.poll() is not None:
                raise AssertionError(
                    f"daemon exited ({self.process.returncode}) before {count}x {event} {fields}:\n"
                    + self.log_text()[-4000:]
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for {count}x {event} {fields} (saw {len(found)}):\n"
                    + self.log_text()[-4000:]
                )
            time.sleep(0.1)

    def wait_ready(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.wait_for("daemon.ready", timeout=timeout)

    def wait_for_rescans(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until `count` full scans have started and finished after this call.

        One more than `count` finished scans are awaited: the scan running now
        may have passed a file before the caller's last change.
        """
        finished = len(self.find("watch.scan_finished"))
        self.wait_for("watch.scan_finished", count=finished + count + 1, timeout=timeout)

    @property
    def metrics_port(self) -> int:
        return int(self.wait_for("metrics.serving")[0]["port"])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.metrics_port}{path}"

    # --- state the daemon exposes ----------------------------------------------

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the daemon's /metrics (0 when the series does not exist yet)."""
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(self.url("/metrics"), timeout=10) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0

    def journal_key(self, path: Path) -> FileKey:
        """How the journal knows `path`: by the configured inbox that holds it."""
        settings = tomllib.loads(self.config.read_text("utf-8"))
        configured = settings.get("watch", {})
        for inbox in configured.get("inboxes", [str(self.inbox)]):
            root = inbox_root(self.root / inbox)  # relative inboxes are the daemon's cwd's
            if path.is_relative_to(root):
                return FileKey.of(path, root)
        for name, table in settings.get("inboxes", {}).items():  # [inboxes.NAME] profiles
            root = inbox_root(self.root / table["path"])
            if path.is_relative_to(root):
                return FileKey.of(path, root, name)
        raise AssertionError(f"{path} is in none of the daemon's inboxes")

    def journal_state(self, path: Path) -> str | None:
        """The journal's state for `path` (pending, done, failed), read beside the running daemon."""
        key = self.journal_key(path)
        with sqlite3.connect(self.state_dir / "journal.sqlite3", timeout=30) as db:
            row = db.execute(
                "SELECT state FROM files WHERE inbox = ? AND relative = ?",
                (key.inbox, key.relative),
            ).fetchone()
        return None if row is None else str(row[0])

    # --- life ------------------------------------------------------------------

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                "daemon did not stop after SIGTERM:\n" + self.log_text()[-4000:]
            ) from None

    def kill(self) -> None:
        """SIGKILL, as the kernel or an impatient operator would."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


def start_daemon(
    root: Path,
    settings: dict[str, Any] | None = None,
    *,
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
    inbox: Path | None = None,
    log_name: str = "daemon.log",
    argv_prefix: Sequence[str] = (),
) -> Daemon:
    """Start `ocr-inbox run`; `argv_prefix` runs it under a wrapper (e.g. setpriv, prlimit)."""
    inbox = inbox or root / "inbox"
    state_dir = root / "state"
    inbox.mkdir(parents=True, exist_ok=True)
    config = write_settings(root / "settings.toml", settings or base_settings(inbox, state_dir))
    log_path = root / log_name
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [
                *argv_prefix,
                sys.executable,
                "-m",
                "daemon",
                "run",
                "--config",
                str(config),
                *(args or []),
            ],
            cwd=root,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=daemon_env(env),
        )
    return Daemon(
        root, inbox, state_dir, config, log_path, process, _offset=log_path.stat().st_size
    )


@contextlib.contextmanager
def running_daemon(
    root: Path, settings: dict[str, Any] | None = None, **kwargs: Any
) -> Iterator[Daemon]:
    daemon = start_daemon(root, settings, **kwargs)
    try:
        yield daemon
    finally:
        if daemon.process.poll() is None:
            with contextlib.suppress(AssertionError):
                daemon.stop(timeout=30)


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    module: str = "daemon",
) -> subprocess.CompletedProcess[str]:
    """`python -m daemon ARGS...` (or another `module`, e.g. a benchmark script) to completion."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=daemon_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def record_time(record: dict[str, Any]) -> float:
    """A log record's timestamp (ISO 8601, UTC) as seconds since the epoch."""
    return datetime.fromisoformat(str(record["timestamp"])).timestamp()


def wait_until(
    condition: Callable[[], bool],
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.1,
    *,
    explain: Callable[[], str] | None = None,
) -> None:
    """Poll `condition` until it holds; on timeout fail with `explain()` (e.g. the log tail)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            detail = explain() if explain is not None else "condition not met"
            raise AssertionError(f"{detail} (waited {timeout} s)")
        time.sleep(interval)


def outputs_of(path: Path) -> dict[str, Path]:
    """The daemon's outputs that exist for an input (keys: md, json, txt, hocr, pdf, error)."""
    found = {}
    for key, suffix in (*FORMAT_SUFFIXES.items(), ("error", ERROR_SUFFIX)):
        candidate = path.with_name(path.name + suffix)
        if candidate.exists():
            found[key] = candidate
    return found


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
