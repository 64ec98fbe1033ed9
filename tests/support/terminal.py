"""Run the command line with its stdout on a pseudo-terminal, as a user at a shell sees it.

daemon/logs.py chooses readable text or JSON by whether stdout is a terminal,
so the terminal's side can only be tested with a real one (a pty).
"""

from __future__ import annotations

import contextlib
import os
import pty
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from harness.driver import daemon_env


@dataclass(frozen=True, slots=True)
class TerminalRun:
    returncode: int
    terminal: str  # what reached the pty (stdout)
    stderr: str


def run_cli_on_terminal(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> TerminalRun:
    """`python -m daemon ARGS...` with stdout on a pty and stderr captured apart."""
    primary, secondary = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        # Read while the child runs: a full pty buffer would block its writes.
        with contextlib.suppress(OSError):  # EIO once the child's side is closed
            while chunk := os.read(primary, 65536):
                chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        with subprocess.Popen(
            [sys.executable, "-m", "daemon", *args],
            cwd=cwd,
            env=daemon_env(env),
            stdin=subprocess.DEVNULL,
            stdout=secondary,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:
            os.close(secondary)
            secondary = -1
            _, stderr = process.communicate(timeout=timeout)
        reader.join(timeout=10)
    finally:
        if secondary >= 0:
            os.close(secondary)
        os.close(primary)
    return TerminalRun(process.returncode, b"".join(chunks).decode(errors="replace"), stderr)
