"""archive_dir, failed_dir and delete_after_success through the running daemon.

The archive is a real tmpfs (another filesystem than the inbox's, so the
move is a copy, an fsync and a removal); the daemon is killed with SIGKILL at
the fault point between the copy and the removal, and the next start
finishes the move: the input is in the archive once, gone from the inbox,
and was never taken for a vanished file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from harness.driver import base_settings, start_daemon
from harness.drops import png_bytes
from harness.inbox import drop, wait_outcome
from tests.support.filesystems import small_tmpfs

pytestmark = pytest.mark.slow


def _settings(root: Path, **table: Any) -> dict[str, Any]:
    settings = base_settings(root / "unused", root / "state")
    del settings["watch"]["inboxes"]
    settings["inboxes"] = {"scans": {"path": str(root / "scans"), "chain": ["f"], **table}}
    settings["models"] = {
        "f": {"engine": "faulty", "rules": [{"match": "bad-*", "fault": "bad_input"}]}
    }
    return settings


def _files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def test_archiving_across_filesystems_survives_a_kill_between_copy_and_removal(
    tmp_path: Path,
) -> None:
    """Killed after the copy: the restart removes the input once; outputs end beside the archived
    input; a name clash in the archive gets a suffix, never an overwrite."""
    inbox, archive = tmp_path / "scans", tmp_path / "archive"
    (inbox / "march").mkdir(parents=True)
    with small_tmpfs(archive, 16 * 1024 * 1024):
        assert os.stat(inbox).st_dev != os.stat(archive).st_dev
        (archive / "march").mkdir()
        (archive / "march" / "scan.png").write_bytes(b"someone else's file")
        settings = _settings(tmp_path, archive_dir=str(archive), recursive=True)
        first = start_daemon(
            tmp_path,
            settings,
            inbox=inbox,
            log_name="first.log",
            env={"OCR_INBOX_FAULT_POINT": "archive.copied"},
        )
        try:
            source = drop(inbox / "march" / "scan.png", png_bytes(1, mark=43))
            first.wait_for("fault_point.reached", point="archive.copied", timeout=120)
        finally:
            first.kill()
        # Killed between the copy and the removal: the copy is whole, the input still there.
        assert source.exists()
        assert (archive / "march" / "scan-2.png").read_bytes() == png_bytes(1, mark=43)

        second = start_daemon(tmp_path, settings, inbox=inbox, log_name="second.log")
        try:
            moved = second.wait_for("file.archived", why="resumed")[0]
            assert moved["to"] == str(archive / "march" / "scan-2.png")
            second.wait_ready()
            later = drop(inbox / "later.png", png_bytes(2, mark=43))
            assert wait_outcome(second, later)["event"] == "file.done"
            second.wait_for("file.archived", file=str(later), why="done")
            assert not second.find("file.vanished")
            assert not second.find("file.done", file=str(source))  # not done a second time
        finally:
            assert second.stop() == 0
        assert _files(inbox) == []
        assert _files(archive) == [
            "later.png",
            "later.png.ocr.json",
            "later.png.ocr.md",
            "march/scan-2.png",
            "march/scan-2.png.ocr.json",
            "march/scan-2.png.ocr.md",
            "march/scan.png",
        ]
        assert (archive / "march" / "scan.png").read_bytes() == b"someone else's file"
        record = json.loads((archive / "march" / "scan-2.png.ocr.json").read_text())
        assert record["inbox"] == "scans"


def test_failed_files_go_to_failed_dir_and_deletion_needs_asking(tmp_path: Path) -> None:
    """A failed input moves with its sidecar to failed_dir; delete_after_success removes a done one,
    its outputs (in output_dir) kept."""
    inbox, failed, out = tmp_path / "scans", tmp_path / "failed", tmp_path / "out"
    inbox.mkdir()
    settings = _settings(
        tmp_path, failed_dir=str(failed), delete_after_success=True, output_dir=str(out)
    )
    daemon = start_daemon(tmp_path, settings, inbox=inbox)
    try:
        daemon.wait_ready()
        bad = drop(inbox / "bad-scan.png", png_bytes(3, mark=43))
        good = drop(inbox / "good.png", png_bytes(4, mark=43))
        assert wait_outcome(daemon, bad)["event"] == "file.failed"
        assert wait_outcome(daemon, good)["event"] == "file.done"
        daemon.wait_for("file.archived", file=str(bad), why="failed")
        daemon.wait_for("file.deleted", file=str(good))
    finally:
        assert daemon.stop() == 0
    assert _files(inbox) == []
    assert _files(failed) == ["bad-scan.png"]
    assert _files(out) == ["bad-scan.png.ocr.error.json", "good.png.ocr.json", "good.png.ocr.md"]
