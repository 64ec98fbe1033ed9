"""Several daemons on one inbox through a shared PostgreSQL journal: each file once, a dead daemon's files taken over."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.driver import Daemon, outputs_of, read_json, start_daemon
from harness.drops import drop_png, faulty_settings

LEASE_SECONDS = 3.0


def _start(root: Path, inbox: Path, url: str, node: str, page_seconds: float) -> Daemon:
    root.mkdir(parents=True, exist_ok=True)
    settings = faulty_settings(inbox, root / "state", page_seconds=page_seconds)
    # As on a share: no inotify events, polling only.
    settings["watch"].update({"mode": "polling", "poll_interval_seconds": 0.3})
    settings["state"].update({"url": url, "node": node, "lease_seconds": LEASE_SECONDS})
    return start_daemon(root, settings, inbox=inbox)


@pytest.fixture
def fleet(tmp_path: Path, pg_url: str) -> Iterator[tuple[Path, str, list[Daemon]]]:
    """An inbox, a fresh shared journal, and the daemons a test starts on them (stopped after)."""
    started: list[Daemon] = []
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    yield inbox, pg_url, started
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.kill()


def _done_across(daemons: list[Daemon]) -> list[str]:
    return [record["file"] for daemon in daemons for record in daemon.find("file.done")]


def _wait_all_done(daemons: list[Daemon], count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while len(set(_done_across(daemons))) < count:
        assert time.monotonic() < deadline, (
            f"only {len(set(_done_across(daemons)))} of {count} done"
        )
        time.sleep(0.2)


def test_three_daemons_do_each_file_of_a_burst_exactly_once(
    fleet: tuple[Path, str, list[Daemon]], tmp_path: Path
) -> None:
    """Three daemons polling one inbox: one output pair and one file.done per file across their logs."""
    inbox, url, daemons = fleet
    for name in ("n1", "n2", "n3"):
        daemons.append(_start(tmp_path / name, inbox, url, name, page_seconds=0.05))
    for daemon in daemons:
        daemon.wait_ready()
    files = [drop_png(inbox / f"scan-{n:02d}.png", seed=9000 + n) for n in range(24)]
    _wait_all_done(daemons, len(files))
    time.sleep(LEASE_SECONDS)  # room for a late duplicate to show itself
    done = _done_across(daemons)
    assert sorted(done) == sorted(str(path) for path in files)  # each exactly once
    nodes = set()
    for path in files:
        outputs = outputs_of(path)
        assert set(outputs) == {"md", "json"}, path
        nodes.add(read_json(outputs["json"])["node"])
    assert nodes <= {"n1", "n2", "n3"}
    assert not list(inbox.glob("*.error.json"))


def test_a_killed_daemons_files_are_taken_over(
    fleet: tuple[Path, str, list[Daemon]], tmp_path: Path
) -> None:
    """kill -9 of a daemon in the middle of a file: its lease runs out, the other daemon does the file."""
    inbox, url, daemons = fleet
    slow = _start(tmp_path / "slow", inbox, url, "slow", page_seconds=30.0)
    daemons.append(slow)
    slow.wait_ready()
    path = drop_png(inbox / "held.png", seed=9100)
    slow.wait_for("file.dispatched")
    other = _start(tmp_path / "other", inbox, url, "other", page_seconds=0.05)
    daemons.append(other)
    other.wait_ready()
    slow.kill()
    [record] = other.wait_for("file.taken_over", timeout=60)
    assert record["from_node"] == "slow"
    other.wait_for("file.done", file=str(path), timeout=60)
    assert read_json(outputs_of(path)["json"])["node"] == "other"
    assert other.metric("ocr_inbox_leases_taken_over_total", node="other") == 1
