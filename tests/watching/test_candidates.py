"""Names: which files are ours to process, judged by name alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.watching.candidates import OUTPUT_SUFFIXES, SUPPORTED_SUFFIXES, is_ignored


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("scan.png", None),
        ("SCAN.PNG", None),
        ("photo.JPeG", None),
        ("doc.pdf", None),
        ("fax.tif", None),
        ("fax.tiff", None),
        ("pic.webp", None),
        ("pic.bmp", None),
        ("anim.gif", None),
        (".scan.png", "hidden"),
        ("scan.png.part", "partial"),
        ("scan.png.crdownload", "partial"),
        ("scan.png.tmp", "temporary"),
        ("scan.png~", "temporary"),
        ("~$report.pdf", "lock_file"),
        (".~lock.report.pdf#", "lock_file"),
        (".syncthing.scan.png.tmp", "sync_temp"),
        ("scan.png.ocr.md", "own_output"),
        ("scan.png.ocr.json", "own_output"),
        ("scan.png.ocr.error.json", "own_output"),
        ("scan.pdf.ocr.pdf", "own_output"),  # a searchable PDF is never OCRed again
        ("scan.png.ocr.txt", "own_output"),
        ("scan.png.ocr.hocr", "own_output"),
        ("Scan.PDF.OCR.PDF", "own_output"),
        ("SCAN.PNG.OCR.MD", "own_output"),
        (".scan.png.ocr.md.1a2b3c4d.ocr-inbox.tmp", "own_temp"),
        ("notes.txt", "unsupported_type"),
        ("README", "unsupported_type"),
        ("archive.png.zip", "unsupported_type"),
    ],
)
def test_is_ignored_reasons(name: str, reason: str | None) -> None:
    """is_ignored names the reason a file name is not ours, or None for a candidate."""
    assert is_ignored(Path(name)) == reason


def test_is_ignored_hidden_folders_below_the_inbox_only(tmp_path: Path) -> None:
    """A hidden folder under the inbox hides its files; hidden folders above the inbox do not."""
    inbox = tmp_path / ".config" / "inbox"
    assert is_ignored(inbox / "a.png", inbox) is None
    assert is_ignored(inbox / "sub" / "a.png", inbox) is None
    assert is_ignored(inbox / ".trash" / "a.png", inbox) == "hidden"
    assert is_ignored(inbox / "sub" / ".cache" / "a.png", inbox) == "hidden"
    assert is_ignored(tmp_path / "elsewhere.png", inbox) == "outside_inbox"
    assert is_ignored(Path("sub/.git/a.png")) == "hidden"
    assert is_ignored(inbox / "a.png") is None


def test_suffix_constants() -> None:
    """The supported types and the output suffixes are the agreed ones, lower case."""
    assert {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".pdf"} == set(
        SUPPORTED_SUFFIXES
    )
    assert set(OUTPUT_SUFFIXES) == {
        ".ocr.md",
        ".ocr.json",
        ".ocr.txt",
        ".ocr.hocr",
        ".ocr.pdf",
        ".ocr.error.json",
    }


# --- hand-on --------------------------------------------------------------------
