"""Files that change under the daemon: deleted before their turn, replaced mid-flight, grown late.

A slow fake engine (page_seconds) holds the single worker, so each change can
be made at a known point: while the file waits in the queue, or after the
worker has read it (watched from outside with inotify). See docs/hostile-inputs.md.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import pages
from harness.driver import (
    Daemon,
    daemon_env,
    outputs_of,
    read_json,
    running_daemon,
    write_settings,
)
from harness.drops import faulty_settings, png_bytes
from harness.inbox import ReadWatch, drop, outcomes_of, sha256_of, wait_outcome
from tests.support import hostile

pytestmark = pytest.mark.slow

PAGE_SECONDS = 1.0


def png(seed: int) -> bytes:
    return png_bytes(seed, mark=11)


def slow_daemon(root: Path) -> dict[str, Any]:
    return faulty_settings(
        root / "inbox", root / "state", chain={"slow": {"page_seconds": PAGE_SECONDS}}
    )


def slow_pdf(pages_: int, text: str) -> bytes:
    """A PDF that keeps the slow worker busy for pages_ x PAGE_SECONDS."""
    return hostile.pdf_document([hostile.PdfPage(200, 100, lines=[text])] * pages_)


def occupy(daemon: Daemon, inbox: Path, name: str) -> Path:
    """Give the single worker a file to chew on for 4 x PAGE_SECONDS, so later files wait in the queue."""
    busy = inbox / name
    with ReadWatch(busy) as reads:
        drop(busy, slow_pdf(4, "busy"))
        reads.wait(2)  # hashed by the supervisor, then read by the worker
    return busy


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def done_records(daemon: Daemon, path: Path) -> list[dict[str, Any]]:
    return [record for record in outcomes_of(daemon, path) if record["event"] == "file.done"]


def test_file_deleted_while_queued_is_dropped_and_the_next_file_flows(tmp_path: Path) -> None:
    """Deleted between detection and its turn: file.vanished, no outputs, the next file is done."""
    inbox = tmp_path / "inbox"
    with running_daemon(tmp_path, slow_daemon(tmp_path)) as daemon:
        daemon.wait_ready()
        occupy(daemon, inbox, "a-busy.pdf")
        doomed = drop(inbox / "b-doomed.png", png(1))
        daemon.wait_for("file.queued", file=str(doomed))
        doomed.unlink()
        record = wait_outcome(daemon, doomed)
        assert (record["event"], record["when"]) == ("file.vanished", "before its turn")
        normal = drop(inbox / "c-normal.png", png(2))
        assert wait_outcome(daemon, normal)["event"] == "file.done"
        assert not [path for path in inbox.iterdir() if path.name.startswith("b-doomed")]


def test_file_replaced_while_processed_is_recorded_as_read_then_done_again(tmp_path: Path) -> None:
    """Replaced after the worker read it: the first JSON is for the old bytes, then the new are done."""
    inbox = tmp_path / "inbox"
    old, new = png(1), slow_pdf(4, "new")  # the new content takes 4 pages: time to look
    with running_daemon(tmp_path, slow_daemon(tmp_path)) as daemon:
        daemon.wait_ready()
        target = inbox / "scan.png"
        with ReadWatch(target) as reads:
            drop(target, old)
            reads.wait(2)  # the worker holds the old bytes now
            drop(target, new)  # renamed over it, as a re-scan from the scanner would be
        first = wait_outcome(daemon, target)
        assert first["event"] == "file.done"
        # The new content takes 4 x PAGE_SECONDS more: the first outputs can be read meanwhile.
        document = read_json(outputs_of(target)["json"])
        assert document["input"]["sha256"] == _sha(old)
        assert document["input"]["format"] == "png"
        second = wait_outcome(daemon, target, count=2)
        assert second["event"] == "file.done"
        document = read_json(outputs_of(target)["json"])
        assert document["input"]["sha256"] == _sha(new) == sha256_of(target)
        assert document["input"]["format"] == "pdf"
        assert len(done_records(daemon, target)) == 2
        normal = drop(inbox / "normal.png", png(2))
        assert wait_outcome(daemon, normal)["event"] == "file.done"


def test_once_looks_again_at_a_file_replaced_before_the_worker_read_it(tmp_path: Path) -> None:
    """`once`: replaced between its hash and the worker's read, the file is looked at again before exit."""
    config = write_settings(
        tmp_path / "once.toml",
        {
            "worker": {"chain": ["slow"]},
            # The slow load holds the worker off the file while the test replaces it.
            "models": {"slow": {"engine": "faulty", "load_seconds": 3.0}},
            "state": {"dir": str(tmp_path / "state")},
            "log": {"format": "json"},
        },
    )
    target = drop(tmp_path / "scan.png", png(3))
    new = slow_pdf(2, "new")
    with ReadWatch(target) as reads:
        child = subprocess.Popen(
            [sys.executable, "-m", "daemon", "once", "--config", str(config), str(target)],
            cwd=tmp_path,
            env=daemon_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            reads.wait(1)  # hashed by `once`; the worker is still loading
            drop(target, new)
            output, _ = child.communicate(timeout=300)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert child.returncode == 0, output[-3000:]
    events = [json.loads(line)["event"] for line in output.splitlines() if line.startswith("{")]
    # The worker read the new bytes; the second look finds its outputs already describe them.
    assert events.count("file.done") == 1, output[-3000:]
    assert events.index("file.changed_while_processing") < events.index("file.skipped")
    assert events.index("file.skipped") < events.index("daemon.stopped")
    document = read_json(outputs_of(target)["json"])
    assert document["input"]["sha256"] == _sha(new) == sha256_of(target)
    assert document["input"]["format"] == "pdf"


def test_file_that_grows_while_queued_is_done_once_with_its_final_content(tmp_path: Path) -> None:
    """Judged stable, then appended to before its turn: done once, for the bytes it ended with."""
    inbox = tmp_path / "inbox"
    whole = pages.png_bytes(pages.render_page(("grows",), width=300, height=200, font_px=20))
    half = hostile.truncated(whole, 0.5)
    with running_daemon(tmp_path, slow_daemon(tmp_path)) as daemon:
        daemon.wait_ready()
        occupy(daemon, inbox, "a-busy.pdf")
        target = drop(inbox / "b-grows.png", half)
        daemon.wait_for("file.queued", file=str(target))
        with target.open("ab") as handle:
            handle.write(whole[len(half) :])
        record = wait_outcome(daemon, target)
        assert record["event"] == "file.done"
        assert read_json(outputs_of(target)["json"])["input"]["sha256"] == _sha(whole)
        normal = drop(inbox / "c-normal.png", png(3))
        wait_outcome(daemon, normal)
        assert len(outcomes_of(daemon, target)) == 1
        assert set(outputs_of(target)) == {"md", "json"}


def test_file_that_grows_after_its_outcome_is_done_again_when_it_settles(tmp_path: Path) -> None:
    """A scanner pausing longer than the settle window: half a PNG fails, the whole one is done."""
    inbox = tmp_path / "inbox"
    whole = pages.png_bytes(pages.render_page(("grows",), width=300, height=200, font_px=20))
    half = hostile.truncated(whole, 0.5)
    settings = slow_daemon(tmp_path)
    settings["models"]["slow"]["page_seconds"] = 0.0
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready()
        target = drop(inbox / "paused-scanner.png", half)
        first = wait_outcome(daemon, target)
        assert (first["event"], first["code"]) == ("file.failed", "corrupt")
        assert set(outputs_of(target)) == {"error"}
        with target.open("ab") as handle:
            handle.write(whole[len(half) :])
        second = wait_outcome(daemon, target, count=2)
        assert second["event"] == "file.done"
        # The pair replaces our error sidecar: one outcome on disk, for the final bytes.
        assert set(outputs_of(target)) == {"md", "json"}
        assert read_json(outputs_of(target)["json"])["input"]["sha256"] == _sha(whole)
        assert sha256_of(target) == _sha(whole)
        normal = drop(inbox / "normal.png", png(4))
        assert wait_outcome(daemon, normal)["event"] == "file.done"
