"""The running daemon logs to journald natively when systemd connected its stdout to the journal.

systemd sets $JOURNAL_STREAM to "device:inode" of the stream it gave the
service as stdout. These tests give the daemon a file as stdout and point
$JOURNAL_STREAM at that file, which is exactly what the daemon checks. The
first collects the entries on a datagram socket held by the test; the second
runs Debian's real systemd-journald (in a private mount namespace, so it
touches nothing of the host) and queries it with journalctl.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.observing import systemd_journal as journald
from harness.driver import Daemon, running_daemon, wait_until
from harness.drops import drop_png, faulty_settings
from tests.support.datagram import socket_path
from tests.support.journal_socket import JournalSocket
from tests.support.tools import require_tool, unavailable

pytestmark = pytest.mark.slow

JOURNALD_CANDIDATES = ("/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald")


def journal_env(stdout: Path, journal_socket: Path) -> dict[str, str]:
    """What systemd would set for a service whose stdout is `stdout`, plus our socket override."""
    stdout.touch()
    info = stdout.stat()
    return {
        "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}",
        journald.SOCKET_ENV: str(journal_socket),
    }


def settings_with_a_failing_file(root: Path) -> dict[str, Any]:
    return faulty_settings(
        root / "inbox",
        root / "state",
        rules=[{"match": "broken-*", "fault": "bad_input"}],
        # Info, as a service runs: debug records would only add noise to the journal.
    ) | {"log": {"level": "info", "format": "auto"}}


def test_daemon_sends_records_with_fields_to_the_journal_socket(tmp_path: Path) -> None:
    """file.done and file.failed arrive as entries with FILE, MODEL, OUTCOME, SECONDS; stdout stays empty."""
    settings = settings_with_a_failing_file(tmp_path)
    log_path = tmp_path / "daemon.log"
    with JournalSocket(socket_path(tmp_path, "journal.sock")) as journal:
        env = journal_env(log_path, journal.path)
        with running_daemon(tmp_path, settings, env=env) as daemon:
            journal.wait_for(lambda e: e.get("EVENT") == "daemon.ready")
            good = drop_png(daemon.inbox / "good.png", seed=1)
            bad = drop_png(daemon.inbox / "broken-1.png", seed=2)
            journal.wait_for(lambda e: e.get("EVENT") in ("file.done", "file.failed"), count=2)
            assert daemon.stop() == 0
        entries = journal.snapshot()

    assert journal.errors == []
    [done] = [e for e in entries if e.get("EVENT") == "file.done"]
    [failed] = [e for e in entries if e.get("EVENT") == "file.failed"]
    assert (done["FILE"], done["OUTCOME"], done["MODEL"]) == (str(good), "done", "fake")
    assert float(done["SECONDS"]) > 0
    assert (done["PRIORITY"], done["SYSLOG_IDENTIFIER"], done["ROLE"]) == (
        "6",
        "ocr-inbox",
        "supervisor",
    )
    assert (failed["FILE"], failed["OUTCOME"], failed["REASON"]) == (
        str(bad),
        "failed",
        "bad_input",
    )
    assert failed["PRIORITY"] == "3"
    # MESSAGE is still the whole JSON line, for `-o cat | jq`.
    assert json.loads(done["MESSAGE"])["file"] == str(good)
    # The worker (a spawned process with the same stdout) logs natively too.
    assert any(e.get("ROLE", "").startswith("worker-") for e in entries)
    assert any(e.get("EVENT") == "daemon.stopped" for e in entries)
    assert _json_lines(log_path) == []


def test_daemon_falls_back_to_stdout_without_a_journal_socket(tmp_path: Path) -> None:
    """With $JOURNAL_STREAM set but no socket listening, every record still reaches stdout as JSON."""
    settings = settings_with_a_failing_file(tmp_path)
    log_path = tmp_path / "daemon.log"
    env = journal_env(log_path, tmp_path / "no-such-socket")
    with running_daemon(tmp_path, settings, env=env) as daemon:
        daemon.wait_ready()
        good = drop_png(daemon.inbox / "good.png", seed=1)
        daemon.wait_for("file.done", file=str(good))
        assert daemon.stop() == 0

    assert daemon.find("daemon.stopped")
    assert "cannot log to the journal socket" in daemon.log_text()


def _json_lines(path: Path) -> list[dict[str, Any]]:
    found = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            found.append(json.loads(line))
    return found


# --- the real systemd-journald ----------------------------------------------------


# Runs in a private mount namespace: /run (a tmpfs) hides the host's runtime
# files, then the test's directories take the places journald insists on.
JOURNALD_SCRIPT = """
set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd /run/log
mount --bind "$1" /run/systemd
mount --bind "$2" /run/log
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
exec "$3"
"""


@pytest.fixture
def real_journald(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A real systemd-journald; yields its native socket and the directory of its journal files."""
    if os.geteuid() != 0:
        unavailable("running systemd-journald in a mount namespace needs root")
    binary = next((path for path in JOURNALD_CANDIDATES if os.access(path, os.X_OK)), None)
    if binary is None:
        unavailable("systemd-journald is not installed")
    assert binary is not None
    unshare = require_tool("unshare")
    require_tool("journalctl")
    run_dir = tmp_path / "run-systemd"
    log_dir = tmp_path / "run-log"
    run_dir.mkdir()
    log_dir.mkdir()
    socket = socket_path(run_dir, "journal/socket")
    output = tmp_path / "journald.out"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [unshare, "-m", "sh", "-c", JOURNALD_SCRIPT, "sh", run_dir, log_dir, binary],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
    try:
        with contextlib.suppress(AssertionError):
            wait_until(lambda: socket.is_socket() or process.poll() is not None, timeout=60)
        if not socket.is_socket():
            unavailable(f"systemd-journald did not start: {output.read_text(errors='replace')}")
        yield socket, log_dir / "journal"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def journalctl(directory: Path, *args: str) -> list[dict[str, Any]]:
    """Entries of the test's journal matching `args`, as journalctl -o json prints them."""
    result = subprocess.run(
        [shutil.which("journalctl") or "journalctl", "-D", str(directory), "-o", "json", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # "-- No entries --" goes to stdout with -o json on some versions: only JSON lines count.
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def wait_for_entries(directory: Path, *args: str, count: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 90
    while True:
        entries = journalctl(directory, *args)
        if len(entries) >= count:
            return entries
        if time.monotonic() > deadline:
            raise AssertionError(f"journalctl {args}: {len(entries)} entries, wanted {count}")
        time.sleep(0.5)


def test_real_journald_filters_by_outcome(tmp_path: Path, real_journald: tuple[Path, Path]) -> None:
    """systemd-journald stores the daemon's fields: journalctl OUTCOME=failed finds the failed file."""
    socket, journal_dir = real_journald
    settings = settings_with_a_failing_file(tmp_path)
    env = journal_env(tmp_path / "daemon.log", socket)
    daemon: Daemon
    with running_daemon(tmp_path, settings, env=env) as daemon:
        wait_for_entries(journal_dir, "SYSLOG_IDENTIFIER=ocr-inbox", "EVENT=daemon.ready")
        good = drop_png(daemon.inbox / "good.png", seed=1)
        bad = drop_png(daemon.inbox / "broken-1.png", seed=2)
        wait_for_entries(journal_dir, "SYSLOG_IDENTIFIER=ocr-inbox", "EVENT=file.done")
        wait_for_entries(journal_dir, "SYSLOG_IDENTIFIER=ocr-inbox", "EVENT=file.failed")
        pid = daemon.process.pid
        assert daemon.stop() == 0

    [failed] = journalctl(journal_dir, "-t", "ocr-inbox", "OUTCOME=failed")
    [done] = journalctl(journal_dir, "-t", "ocr-inbox", "OUTCOME=done")
    assert (failed["FILE"], failed["REASON"], failed["PRIORITY"]) == (str(bad), "bad_input", "3")
    assert (done["FILE"], done["MODEL"], done["PRIORITY"]) == (str(good), "fake", "6")
    assert float(done["SECONDS"]) > 0
    # journald took the sender's credentials from the socket: the supervisor wrote these.
    assert failed["_PID"] == done["_PID"] == str(pid)
    assert done["_TRANSPORT"] == "journal"
    assert json.loads(done["MESSAGE"])["event"] == "file.done"
    # journalctl -p err: the failure, not the success.
    errors = journalctl(journal_dir, "-t", "ocr-inbox", "-p", "err")
    assert str(bad) in {entry.get("FILE") for entry in errors}
    assert str(good) not in {entry.get("FILE") for entry in errors}
    # The file's whole story, as docs/systemd.md asks for it: FILE or PATH names it.
    story = [
        entry["EVENT"]
        for entry in journalctl(journal_dir, "-t", "ocr-inbox", f"FILE={good}", "+", f"PATH={good}")
    ]
    assert story[0] == "watch.stable"
    assert story[-1] == "file.done"
    # Two values of one field are alternatives (as docs/systemd.md uses them).
    finished = journalctl(journal_dir, "-t", "ocr-inbox", "EVENT=file.done", "EVENT=file.failed")
    assert sorted(entry["FILE"] for entry in finished) == sorted([str(good), str(bad)])
    listed = subprocess.run(
        ["journalctl", "-D", str(journal_dir), "-t", "ocr-inbox", "-F", "EVENT"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert {"daemon.ready", "file.done", "file.failed", "model.loaded"} <= set(
        listed.stdout.split()
    )
