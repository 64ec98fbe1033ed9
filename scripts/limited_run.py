"""Run a command under a time limit, its output appended to a log; read JSON lines back from it.

The command gets a process group of its own, so a stop at the limit reaches
everything it started (the daemon's spawned workers, pytest's children).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

STOP_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class Finished:
    code: int | None  # None: stopped at its time limit
    output: str  # what this command wrote (the log may hold earlier commands too)


def run(
    command: Sequence[str],
    *,
    limit: float,
    log: Path,
    cwd: Path,
    env: dict[str, str] | None = None,
) -> Finished:
    """Run `command`; at `limit` seconds, SIGTERM its whole group, then SIGKILL."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        sink.write(f"$ {shlex.join(command)}\n".encode())
        sink.flush()
        start = sink.tell()
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code: int | None = process.wait(timeout=max(limit, 1.0))
        except subprocess.TimeoutExpired:
            stop_group(process)
            code = None
            sink.write(f"\n[stopped at the time limit of {limit:.0f} s]\n".encode())
    with log.open("rb") as source:
        source.seek(start)
        output = source.read().decode("utf-8", errors="replace")
    return Finished(code, output)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL it if it has not ended after a grace."""
    for stop in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, stop)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=STOP_GRACE_SECONDS)
            return
        except subprocess.TimeoutExpired:
            continue


def json_lines(text: str) -> list[dict[str, object]]:
    """Every line of `text` that is a JSON object, in order."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            found.append(record)
    return found


def events(text: str, name: str) -> list[dict[str, object]]:
    """The daemon's JSON log records of event `name`."""
    return [record for record in json_lines(text) if record.get("event") == name]


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
