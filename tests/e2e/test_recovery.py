"""Each fault class through the running daemon: the action taken, the log line, the file's end.

The chain is made of fault-injection models: "flaky" fails on command (by file
name), "steady" never does. Every fault is real: the worker process exits,
segfaults, hangs, raises PyTorch's own messages or is SIGKILLed from outside.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest

from daemon.journal.interface import FileKey
from daemon.journal.sqlite import SqliteJournal
from harness.driver import (
    Daemon,
    base_settings,
    outputs_of,
    read_json,
    record_time,
    running_daemon,
    start_daemon,
    wait_until,
)
from harness.drops import drop_png

pytestmark = pytest.mark.slow


def drill(
    tmp_path: Path,
    flaky: dict[str, Any] | None = None,
    steady: dict[str, Any] | None = None,
    **sections: dict[str, Any],
) -> dict[str, Any]:
    """Settings with the chain ["flaky", "steady"] of fault-injection models.

    Generous K (max_fatal_failures) unless a test sets it: a file's faults move
    that file, not the whole daemon.
    """
    recovery = {"max_fatal_failures": 10, "attempts_per_model": 2, "stop_grace_seconds": 1.0}
    recovery.update(sections.pop("recovery", {}))
    settings = base_settings(
        tmp_path / "inbox",
        tmp_path / "state",
        worker={"chain": ["flaky", "steady"]},
        recovery=recovery,
        **sections,
    )
    settings["models"] = {
        "flaky": {"engine": "faulty", **(flaky or {})},
        "steady": {"engine": "faulty", **(steady or {})},
    }
    return settings


def rule(match: str, fault: str, probability: float = 1.0) -> dict[str, Any]:
    return {"match": match, "fault": fault, "probability": probability}


def journal_rows(state_dir: Path) -> dict[str, dict[str, Any]]:
    """path -> {state, attempts, trail} straight from the SQLite journal (inbox: state_dir/../inbox)."""
    journal = SqliteJournal.open(state_dir)
    try:
        rows = journal._db.execute("SELECT inbox, relative FROM files").fetchall()
        entries = [journal.get(FileKey(*row)) for row in rows]
    finally:
        journal.close()
    inbox = state_dir.parent / "inbox"
    return {
        str(inbox / entry.key.relative): {
            "state": entry.state.value,
            "attempts": entry.attempts,
            "trail": entry.trail,
        }
        for entry in entries
        if entry is not None
    }


def worker_pid(daemon: Daemon, slot: str = "0") -> int:
    """The pid of the newest worker in a slot, checked to be the daemon's child."""
    pid = int(daemon.wait_for("worker.started", slot=slot)[-1]["pid"])
    children = {child.pid for child in psutil.Process(daemon.process.pid).children()}
    assert pid in children
    return pid


# --- the worker dies or hangs on a file -------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "exit_code", "reason"),
    [
        ("crash", 70, "crash"),  # os._exit
        ("segfault", -signal.SIGSEGV, "crash"),
        ("cuda_fatal", 3, "cuda_fatal"),  # reported, then the worker's own exit code
        ("hang", -signal.SIGTERM, "hang"),  # past the page deadline: SIGTERM
        ("stuck", -signal.SIGKILL, "hang"),  # ignores SIGTERM: SIGKILL after the grace
    ],
)
def test_a_file_that_kills_the_worker_moves_on_after_attempts_per_model(
    tmp_path: Path, fault: str, exit_code: int, reason: str
) -> None:
    """The worker is replaced after each loss; after 2 losses the file is done by the next model."""
    settings = drill(
        tmp_path,
        flaky={"rules": [rule("poison-*", fault)]},
        limits={"page_deadline_seconds": 2.0},
    )
    inbox = tmp_path / "inbox"
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready()
        poison = drop_png(inbox / "poison-1.png", seed=1)
        done = daemon.wait_for("file.done", file=str(poison), timeout=120)[0]
        assert done["model"] == "steady"
        assert done["fallbacks"] == 1
        exits = daemon.find("worker.exited", slot="0")
        assert [(e["exit_code"], e["reason"]) for e in exits] == [(exit_code, reason)] * 2
        attempts = daemon.find("file.attempt_failed", file=str(poison))
        assert [(a["attempt"], a["of"], a["reason"]) for a in attempts] == [
            (1, 2, reason),
            (2, 2, reason),
        ]
        [moved] = daemon.find("file.fallback", file=str(poison))
        assert (moved["from_model"], moved["to_model"]) == ("flaky", "steady")
        if fault in ("hang", "stuck"):
            assert len(daemon.find("worker.hung", model="flaky")) == 2
        if fault == "stuck":
            assert len(daemon.find("worker.killed", why="did not stop in time")) == 2
        assert len(daemon.find("worker.restart_scheduled", slot="0")) == 2
        # The model was not demoted: the next file is still done by flaky.
        good = drop_png(inbox / "good-1.png", seed=2)
        assert daemon.wait_for("file.done", file=str(good))[0]["model"] == "flaky"
        assert not daemon.find("chain.fallback")
        assert daemon.metric("ocr_inbox_worker_restarts_total", reason=reason) == 2
    document = read_json(outputs_of(poison)["json"])
    assert document["model"]["name"] == "steady"
    assert document["fallback_trail"] == [
        {"model": "flaky", "outcome": reason, "message": "the worker was lost 2 times on this file"}
    ]
    assert set(outputs_of(poison)) == {"md", "json"}


def test_sticky_cuda_error_restarts_with_backoff_and_counts_each_event_once(
    tmp_path: Path,
) -> None:
    """Consecutive cuda_fatal exits restart the worker after 0, 1, 1, 2 s, never sooner; metrics count 4."""
    settings = drill(
        tmp_path,
        flaky={"rules": [rule("poison-*", "cuda_fatal")]},
        recovery={"attempts_per_model": 4, "backoff_cap_seconds": 30.0},
    )
    inbox = tmp_path / "inbox"
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready()
        poison = drop_png(inbox / "poison-1.png", seed=1)
        assert daemon.wait_for("file.done", file=str(poison))[0]["model"] == "steady"
        # The fifth flaky worker comes up after the last delay, and serves.
        daemon.wait_for("model.loaded", slot="0", model="flaky", count=5)
        scheduled = daemon.find("worker.restart_scheduled", slot="0")
        assert [s["in_seconds"] for s in scheduled] == [0, 1, 1, 2]
        exits = daemon.find("worker.exited", slot="0")
        assert [(e["exit_code"], e["reason"]) for e in exits] == [(3, "cuda_fatal")] * 4
        starts = daemon.find("worker.started", slot="0")
        assert len(starts) == 5  # one per restart: no spinning
        for exited, plan, started in zip(exits, scheduled, starts[1:], strict=True):
            assert record_time(started) >= record_time(exited) + plan["in_seconds"] - 0.05
        assert daemon.metric("ocr_inbox_cuda_errors_total", kind="cuda_fatal") == 4
        assert daemon.metric("ocr_inbox_worker_restarts_total", reason="cuda_fatal") == 4
        assert daemon.metric("ocr_inbox_worker_restarts_total", reason="crash") == 0
        # A success resets the backoff: the next fault restarts at once.
        good = drop_png(inbox / "good-1.png", seed=2)
        daemon.wait_for("file.done", file=str(good))
        again = drop_png(inbox / "poison-2.png", seed=3)
        daemon.wait_for("file.attempt_failed", file=str(again))
        daemon.wait_for("worker.restart_scheduled", slot="0", count=5)
        assert daemon.find("worker.restart_scheduled", slot="0")[4]["in_seconds"] == 0


def test_worker_sigkilled_mid_file_is_replaced_and_the_file_done_once(tmp_path: Path) -> None:
    """SIGKILL of the busy worker (as the kernel's OOM killer does): the file is retried, done once."""
    settings = drill(tmp_path, flaky={"page_seconds": 3.0})
    inbox = tmp_path / "inbox"
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready()
        pid = worker_pid(daemon)
        target = drop_png(inbox / "victim.png", seed=1)
        # In flight once the supervisor has dispatched it (queue wait observed).
        wait_until(lambda: daemon.metric("ocr_inbox_queue_wait_seconds_count") >= 1)
        os.kill(pid, signal.SIGKILL)
        done = daemon.wait_for("file.done", file=str(target))
        assert done[0]["model"] == "flaky"
        assert done[0]["fallbacks"] == 0
        [exited] = daemon.find("worker.exited", slot="0")
        assert (exited["pid"], exited["exit_code"], exited["reason"]) == (
            pid,
            -signal.SIGKILL,
            "crash",
        )
        [attempt] = daemon.find("file.attempt_failed", file=str(target))
        assert (attempt["attempt"], attempt["reason"]) == (1, "crash")
        assert worker_pid(daemon) != pid
        time.sleep(1)
        assert len(daemon.find("file.done", file=str(target))) == 1
        assert daemon.metric("ocr_inbox_worker_restarts_total", reason="crash") == 1
        assert daemon.metric("ocr_inbox_files_total", outcome="done") == 1
    assert read_json(outputs_of(target)["json"])["fallback_trail"] == []
    assert journal_rows(tmp_path / "state")[str(target)]["attempts"] == {"flaky": 1}


# --- the worker lives on; one file moves on ------------------------------------------------------


def test_out_of_memory_is_retried_smaller_then_sent_to_the_next_model(tmp_path: Path) -> None:
    """Transient OOM: done by flaky at 0.7 scale. Persistent OOM: done by steady. No restart, no demotion."""
    settings = drill(
        tmp_path,
        flaky={"rules": [rule("transient-*", "oom_transient"), rule("oom-*", "oom")]},
    )
    inbox = tmp_path / "inbox"
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready()
        transient = drop_png(inbox / "transient-1.png", seed=1)
        persistent = drop_png(inbox / "oom-1.png", seed=2)
        assert daemon.wait_for("file.done", file=str(transient))[0]["model"] == "flaky"
        assert daemon.wait_for("file.done", file=str(persistent))[0]["model"] == "steady"
        [moved] = daemon.find("file.fallback", file=str(persistent))
        assert moved["reason"] == "oom"
        assert not daemon.find("worker.exited")
        assert not daemon.find("chain.fallback")
        assert daemon.metric("ocr_inbox_cuda_errors_total", kind="oom") == 2
        assert daemon.metric("ocr_inbox_chain_position", inbox="inbox") == 0
    [page] = read_json(outputs_of(transient)["json"])["pages"]
    assert page["scale"] == pytest.approx(0.7)
    assert page["notes"] == ["out of memory: recognised at 0.70 of the page size"]
    trail = read_json(outputs_of(persistent)["json"])["fallback_trail"]
    assert [(step["model"], step["outcome"]) for step in trail] == [("flaky", "oom")]
    assert "CUDA out of memory" in trail[0]["message"]


def test_empty_and_degenerate_output_send_the_file_on_without_demoting(tmp_path: Path) -> None:
    """Empty or degenerate output: that file goes to steady with the trail in its JSON; flaky stays active."""
    settings = drill(
        tmp_path,
        flaky={"rules": [rule("empty-*", "empty"), rule("degen-*", "degenerate")]},
        recovery={"max_fatal_failures": 1},  # even one fatal failure would demote: there is none
    )
    inbox = tmp_path / "inbox"
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready()
        empty = drop_png(inbox / "empty-1.png", seed=1)
        degenerate = drop_png(inbox / "degen-1.png", seed=2)
        for path, kind in ((empty, "empty_output"), (degenerate, "degenerate_output")):
            assert daemon.wait_for("file.done", file=str(path))[0]["model"] == "steady"
            [moved] = daemon.find("file.fallback", file=str(path))
            assert (moved["from_model"], moved["to_model"], moved["reason"]) == (
                "flaky",
                "steady",
                kind,
            )
            trail = read_json(outputs_of(path)["json"])["fallback_trail"]
            assert [(step["model"], step["outcome"]) for step in trail] == [("flaky", kind)]
        good = drop_png(inbox / "good-1.png", seed=3)
        assert daemon.wait_for("file.done", file=str(good))[0]["model"] == "flaky"
        assert not daemon.find("chain.fallback")
        assert not daemon.find("worker.exited", slot="0")
        assert daemon.metric("ocr_inbox_chain_position", inbox="inbox") == 0
        for kind in ("empty_output", "degenerate_output"):
            labels = {"from_model": "flaky", "to_model": "steady", "reason": kind, "scope": "file"}
            assert daemon.metric("ocr_inbox_fallbacks_total", **labels) == 1
        assert daemon.metric("ocr_inbox_fallbacks_total", scope="daemon") == 0


# --- the whole daemon moves down the chain, and back ------------------------------------------------


def test_k_fatal_failures_demote_the_model_then_the_cooldown_brings_it_back(
    tmp_path: Path,
) -> None:
    """K fatal failures in the window: chain.fallback to steady; after the cool-down, chain.retry_first."""
    settings = drill(
        tmp_path,
        flaky={"rules": [rule("poison-*", "cuda_fatal")]},
        # The second loss of the file is also the one that demotes the model.
        # 12 s: long enough that the fallback model's load and the file dropped
        # during the cool-down finish first even on a loaded 2-core machine
        # (4 s failed 4 runs in 6 there: the cool-down ended before `during` was read).
        recovery={"max_fatal_failures": 2, "attempts_per_model": 2, "cooldown_seconds": 12.0},
    )
    inbox = tmp_path / "inbox"
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready()
        poison = drop_png(inbox / "poison-1.png", seed=1)
        [fallback] = daemon.wait_for("chain.fallback")
        assert (fallback["from_model"], fallback["to_model"], fallback["reason"]) == (
            "flaky",
            "steady",
            "cuda_fatal",
        )
        # The demotion was the answer: the file was not also moved on, or blamed, per file.
        assert daemon.wait_for("file.done", file=str(poison))[0]["model"] == "steady"
        assert not daemon.find("file.fallback")
        assert read_json(outputs_of(poison)["json"])["fallback_trail"] == []
        during = drop_png(inbox / "during-1.png", seed=2)
        assert daemon.wait_for("file.done", file=str(during))[0]["model"] == "steady"
        [back] = daemon.wait_for("chain.retry_first", timeout=60)
        assert back["model"] == "flaky"
        assert record_time(back) >= record_time(fallback) + 12.0
        daemon.wait_for("model.loaded", slot="0", model="flaky", count=3)
        after = drop_png(inbox / "after-1.png", seed=3)
        assert daemon.wait_for("file.done", file=str(after))[0]["model"] == "flaky"
        labels = {"from_model": "flaky", "to_model": "steady", "scope": "daemon"}
        assert daemon.metric("ocr_inbox_fallbacks_total", reason="cuda_fatal", **labels) == 1
        assert daemon.metric("ocr_inbox_fallbacks_total", scope="file") == 0
        assert daemon.metric("ocr_inbox_chain_position", inbox="inbox") == 0


def test_poison_file_is_quarantined_while_other_files_keep_flowing(tmp_path: Path) -> None:
    """A file that kills every model gets an error sidecar after 2 attempts each, and is left alone after."""
    poison_rules = {"rules": [rule("poison-*", "crash")]}
    settings = drill(
        tmp_path,
        flaky=poison_rules,
        steady=poison_rules,
        watch={"rescan_interval_seconds": 1.0},
    )
    inbox = tmp_path / "inbox"
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready()
        poison = drop_png(inbox / "poison-1.png", seed=1)
        goods = [drop_png(inbox / f"good-{index}.png", seed=10 + index) for index in range(4)]
        [failed] = daemon.wait_for("file.failed", file=str(poison), timeout=120)
        for good in goods:
            daemon.wait_for("file.done", file=str(good))
        assert failed["reason"] == "crash"
        assert failed["tried"] == ["flaky", "steady"]
        attempts = daemon.find("file.attempt_failed", file=str(poison))
        assert [(a["model"], a["attempt"]) for a in attempts] == [
            ("flaky", 1),
            ("flaky", 2),
            ("steady", 1),
            ("steady", 2),
        ]
        assert not daemon.find("chain.fallback")
        assert outputs_of(poison).keys() == {"error"}
        sidecar = read_json(outputs_of(poison)["error"])
        assert sidecar["error"]["kind"] == "crash"
        assert [step["model"] for step in sidecar["fallback_trail"]] == ["flaky", "steady"]
        assert journal_rows(tmp_path / "state")[str(poison)]["state"] == "failed"
        # Touched but unchanged: skipped, never retried.
        os.utime(poison)
        daemon.wait_for("file.skipped", file=str(poison), timeout=30)
        daemon.wait_for_rescans(2)
        assert len(daemon.find("file.attempt_failed", file=str(poison))) == 4
        # New content: tried again from the top of the chain.
        drop_png(poison, seed=99)
        daemon.wait_for("file.attempt_failed", file=str(poison), count=5)
        assert daemon.find("file.attempt_failed", file=str(poison))[4]["model"] == "flaky"


# --- models that cannot load ----------------------------------------------------------------------


def test_a_model_that_cannot_load_hands_over_to_the_next(tmp_path: Path) -> None:
    """load_fault on the first model: model.load_failed, chain.fallback, files done by steady."""
    settings = drill(tmp_path, flaky={"load_fault": "error"})
    inbox = tmp_path / "inbox"
    with running_daemon(tmp_path, settings) as daemon:
        target = drop_png(inbox / "scan.png", seed=1)
        assert daemon.wait_for("file.done", file=str(target))[0]["model"] == "steady"
        [failed] = daemon.find("model.load_failed", model="flaky")
        assert "injected load failure" in failed["error"]
        [fallback] = daemon.find("chain.fallback")
        assert (fallback["from_model"], fallback["to_model"], fallback["reason"]) == (
            "flaky",
            "steady",
            "load_error",
        )
        assert daemon.process.poll() is None


def test_a_sticky_cuda_error_while_loading_hands_over_and_is_counted(tmp_path: Path) -> None:
    """A device-side assert at load: the next model takes over; cuda_errors counts it once."""
    settings = drill(tmp_path, flaky={"load_fault": "cuda_fatal"})
    inbox = tmp_path / "inbox"
    with running_daemon(tmp_path, settings) as daemon:
        target = drop_png(inbox / "scan.png", seed=1)
        assert daemon.wait_for("file.done", file=str(target))[0]["model"] == "steady"
        [fallback] = daemon.find("chain.fallback")
        assert (fallback["from_model"], fallback["reason"]) == ("flaky", "load_error")
        assert daemon.metric("ocr_inbox_cuda_errors_total", kind="cuda_fatal") == 1
        assert daemon.metric("ocr_inbox_worker_restarts_total", reason="load_error") == 1


def test_a_model_whose_worker_crashes_while_loading_is_demoted_after_k_crashes(
    tmp_path: Path,
) -> None:
    """A crash while loading is one fatal failure (the OOM killer strikes then); K of them demote."""
    settings = drill(tmp_path, flaky={"load_fault": "crash"}, recovery={"max_fatal_failures": 3})
    inbox = tmp_path / "inbox"
    with running_daemon(tmp_path, settings) as daemon:
        target = drop_png(inbox / "scan.png", seed=1)
        assert daemon.wait_for("file.done", file=str(target))[0]["model"] == "steady"
        interrupted = daemon.find("model.load_interrupted", model="flaky")
        assert [(i["failures"], i["of"]) for i in interrupted] == [(1, 3), (2, 3)]
        assert len(daemon.find("model.load_failed", model="flaky")) == 1
        [fallback] = daemon.find("chain.fallback")
        assert (fallback["from_model"], fallback["reason"]) == ("flaky", "load_error")
        exits = daemon.find("worker.exited", model="flaky")
        assert [(e["exit_code"], e["reason"]) for e in exits] == [(70, "crash")] * 3
        assert [s["in_seconds"] for s in daemon.find("worker.restart_scheduled")] == [0, 1, 1]


def test_one_sigkill_while_loading_does_not_demote_the_model(tmp_path: Path) -> None:
    """The OOM killer striking once during a load: the model loads again and serves, not demoted."""
    settings = drill(tmp_path, flaky={"load_seconds": 3.0}, recovery={"max_fatal_failures": 3})
    inbox = tmp_path / "inbox"
    with running_daemon(tmp_path, settings) as daemon:
        pid = worker_pid(daemon)
        daemon.wait_for("worker.loading", pid=pid)
        os.kill(pid, signal.SIGKILL)
        [interrupted] = daemon.wait_for("model.load_interrupted")
        assert (interrupted["model"], interrupted["failures"], interrupted["of"]) == ("flaky", 1, 3)
        daemon.wait_ready()
        target = drop_png(inbox / "scan.png", seed=1)
        assert daemon.wait_for("file.done", file=str(target))[0]["model"] == "flaky"
        assert not daemon.find("chain.fallback")
        assert not daemon.find("model.load_failed")
        assert daemon.metric("ocr_inbox_worker_restarts_total", reason="crash") == 1


def test_no_model_can_load_exits_3_and_leaves_files_pending(tmp_path: Path) -> None:
    """Every model hangs while loading: exit code 3, every file still pending; a good chain does them."""
    settings = drill(
        tmp_path,
        flaky={"load_fault": "hang"},
        steady={"load_fault": "hang"},
        limits={"load_deadline_seconds": 3.0},
    )
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    files = [drop_png(inbox / f"doc-{index}.png", seed=index) for index in range(3)]
    daemon = start_daemon(tmp_path, settings, log_name="broken.log")
    try:
        assert daemon.process.wait(timeout=120) == 3
    finally:
        daemon.kill()
    exhausted = daemon.find("chain.exhausted")
    assert len(exhausted) == 1
    assert daemon.find("daemon.stopped")[0]["exit_code"] == 3
    assert [f["model"] for f in daemon.find("model.load_failed")] == ["flaky", "steady"]
    rows = journal_rows(tmp_path / "state")
    assert {path: row["state"] for path, row in rows.items()} == {
        str(path): "pending" for path in files
    }
    assert all(outputs_of(path) == {} for path in files)
    fixed = drill(tmp_path)
    with running_daemon(tmp_path, fixed, log_name="fixed.log") as again:
        for path in files:
            again.wait_for("file.done", file=str(path))
    assert all(row["state"] == "done" for row in journal_rows(tmp_path / "state").values())


def test_fatal_failures_exhausting_the_chain_leave_files_pending(tmp_path: Path) -> None:
    """The last model failing K times ends the daemon (3) without quarantining the file in hand."""
    settings = base_settings(
        tmp_path / "inbox",
        tmp_path / "state",
        worker={"chain": ["only"]},
        recovery={"max_fatal_failures": 2, "attempts_per_model": 2, "stop_grace_seconds": 1.0},
    )
    settings["models"] = {"only": {"engine": "faulty", "rules": [rule("*", "cuda_fatal")]}}
    inbox = tmp_path / "inbox"
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready()
        files = [drop_png(inbox / f"doc-{index}.png", seed=index) for index in range(3)]
        assert daemon.process.wait(timeout=120) == 3
    [exhausted] = daemon.find("chain.exhausted")
    assert (exhausted["last"], exhausted["reason"]) == ("only", "cuda_fatal")
    assert not daemon.find("file.failed")
    rows = journal_rows(tmp_path / "state")
    assert all(rows[str(path)]["state"] == "pending" for path in files if str(path) in rows)
    assert all(outputs_of(path) == {} for path in files)
    lost = {record["file"] for record in daemon.find("file.attempt_failed")}
    assert lost and all(rows[path]["attempts"] for path in lost)
    settings["models"] = {"only": {"engine": "faulty"}}
    with running_daemon(tmp_path, settings, log_name="fixed.log") as again:
        for path in files:
            again.wait_for("file.done", file=str(path))


# --- state that survives a restart ---------------------------------------------------------------


def test_attempts_per_model_survive_a_daemon_kill(tmp_path: Path) -> None:
    """A file that hung once before kill -9 of the daemon moves on after one more hang, not two."""
    settings = drill(
        tmp_path,
        flaky={"rules": [rule("poison-*", "hang")]},
        limits={"page_deadline_seconds": 2.0},
    )
    inbox = tmp_path / "inbox"
    first = start_daemon(tmp_path, settings, log_name="first.log")
    try:
        first.wait_ready()
        poison = drop_png(inbox / "poison-1.png", seed=1)
        first.wait_for("file.attempt_failed", file=str(poison))
        first.wait_for("model.loaded", slot="0", count=2)  # the retry is on its way
    finally:
        first.kill()
    assert journal_rows(tmp_path / "state")[str(poison)]["attempts"] == {"flaky": 1}
    with running_daemon(tmp_path, settings, log_name="second.log") as second:
        assert second.wait_for("file.done", file=str(poison))[0]["model"] == "steady"
        attempts = second.find("file.attempt_failed", file=str(poison))
        assert [(a["model"], a["attempt"]) for a in attempts] == [("flaky", 2)]
    assert journal_rows(tmp_path / "state")[str(poison)]["attempts"] == {"flaky": 2}


def test_a_file_resumes_after_the_models_it_already_left(tmp_path: Path) -> None:
    """A file sent on to steady before kill -9 goes straight to steady after the restart."""
    settings = drill(
        tmp_path, flaky={"rules": [rule("empty-*", "empty")]}, steady={"page_seconds": 30.0}
    )
    inbox = tmp_path / "inbox"
    first = start_daemon(tmp_path, settings, log_name="first.log")
    try:
        first.wait_ready()
        target = drop_png(inbox / "empty-1.png", seed=1)
        first.wait_for("file.fallback", file=str(target))
        first.wait_for("model.loaded", model="steady")
    finally:
        first.kill()
    settings["models"]["steady"] = {"engine": "faulty"}
    with running_daemon(tmp_path, settings, log_name="second.log") as second:
        assert second.wait_for("file.done", file=str(target))[0]["model"] == "steady"
        assert not second.find("file.fallback")
    trail = read_json(outputs_of(target)["json"])["fallback_trail"]
    assert [(step["model"], step["outcome"]) for step in trail] == [("flaky", "empty_output")]


def test_outputs_written_before_the_journal_are_not_done_again(tmp_path: Path) -> None:
    """A kill between the output rename and the journal update leaves the row pending: not redone."""
    settings = drill(tmp_path)
    inbox = tmp_path / "inbox"
    with running_daemon(tmp_path, settings) as daemon:
        target = drop_png(inbox / "scan.png", seed=1)
        daemon.wait_for("file.done", file=str(target))
    before = {key: path.read_bytes() for key, path in outputs_of(target).items()}
    # What a kill -9 in that window leaves behind: outputs on disk, the row pending.
    with sqlite3.connect(tmp_path / "state" / SqliteJournal.FILENAME) as db:
        db.execute("UPDATE files SET state = 'pending'")
    with running_daemon(tmp_path, settings, log_name="again.log") as again:
        again.wait_for("file.skipped", file=str(target))
        time.sleep(1)
        assert not again.find("file.done")
    assert {key: path.read_bytes() for key, path in outputs_of(target).items()} == before
    assert journal_rows(tmp_path / "state")[str(target)]["state"] == "done"


# --- a worker that leaks memory -------------------------------------------------------------------


def test_a_worker_over_the_memory_limit_is_replaced(tmp_path: Path) -> None:
    """With max_worker_rss_megabytes set, a worker that leaked past it is retired after its job."""
    settings = drill(
        tmp_path,
        flaky={"rules": [rule("leak-*", "leak")], "leak_megabytes": 300},
        recovery={"max_worker_rss_megabytes": 250},
    )
    inbox = tmp_path / "inbox"
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready()
        first_pid = worker_pid(daemon)
        plain = drop_png(inbox / "plain-1.png", seed=1)
        daemon.wait_for("file.done", file=str(plain))
        leak = drop_png(inbox / "leak-1.png", seed=2)
        assert daemon.wait_for("file.done", file=str(leak))[0]["model"] == "flaky"
        [exceeded] = daemon.wait_for("worker.memory_exceeded")
        assert exceeded["pid"] == first_pid
        assert exceeded["rss_megabytes"] > 250
        assert exceeded["limit_megabytes"] == 250
        [exited] = daemon.wait_for("worker.exited", slot="0")
        assert (exited["pid"], exited["reason"], exited["exit_code"]) == (first_pid, "retired", 0)
        daemon.wait_for("model.loaded", slot="0", count=2)
        assert worker_pid(daemon) != first_pid
        later = drop_png(inbox / "plain-2.png", seed=3)
        daemon.wait_for("file.done", file=str(later))
        assert len(daemon.find("worker.memory_exceeded")) == 1
        assert daemon.metric("ocr_inbox_worker_restarts_total", reason="memory") == 1
        done = Counter(record["file"] for record in daemon.find("file.done"))
        assert set(done.values()) == {1}
