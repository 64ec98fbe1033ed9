"""Permissions through the running daemon: an input it may not read, a folder it may not write.

The daemon runs subject to file modes (as root, without CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH: tests/support/privileges.py), so chmod means to it what
it means to an unprivileged service user. See docs/hostile-inputs.md.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from harness.driver import outputs_of, read_json, running_daemon
from harness.drops import faulty_settings, png_bytes
from harness.inbox import ReadWatch, drop, outcomes_of, sha256_of, wait_outcome
from tests.support import hostile
from tests.support.privileges import obeying_permissions

pytestmark = pytest.mark.slow

RESCAN_SECONDS = 1.0
RETRY_SECONDS = 1.0


def png(seed: int) -> bytes:
    return png_bytes(seed, mark=13)


def settings_for(root: Path) -> dict[str, Any]:
    settings = faulty_settings(root / "inbox", root / "state")
    settings["watch"].update(recursive=True, rescan_interval_seconds=RESCAN_SECONDS)
    settings["outputs"] = {"retry_seconds": RETRY_SECONDS}
    return settings


def test_unreadable_input_gets_an_unreadable_sidecar_and_is_read_once_permitted(
    tmp_path: Path,
) -> None:
    """chmod 000: one 'unreadable' sidecar and log line; after chmod 644 the next rescan does it."""
    inbox = tmp_path / "inbox"
    with running_daemon(
        tmp_path, settings_for(tmp_path), argv_prefix=obeying_permissions([])
    ) as daemon:
        daemon.wait_ready()
        locked = inbox / "locked.png"
        temp = tmp_path / "locked.tmp"
        temp.write_bytes(png(1))
        temp.chmod(0)
        temp.rename(locked)  # unreadable from the moment it appears
        first = wait_outcome(daemon, locked)
        assert (first["event"], first["reason"], first["code"]) == (
            "file.failed",
            "unreadable",
            "unreadable",
        )
        assert "Permission denied" in first["error"]
        error = read_json(outputs_of(locked)["error"])
        assert error["error"]["code"] == "unreadable"
        assert "tried again" in error["error"]["summary"]
        # Rescans try again, quietly: one line and one sidecar however many retries.
        normal = drop(inbox / "normal.png", png(2))
        wait_outcome(daemon, normal)
        time.sleep(3 * RESCAN_SECONDS)  # three retries, none of them heard
        assert len(outcomes_of(daemon, locked)) == 1
        locked.chmod(0o644)
        second = wait_outcome(daemon, locked, count=2)
        assert second["event"] == "file.done"
        assert set(outputs_of(locked)) == {"md", "json"}  # the sidecar was ours: replaced
        assert read_json(outputs_of(locked)["json"])["input"]["sha256"] == sha256_of(locked)


def test_input_made_unreadable_while_queued_is_read_again_once_permitted(tmp_path: Path) -> None:
    """Hashed, then chmod 000 before the worker opens it: 'unreadable' sidecar, then done later."""
    inbox = tmp_path / "inbox"
    settings = settings_for(tmp_path)
    settings["models"]["fake"]["page_seconds"] = 1.0
    with running_daemon(tmp_path, settings, argv_prefix=obeying_permissions([])) as daemon:
        daemon.wait_ready()
        busy = inbox / "busy.pdf"
        with ReadWatch(busy) as reads:
            drop(busy, hostile.pdf_document([hostile.PdfPage(200, 100)] * 3))
            reads.wait(2)  # the worker has it: the next file waits in the queue
        target = drop(inbox / "queued.png", png(5))
        daemon.wait_for("file.queued", file=str(target))
        target.chmod(0)
        first = wait_outcome(daemon, target)
        assert (first["event"], first["code"]) == ("file.failed", "unreadable")
        assert read_json(outputs_of(target)["error"])["error"]["code"] == "unreadable"
        target.chmod(0o644)
        assert wait_outcome(daemon, target, count=2)["event"] == "file.done"
        assert set(outputs_of(target)) == {"md", "json"}


def test_unwritable_folder_keeps_the_result_and_writes_it_once_permitted(tmp_path: Path) -> None:
    """A 0o555 folder: output.error counted, input pending, others flow; after chmod all is written."""
    inbox = tmp_path / "inbox"
    with running_daemon(
        tmp_path, settings_for(tmp_path), argv_prefix=obeying_permissions([])
    ) as daemon:
        daemon.wait_ready()
        staging = tmp_path / "readonly"
        staging.mkdir()
        drop(staging / "scan.png", png(3))
        drop(staging / "broken.png", b"not a PNG at all")
        staging.chmod(0o555)
        staging.rename(inbox / "readonly")
        target, broken = inbox / "readonly" / "scan.png", inbox / "readonly" / "broken.png"
        daemon.wait_for("file.output_retry", file=str(target), count=2)
        # A failure is final at once (journal and log); only its sidecar waits for the folder.
        failed = wait_outcome(daemon, broken)
        assert (failed["event"], failed["code"]) == ("file.failed", "unsupported_format")
        assert daemon.journal_state(broken) == "failed"
        errors = daemon.find("output.error", reason="permission")
        assert errors and all("Permission denied" in record["error"] for record in errors)
        assert daemon.metric("ocr_inbox_output_errors_total", reason="permission") >= 2
        assert daemon.journal_state(target) == "pending"
        assert outcomes_of(daemon, target) == []
        # No partial output, no temp file.
        assert sorted(os.listdir(inbox / "readonly")) == ["broken.png", "scan.png"]
        # Other folders keep flowing meanwhile.
        normal = drop(inbox / "normal.png", png(4))
        assert wait_outcome(daemon, normal)["event"] == "file.done"
        (inbox / "readonly").chmod(0o755)
        assert wait_outcome(daemon, target)["event"] == "file.done"
        assert set(outputs_of(target)) == {"md", "json"}
        assert daemon.journal_state(target) == "done"
        daemon.wait_for("file.error_written", file=str(broken))
        error = read_json(outputs_of(broken)["error"])
        assert error["error"]["code"] == "unsupported_format"
        assert len(outcomes_of(daemon, broken)) == 1  # written late, not processed again
        # Written from the result kept in memory: the model ran once for it.
        assert daemon.metric("ocr_inbox_pages_total", model="fake") == 2
        assert sha256_of(target) == read_json(outputs_of(target)["json"])["input"]["sha256"]
