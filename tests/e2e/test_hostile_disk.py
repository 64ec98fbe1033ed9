"""A disk that fills up while outputs are written: a real small tmpfs, and a file size limit.

No partial output may remain, the file stays pending (across a restart too),
the write is retried every outputs.retry_seconds, and it lands once space
returns; other files keep flowing meanwhile. The tmpfs needs root to mount;
the file size limit (RLIMIT_FSIZE, EFBIG) works for any user and exercises the
same path. See docs/hostile-inputs.md.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

from harness.driver import outputs_of, read_json, start_daemon
from harness.drops import faulty_settings, png_bytes
from harness.inbox import drop, outcomes_of, sha256_of, wait_outcome
from tests.support import hostile
from tests.support.filesystems import fill, free_blocks, small_tmpfs
from tests.support.tools import require_tool

pytestmark = pytest.mark.slow

RETRY_SECONDS = 1.0


def png(seed: int) -> bytes:
    return png_bytes(seed, mark=17)


def assert_nothing_written(folder: Path, *inputs: Path) -> None:
    """Only the inputs and the filler: no output, no temp file, not even a partial one."""
    assert sorted(os.listdir(folder)) == sorted([".filler", *(path.name for path in inputs)])


def test_disk_full_while_writing_leaves_nothing_partial_and_retries_until_space_returns(
    tmp_path: Path,
) -> None:
    """ENOSPC between the .md and the .json: no output remains, the file stays pending, then lands."""
    disk_inbox, small = tmp_path / "inbox", tmp_path / "small"
    settings = faulty_settings(disk_inbox, tmp_path / "state")
    settings["watch"]["inboxes"] = [str(disk_inbox), str(small)]
    settings["outputs"] = {"retry_seconds": RETRY_SECONDS}
    with small_tmpfs(small, 256 * 1024):
        # Room for the input and the Markdown temp file, not for the JSON one:
        # the write fails halfway through the pair.
        filler = fill(small, leave_blocks=2)
        target = drop(small / "scan.png", png(1))
        digest = sha256_of(target)
        assert free_blocks(small) == 1

        first = start_daemon(tmp_path, settings, log_name="first.log")
        try:
            first.wait_for("file.output_retry", file=str(target), count=2)
            errors = first.find("output.error", reason="no_space")
            assert errors and all("No space left" in record["error"] for record in errors)
            assert first.metric("ocr_inbox_output_errors_total", reason="no_space") >= 2
            assert first.journal_state(target) == "pending"
            assert outcomes_of(first, target) == []
            assert_nothing_written(small, target)
            # Another inbox keeps flowing while this disk is full.
            normal = drop(disk_inbox / "normal.png", png(2))
            assert wait_outcome(first, normal)["event"] == "file.done"
            # Stopped while the result waits in memory: the file stays pending in the journal.
            assert first.stop() == 0
        finally:
            first.kill()
        assert first.journal_state(target) == "pending"
        assert_nothing_written(small, target)

        filler.unlink()  # space returns while the daemon is down
        second = start_daemon(tmp_path, settings, log_name="second.log")
        try:
            assert wait_outcome(second, target)["event"] == "file.done"
            assert set(outputs_of(target)) == {"md", "json"}
            assert read_json(outputs_of(target)["json"])["input"]["sha256"] == digest
            assert second.journal_state(target) == "done"

            # Full again, now while running: retried in place once space returns.
            filler = fill(small, leave_blocks=2)
            later = drop(small / "later.png", png(3))
            second.wait_for("file.output_retry", file=str(later), count=2)
            assert sorted(os.listdir(small)) == sorted(
                [".filler", "scan.png", "scan.png.ocr.md", "scan.png.ocr.json", "later.png"]
            )
            filler.unlink()
            assert wait_outcome(second, later)["event"] == "file.done"
            assert set(outputs_of(later)) == {"md", "json"}
            # Written from the result kept in memory: the model ran once for it.
            assert second.metric("ocr_inbox_pages_total", model="fake") == 2
            normal = drop(small / "normal-after.png", png(4))
            assert wait_outcome(second, normal)["event"] == "file.done"
            assert sha256_of(target) == digest
            assert not [name for name in os.listdir(small) if name.endswith(".ocr-inbox.tmp")]
            assert second.stop() == 0
        finally:
            second.kill()


FILE_SIZE_LIMIT = 512 * 1024  # above the log and the journal's files, below the big JSON


def test_file_size_limit_while_writing_leaves_nothing_partial_and_retries_once_lifted(
    tmp_path: Path,
) -> None:
    """RLIMIT_FSIZE below one JSON output: EFBIG counts as no_space, nothing remains, then it lands."""
    prlimit = require_tool("prlimit")
    inbox = tmp_path / "inbox"
    settings = faulty_settings(inbox, tmp_path / "state")
    settings["limits"] = {"max_pages": 2000}
    settings["outputs"] = {"retry_seconds": RETRY_SECONDS}
    settings["log"]["level"] = "info"  # keeps the log itself far below the limit
    # 1,200 small pages: about 26 KB of Markdown (fits) and 800 KB of JSON (does not).
    big_pdf = hostile.pdf_document([hostile.PdfPage(72, 36)] * 1200)
    limited = [prlimit, f"--fsize={FILE_SIZE_LIMIT}:unlimited"]  # soft limit; ours to lift
    daemon = start_daemon(tmp_path, settings, argv_prefix=limited)
    try:
        daemon.wait_ready()
        big = drop(inbox / "big.pdf", big_pdf)
        daemon.wait_for("file.output_retry", file=str(big), count=2)
        errors = daemon.find("output.error", reason="no_space")
        assert errors and all("File too large" in record["error"] for record in errors)
        assert daemon.journal_state(big) == "pending"
        assert sorted(os.listdir(inbox)) == ["big.pdf"]  # the .md temp was removed too
        normal = drop(inbox / "normal.png", png(5))
        assert wait_outcome(daemon, normal)["event"] == "file.done"
        unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        resource.prlimit(daemon.process.pid, resource.RLIMIT_FSIZE, unlimited)
        assert wait_outcome(daemon, big)["event"] == "file.done"
        assert outputs_of(big)["json"].stat().st_size > FILE_SIZE_LIMIT
        document = read_json(outputs_of(big)["json"])
        assert document["input"]["pages_processed"] == 1200
        assert document["input"]["sha256"] == sha256_of(big)
        assert len(outcomes_of(daemon, big)) == 1
        assert daemon.stop() == 0
    finally:
        daemon.kill()
