"""Moving an input into an archive tree: names that never overwrite, and a move finished after a crash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.outputs.archive import destination, move


def test_a_clash_gets_a_suffix_and_the_tree_is_mirrored(tmp_path: Path) -> None:
    """scan.png taken in the archive: scan-2.png, then scan-3.png; folders made below the root."""
    inbox, root = tmp_path / "in", tmp_path / "archive"
    (inbox / "a").mkdir(parents=True)
    source = inbox / "a" / "scan.png"
    source.write_bytes(b"page")
    assert destination(source, inbox, root) == root / "a" / "scan.png"
    (root / "a" / "scan.png").write_bytes(b"theirs")
    (root / "a" / "scan-2.png").write_bytes(b"theirs too")
    assert destination(source, inbox, root) == root / "a" / "scan-3.png"
    assert destination(inbox / "a" / "README", inbox, root) == root / "a" / "README"


def test_move_takes_companions_and_finishes_after_a_crash(tmp_path: Path) -> None:
    """Run again after the copy landed (a crash before the removal): the input goes, no second copy."""
    inbox, root = tmp_path / "in", tmp_path / "archive"
    inbox.mkdir()
    root.mkdir()
    source, output = inbox / "scan.png", inbox / "scan.png.ocr.md"
    source.write_bytes(b"page")
    output.write_text("text\n")
    target = root / "scan-2.png"
    # What a kill between the copy and the removal leaves: both copies.
    target.write_bytes(b"page")
    stat = source.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    move(source, target, [(output, root / "scan-2.png.ocr.md")])
    assert sorted(p.name for p in root.iterdir()) == ["scan-2.png", "scan-2.png.ocr.md"]
    assert list(inbox.iterdir()) == []


def test_a_name_taken_by_someone_else_is_never_overwritten(tmp_path: Path) -> None:
    """The recorded name holds a different file: FileExistsError, both files kept."""
    source, target = tmp_path / "scan.png", tmp_path / "archive.png"
    source.write_bytes(b"page")
    target.write_bytes(b"another file")
    with pytest.raises(FileExistsError):
        move(source, target)
    assert (source.read_bytes(), target.read_bytes()) == (b"page", b"another file")
