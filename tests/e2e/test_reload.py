"""SIGHUP re-reads the settings file of the running daemon: good settings apply, bad ones are refused.

The daemon runs with a slow fake model so that files are still queued when
the signal comes; the test then checks that each is done exactly once.
"""

from __future__ import annotations

import re
import signal
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.driver import Daemon, outputs_of, read_json, running_daemon, write_settings
from harness.drops import drop_png, faulty_settings
from tests.support.datagram import socket_path
from tests.support.notify_socket import NotifySocket

pytestmark = pytest.mark.slow

SLOW_PAGE_SECONDS = 1.0
FAST_PAGE_SECONDS = 0.05


def slow_then_fast(root: Path) -> dict[str, Any]:
    """Chain ["slow"]; a model "fast" is defined but unused until the reload names it."""
    settings = faulty_settings(
        root / "inbox",
        root / "state",
        chain={
            "slow": {"page_seconds": SLOW_PAGE_SECONDS},
            "fast": {"page_seconds": FAST_PAGE_SECONDS},
        },
    )
    settings["worker"]["chain"] = ["slow"]
    return settings


def reload(daemon: Daemon, settings: dict[str, Any]) -> None:
    write_settings(daemon.config, settings)
    daemon.process.send_signal(signal.SIGHUP)


def test_good_settings_apply_and_no_queued_file_is_lost(tmp_path: Path) -> None:
    """SIGHUP mid-queue: a new inbox and chain apply, the busy worker finishes first, each file is done once."""
    settings = slow_then_fast(tmp_path)
    notify_path = socket_path(tmp_path, "notify.sock")
    second_inbox = tmp_path / "second"
    with (
        NotifySocket(notify_path) as notify,
        running_daemon(tmp_path, settings, env={"NOTIFY_SOCKET": str(notify_path)}) as daemon,
    ):
        daemon.wait_ready()
        queued = [drop_png(daemon.inbox / f"queued-{index}.png", index) for index in range(6)]
        for path in queued:
            daemon.wait_for("watch.stable", path=str(path))
        [busy_worker] = daemon.find("worker.started")
        # The first file is in the slow worker's hands; the rest wait in the queue.
        daemon.wait_for("file.done", count=1)

        new = slow_then_fast(tmp_path)
        new["watch"]["inboxes"].append(str(second_inbox))
        new["worker"]["chain"] = ["fast"]
        reload(daemon, new)
        [reloaded] = daemon.wait_for("settings.reloaded")
        arrivals = [drop_png(second_inbox / f"new-{index}.png", 100 + index) for index in range(2)]
        daemon.wait_for("file.done", count=len(queued) + len(arrivals), timeout=120)
        time.sleep(1.0)  # a second handling of any file would show up by now
        done = daemon.find("file.done")
        events = daemon.events()
        assert daemon.stop() == 0

    assert Counter(record["file"] for record in done) == Counter(
        str(path) for path in [*queued, *arrivals]
    )
    assert not daemon.find("file.failed")
    assert not daemon.find("file.attempt_failed")
    for path in [*queued, *arrivals]:
        assert set(outputs_of(path)) == {"md", "json"}
    # The old worker was retired (not killed) once its file was finished, and
    # a worker for the new chain took over.
    exits = daemon.find("worker.exited", pid=busy_worker["pid"])
    assert [record["reason"] for record in exits] == ["retired"]
    after = events.index(reloaded)
    later = events[after:]
    finished_in_hand = [
        i for i, r in enumerate(later) if r["event"] == "file.done" and r["model"] == "slow"
    ]
    [retired_at] = [
        i
        for i, r in enumerate(later)
        if r.get("pid") == busy_worker["pid"] and r["event"] == "worker.exited"
    ]
    assert finished_in_hand and finished_in_hand[-1] < retired_at, "not finished before retiring"
    assert any(
        r["event"] == "worker.started" and r["model"] == "fast" for r in later[retired_at:]
    ), "no worker for the new chain"
    by_model = Counter(record["model"] for record in done)
    # At most the file in hand plus one raced in before the signal was handled
    # went to the old model; every later one, and the new inbox, to the new one.
    assert by_model["fast"] >= len(queued) + len(arrivals) - 3
    assert {r["model"] for r in done if r["file"].startswith(str(second_inbox))} == {"fast"}
    for path in arrivals:
        assert read_json(outputs_of(path)["json"])["model"]["name"] == "fast"
    # systemd was told: RELOADING=1, then READY=1 again; STATUS counted the queue.
    fields = [message.fields for message in notify.snapshot()]
    assert any(
        re.search(r"; [1-9][0-9]* file\(s\) waiting$", f.get("STATUS", "")) for f in fields
    ), fields
    reloading = next(i for i, f in enumerate(fields) if f.get("RELOADING") == "1")
    assert any(f.get("READY") == "1" for f in fields[reloading:])


def test_broken_settings_keep_the_old_ones_and_the_daemon_serving(tmp_path: Path) -> None:
    """SIGHUP with an invalid file logs settings.reload_failed naming the key; the old settings stay."""
    settings = faulty_settings(tmp_path / "inbox", tmp_path / "state")
    second_inbox = tmp_path / "second"
    second_inbox.mkdir()
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready()
        broken = faulty_settings(tmp_path / "inbox", tmp_path / "state")
        broken["watch"]["inboxes"].append(str(second_inbox))
        broken["watch"]["settle_seconds"] = "soon"
        reload(daemon, broken)
        [failed] = daemon.wait_for("settings.reload_failed")

        # Not TOML at all: refused the same way.
        daemon.config.write_text("[watch\ninboxes = ")
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for("settings.reload_failed", count=2)

        kept = drop_png(daemon.inbox / "still-served.png", seed=1)
        ignored = drop_png(second_inbox / "not-watched.png", seed=2)
        daemon.wait_for("file.done", file=str(kept))
        time.sleep(1.5)  # settle window (0.3 s) plus margin: the new inbox is not watched
        assert daemon.process.poll() is None
        assert daemon.stop() == 0

    assert "watch.settle_seconds" in failed["error"]
    assert not daemon.find("settings.reloaded")
    assert outputs_of(ignored) == {}
    second = daemon.find("settings.reload_failed")[1]
    assert "not valid TOML" in second["error"]


def test_reload_dropping_a_files_fallback_model_restarts_it_at_the_new_chain(
    tmp_path: Path,
) -> None:
    """A queued file waiting for a fallback model that the reload removes is done by the new chain."""
    settings = faulty_settings(
        tmp_path / "inbox",
        tmp_path / "state",
        chain={
            "first": {"rules": [{"match": "empty-*", "fault": "empty"}]},
            # Slow to load, so the file is still queued for it when the signal comes.
            "second": {"load_seconds": 5.0},
        },
    )
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready()
        handed_down = drop_png(daemon.inbox / "empty-1.png", seed=1)
        daemon.wait_for("file.fallback", file=str(handed_down))
        reload(daemon, faulty_settings(tmp_path / "inbox", tmp_path / "state", chain={"third": {}}))
        daemon.wait_for("settings.reloaded")
        [done] = daemon.wait_for("file.done", file=str(handed_down))
        assert daemon.process.poll() is None
        assert daemon.stop() == 0

    assert done["model"] == "third"
    assert not daemon.find("model.loaded", model="second")


def worker_up_series(daemon: Daemon) -> dict[str, float]:
    with urllib.request.urlopen(daemon.url("/metrics"), timeout=10) as reply:
        text = reply.read().decode()
    return {
        sample.labels["worker"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "ocr_inbox_worker_up"
    }


def test_reload_to_fewer_workers_retires_the_extra_slot_without_a_down_series(
    tmp_path: Path,
) -> None:
    """worker.count 2 -> 1: the second worker is retired and its worker_up series removed, not left at 0."""
    settings = faulty_settings(tmp_path / "inbox", tmp_path / "state")
    settings["worker"]["count"] = 2
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_for("model.loaded", count=2)
        assert worker_up_series(daemon) == {"0": 1.0, "1": 1.0}
        settings["worker"]["count"] = 1
        reload(daemon, settings)
        daemon.wait_for("settings.reloaded")
        # Both are replaced (the worker settings changed); only slot 0 comes back.
        daemon.wait_for("model.loaded", count=3)
        daemon.wait_for("worker.exited", count=2)
        kept = drop_png(daemon.inbox / "after.png", seed=1)
        daemon.wait_for("file.done", file=str(kept))
        series = worker_up_series(daemon)
        assert daemon.stop() == 0

    # A series stuck at 0 would fire OcrInboxWorkerDown for a worker nobody wants.
    assert series == {"0": 1.0}
    assert [r["reason"] for r in daemon.find("worker.exited")] == ["retired", "retired"]
