"""A set of outputs (md, json, txt, hocr, pdf) is one unit: complete, or not taken for done."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from daemon.outputs import writing as outputs
from daemon.outputs.writing import OutputError, OutputPaths, recorded, write_failure, write_success

PAYLOAD = {"input": {"sha256": "a" * 64}}
FULL = {"md": b"text\n", "txt": b"text\n", "hocr": b"<html/>", "pdf": b"%PDF-1.7 stand-in"}


def _source(tmp_path: Path) -> Path:
    source = tmp_path / "scan.pdf"
    source.write_bytes(b"input bytes")
    return source


def test_the_json_lists_every_output_with_its_hash(tmp_path: Path) -> None:
    """Every chosen output is written and listed in the JSON by name, hash and size."""
    source = _source(tmp_path)
    paths = write_success(source, FULL, PAYLOAD)
    body = json.loads(paths.json.read_text())
    assert set(body["outputs"]) == {"md", "txt", "hocr", "pdf"}
    assert body["outputs"]["pdf"] == {
        "file": "scan.pdf.ocr.pdf",
        "sha256": outputs.sha256_bytes(FULL["pdf"]),
        "bytes": len(FULL["pdf"]),
    }
    assert paths.of("pdf").read_bytes() == FULL["pdf"]
    assert recorded(source) == outputs.Recorded("done", "a" * 64)


def test_a_set_missing_a_listed_output_is_not_done(tmp_path: Path) -> None:
    """Remove or change one output of the set and the file no longer counts as done."""
    source = _source(tmp_path)
    paths = write_success(source, FULL, PAYLOAD)
    paths.of("pdf").write_bytes(b"%PDF- edited by someone")
    assert recorded(source) is None
    paths.of("pdf").unlink()
    assert recorded(source) is None


def test_a_crash_between_renames_leaves_no_finished_looking_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after some renames: the old JSON does not vouch for the new files, and the redo may replace them."""
    source = _source(tmp_path)
    write_success(source, FULL, PAYLOAD)
    noted: list[str] = []
    real_replace = os.replace
    renamed: list[str] = []

    def crash_after_two(src: str | Path, dst: str | Path) -> None:
        if len(renamed) == 2:
            raise KeyboardInterrupt  # stands for the process dying here
        real_replace(src, dst)
        renamed.append(str(dst))

    new = {format: data + b" (new content)" for format, data in FULL.items()}
    monkeypatch.setattr(outputs.os, "replace", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        write_success(source, new, {"input": {"sha256": "b" * 64}}, before_commit=noted.extend)
    monkeypatch.setattr(outputs.os, "replace", real_replace)
    # The next start removes the temp files the dead process left.
    assert outputs.remove_stale_temp_files([tmp_path], recursive=False) == 3
    # Two new files are in place, the JSON is the old one: not done for either content.
    found = recorded(source)
    assert found is None or found.sha256 != "b" * 64
    assert found is None  # the old set is broken too: the file is processed again
    # The redo overwrites the files the crash left, because the journal noted their hashes.
    write_success(source, new, {"input": {"sha256": "b" * 64}}, known_hashes=noted)
    assert recorded(source) == outputs.Recorded("done", "b" * 64)
    assert not [name for name in os.listdir(tmp_path) if name.endswith(outputs.TEMP_SUFFIX)]


def test_outputs_left_out_of_a_new_set_are_removed_if_ours(tmp_path: Path) -> None:
    """When the formats shrink, our older PDF goes with the new set; an edited one stays."""
    source = _source(tmp_path)
    paths = write_success(source, FULL, PAYLOAD)
    paths.of("hocr").write_bytes(b"<html>edited by a person</html>")
    write_success(source, {"md": b"text\n"}, PAYLOAD)
    assert not paths.of("pdf").exists() and not paths.of("txt").exists()
    assert paths.of("hocr").read_bytes() == b"<html>edited by a person</html>"
    assert recorded(source) == outputs.Recorded("done", "a" * 64)


def test_a_pdf_we_did_not_write_stops_the_set(tmp_path: Path) -> None:
    """A user's own scan.pdf.ocr.pdf is never overwritten: nothing of the set is written."""
    source = _source(tmp_path)
    paths = OutputPaths.beside(source)
    paths.of("pdf").write_bytes(b"%PDF- the user's own")
    with pytest.raises(OutputError) as caught:
        write_success(source, FULL, PAYLOAD)
    assert caught.value.reason == "not_ours"
    assert sorted(os.listdir(tmp_path)) == ["scan.pdf", "scan.pdf.ocr.pdf"]


def test_failure_removes_the_whole_set(tmp_path: Path) -> None:
    """An error sidecar replaces every output of our set; only the sidecar is left."""
    source = _source(tmp_path)
    write_success(source, FULL, PAYLOAD)
    write_failure(source, {"input": {"sha256": "c" * 64}, "error": {}})
    assert sorted(os.listdir(tmp_path)) == ["scan.pdf", "scan.pdf.ocr.error.json"]


def test_a_json_from_before_the_formats_still_vouches_for_its_markdown(tmp_path: Path) -> None:
    """A pair written by an earlier release (markdown_sha256, no "outputs") is still done, and ours to replace."""
    source = _source(tmp_path)
    paths = OutputPaths.beside(source)
    paths.markdown.write_text("old text\n")
    old = {"generator": "ocr-inbox", "input": {"sha256": "a" * 64}}
    old["markdown_sha256"] = outputs.sha256_text("old text\n")
    paths.json.write_text(json.dumps(old))
    assert recorded(source) == outputs.Recorded("done", "a" * 64)
    write_success(source, FULL, PAYLOAD)
    assert paths.markdown.read_bytes() == FULL["md"]
