"""End to end through the running daemon: settling, bursts, restarts, changes, vanishing.

These use the fault-injection engine without faults: it "recognises" each page
as a line naming the file, quickly, so the tests exercise the daemon rather
than OCR.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from harness import pages
from harness.driver import (
    Daemon,
    outputs_of,
    read_json,
    record_time,
    running_daemon,
    start_daemon,
    wait_until,
)
from harness.drops import TINY, drop_png, faulty_settings
from harness.inbox import sha256_of

pytestmark = pytest.mark.slow


def test_slow_writer_is_processed_only_when_complete(tmp_path: Path) -> None:
    """A PDF written in chunks over 10 s is handed on once, after its last byte, as the whole file."""
    inbox = tmp_path / "inbox"
    settings = faulty_settings(inbox, tmp_path / "state")
    settings["watch"]["settle_seconds"] = 2.0  # the default window
    source = tmp_path / "source.pdf"
    pages.save_pdf([TINY, TINY, TINY], source)
    data = source.read_bytes()
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready()
        target = inbox / "slow.pdf"
        chunks = 20
        step = len(data) // chunks + 1
        with target.open("wb") as handle:
            for index in range(chunks):
                handle.write(data[index * step : (index + 1) * step])
                handle.flush()
                time.sleep(0.5)
        finished_writing = time.time()
        done = daemon.wait_for("file.done", file=str(target))
        time.sleep(3)  # any second hand-off would come within a settle window
        assert len(daemon.find("file.done", file=str(target))) == 1
        stable = daemon.find("watch.stable", path=str(target))
        assert len(stable) == 1
        assert stable[0]["size"] == len(data)
        assert record_time(stable[0]) >= finished_writing
        document = read_json(outputs_of(target)["json"])
        assert document["input"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert document["input"]["pages"] == 3
        assert done[0]["pages"] == 3


def test_burst_of_200_files_each_done_once(tmp_path: Path) -> None:
    """200 files dropped at once each get exactly one pair of outputs and one file.done."""
    inbox = tmp_path / "inbox"
    with running_daemon(tmp_path, faulty_settings(inbox, tmp_path / "state")) as daemon:
        daemon.wait_ready()
        sources = [drop_png(inbox / f"burst-{index:03d}.png", index) for index in range(200)]
        daemon.wait_for("file.done", count=200, timeout=300)
        time.sleep(1)
        done = Counter(record["file"] for record in daemon.find("file.done"))
        assert done == Counter({str(source): 1 for source in sources})
        for source in sources:
            assert set(outputs_of(source)) == {"md", "json"}
        assert not daemon.find("file.failed")


def test_kill_9_mid_backlog_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    """After kill -9 of the daemon mid-backlog, a restart finishes every file and rewrites none."""
    inbox = tmp_path / "inbox"
    settings = faulty_settings(inbox, tmp_path / "state", page_seconds=0.15)
    inbox.mkdir(parents=True)
    sources = [drop_png(inbox / f"backlog-{index:02d}.png", index) for index in range(60)]
    first = start_daemon(tmp_path, settings, log_name="first.log")
    try:
        first.wait_for("file.done", count=15, timeout=180)
        workers = [
            child.pid for child in psutil.Process(first.process.pid).children(recursive=True)
        ]
        first.kill()
    finally:
        first.kill()
    # The workers die with the daemon (PR_SET_PDEATHSIG): none is left holding the model.
    wait_until(
        lambda: not any(psutil.pid_exists(pid) and _alive(pid) for pid in workers), timeout=30
    )
    written_before = {
        source: outputs_of(source)["json"].read_bytes()
        for source in sources
        if "json" in outputs_of(source)
    }
    assert 15 <= len(written_before) < 60
    second = start_daemon(tmp_path, settings, log_name="second.log")
    try:
        wait_until(lambda: all(set(outputs_of(s)) == {"md", "json"} for s in sources), timeout=300)
        time.sleep(2)
    finally:
        assert second.stop() == 0
    for source, before in written_before.items():
        assert outputs_of(source)["json"].read_bytes() == before, f"{source.name} was done twice"
    redone = {record["file"] for record in second.find("file.done")}
    assert redone.isdisjoint(str(source) for source in written_before)
    assert len(redone) + len(written_before) == 60
    assert not list(inbox.glob(".*.ocr-inbox.tmp"))


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_changed_file_is_done_again(tmp_path: Path) -> None:
    """New content at the same path is processed again; the outputs describe the new content."""
    inbox = tmp_path / "inbox"
    with running_daemon(tmp_path, faulty_settings(inbox, tmp_path / "state")) as daemon:
        daemon.wait_ready()
        target = drop_png(inbox / "doc.png", seed=1)
        daemon.wait_for("file.done", file=str(target))
        first_sha = sha256_of(target)
        drop_png(target, seed=2)
        daemon.wait_for("file.done", file=str(target), count=2)
        document = read_json(outputs_of(target)["json"])
        assert document["input"]["sha256"] == sha256_of(target) != first_sha
        # Touching without changing the content does not redo it.
        os.utime(target, None)
        daemon.wait_for("file.skipped", file=str(target))
        assert len(daemon.find("file.done", file=str(target))) == 2


def test_file_vanishing_before_its_turn_is_dropped(tmp_path: Path) -> None:
    """A file deleted while queued is dropped with a log line, and the next file still flows."""
    inbox = tmp_path / "inbox"
    settings = faulty_settings(inbox, tmp_path / "state", page_seconds=3.0)
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready()
        busy = drop_png(inbox / "a-busy.png", seed=1)
        daemon.wait_for("watch.stable", path=str(busy))
        doomed = drop_png(inbox / "b-doomed.png", seed=2)
        daemon.wait_for("watch.stable", path=str(doomed))
        doomed.unlink()
        daemon.wait_for("file.vanished", file=str(doomed))
        after = drop_png(inbox / "c-after.png", seed=3)
        daemon.wait_for("file.done", file=str(after))
        assert outputs_of(doomed) == {}
        assert daemon.find("file.done", file=str(busy))


def test_hidden_temp_and_output_files_are_left_alone(tmp_path: Path) -> None:
    """Hidden, partial and temp files and our own outputs are never processed."""
    inbox = tmp_path / "inbox"
    with running_daemon(tmp_path, faulty_settings(inbox, tmp_path / "state")) as daemon:
        daemon.wait_ready()
        for name in (".hidden.png", "upload.png.part", "x.tmp", "~$lock.png", "notes.txt"):
            pages.save_png(TINY, inbox / name)
        marker = drop_png(inbox / "real.png")
        daemon.wait_for("file.done", file=str(marker))
        time.sleep(1)
        assert len(daemon.find("file.done")) == 1
        names = sorted(path.name for path in inbox.iterdir())
        assert names == sorted(
            [
                ".hidden.png",
                "upload.png.part",
                "x.tmp",
                "~$lock.png",
                "notes.txt",
                "real.png",
                "real.png.ocr.md",
                "real.png.ocr.json",
            ]
        )


def test_sigterm_finishes_the_current_file_and_exits_0(tmp_path: Path) -> None:
    """SIGTERM while a file is being processed: that file is finished, the rest stay pending."""
    inbox = tmp_path / "inbox"
    # Long enough that the second file is queued while the first is still in the worker.
    settings = faulty_settings(inbox, tmp_path / "state", page_seconds=5.0)
    daemon: Daemon
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready()
        first = drop_png(inbox / "first.png", seed=1)
        second = drop_png(inbox / "second.png", seed=2)
        daemon.wait_for("file.dispatched", file=str(first))  # in the worker's hands
        daemon.wait_for("file.queued", file=str(second))
        # One SIGTERM only (stop() sends it): a second one means "stop now".
        assert daemon.stop() == 0
    done = {record["file"] for record in daemon.find("file.done")}
    assert str(first) in done
    assert str(second) not in done
    assert outputs_of(second) == {}
    # The next start picks the pending file up.
    with running_daemon(tmp_path, settings, log_name="again.log") as again:
        again.wait_for("file.done", file=str(second))


def test_second_sigterm_stops_at_once_leaving_the_file_pending(tmp_path: Path) -> None:
    """A second SIGTERM kills the worker mid-page, exits 0 and leaves that file for the next start."""
    inbox = tmp_path / "inbox"
    settings = faulty_settings(inbox, tmp_path / "state", page_seconds=60.0)
    daemon: Daemon
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready()
        target = drop_png(inbox / "slow.png", seed=3)
        daemon.wait_for("file.dispatched", file=str(target))
        daemon.process.send_signal(signal.SIGTERM)
        daemon.wait_for("daemon.stopping")
        daemon.process.send_signal(signal.SIGTERM)
        # Well inside the 60 s page: the worker was not waited for.
        assert daemon.process.wait(timeout=40) == 0
    assert daemon.find("daemon.stop_now")
    assert not daemon.find("file.done")
    assert daemon.find("file.left_pending", file=str(target))
    assert outputs_of(target) == {}
    with running_daemon(
        tmp_path, faulty_settings(inbox, tmp_path / "state"), log_name="again.log"
    ) as again:
        again.wait_for("file.done", file=str(target))


def test_removing_outputs_and_touching_redoes_the_file(tmp_path: Path) -> None:
    """Deleting a file's outputs and touching it makes the daemon do it again (the README's retry recipe)."""
    inbox = tmp_path / "inbox"
    with running_daemon(tmp_path, faulty_settings(inbox, tmp_path / "state")) as daemon:
        daemon.wait_ready()
        target = drop_png(inbox / "redo.png", seed=5)
        daemon.wait_for("file.done", file=str(target))
        for output in outputs_of(target).values():
            output.unlink()
        os.utime(target, None)
        daemon.wait_for("file.done", file=str(target), count=2)
        assert daemon.find("file.redo", file=str(target))
        assert set(outputs_of(target)) == {"md", "json"}
