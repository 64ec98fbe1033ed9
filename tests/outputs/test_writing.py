"""Outputs: atomic, never over a file we did not write, exactly one pair or one sidecar."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from daemon.outputs import writing as outputs
from daemon.outputs.writing import OutputError, OutputPaths, recorded, write_failure, write_success
from tests.support.privileges import run_python_obeying_permissions

PAYLOAD = {"input": {"sha256": "a" * 64}}


def _source(tmp_path: Path, name: str = "scan.png") -> Path:
    source = tmp_path / name
    source.write_bytes(b"input bytes")
    return source


def test_success_writes_the_pair_and_records_the_content(tmp_path: Path) -> None:
    """write_success leaves NAME.ocr.md and NAME.ocr.json; recorded() reads the content hash back."""
    source = _source(tmp_path)
    paths = write_success(source, {"md": b"hello\n"}, PAYLOAD)
    assert paths.markdown.read_text() == "hello\n"
    body = json.loads(paths.json.read_text())
    assert body["generator"] == "ocr-inbox"
    assert body["markdown_sha256"] == outputs.sha256_text("hello\n")
    assert recorded(source) == outputs.Recorded("done", "a" * 64)
    assert source.read_bytes() == b"input bytes"


def test_failure_replaces_our_pair_and_success_replaces_our_sidecar(tmp_path: Path) -> None:
    """Each input ends with exactly one pair or one error sidecar, whichever came last."""
    source = _source(tmp_path)
    paths = OutputPaths.beside(source)
    write_success(source, {"md": b"text"}, PAYLOAD)
    write_failure(source, {"input": {"sha256": "b" * 64}, "error": {}})
    assert paths.error.exists() and not paths.markdown.exists() and not paths.json.exists()
    assert recorded(source) == outputs.Recorded("failed", "b" * 64)
    write_success(source, {"md": b"text again"}, PAYLOAD)
    assert paths.markdown.exists() and paths.json.exists() and not paths.error.exists()


def test_never_overwrites_a_file_we_did_not_write(tmp_path: Path) -> None:
    """A user's own scan.png.ocr.md (or .ocr.json, or sidecar) stops the write and stays intact."""
    source = _source(tmp_path)
    paths = OutputPaths.beside(source)
    paths.markdown.write_text("my own notes")
    with pytest.raises(OutputError) as caught:
        write_success(source, {"md": b"ocr text"}, PAYLOAD)
    assert caught.value.reason == "not_ours"
    assert paths.markdown.read_text() == "my own notes"
    assert not paths.json.exists()
    paths.error.write_text('{"mine": true}')
    with pytest.raises(OutputError):
        write_failure(source, PAYLOAD)
    assert paths.error.read_text() == '{"mine": true}'
    assert not list(tmp_path.glob(f"*{outputs.TEMP_SUFFIX}"))


def test_markdown_known_from_the_journal_is_ours(tmp_path: Path) -> None:
    """After a crash between the two renames, the journal's hash proves the Markdown is ours."""
    source = _source(tmp_path)
    paths = OutputPaths.beside(source)
    paths.markdown.write_text("half-committed")
    known = outputs.sha256_text("half-committed")
    write_success(source, {"md": b"complete"}, PAYLOAD, known_hashes=[known])
    assert paths.markdown.read_text() == "complete"


def test_symlink_at_an_output_path_is_not_written_through(tmp_path: Path) -> None:
    """A symlink named like our output is refused; its target is untouched."""
    source = _source(tmp_path)
    target = tmp_path / "elsewhere.txt"
    target.write_text("precious")
    OutputPaths.beside(source).markdown.symlink_to(target)
    with pytest.raises(OutputError) as caught:
        write_success(source, {"md": b"ocr"}, PAYLOAD)
    assert caught.value.reason == "not_ours"
    assert target.read_text() == "precious"


def test_before_commit_runs_before_the_renames(tmp_path: Path) -> None:
    """The journal hook sees every output's hash while no output of the set exists yet."""
    source = _source(tmp_path)
    paths = OutputPaths.beside(source)
    seen: list[tuple[list[str], bool]] = []
    write_success(
        source,
        {"md": b"abc", "pdf": b"%PDF-1.7 stand-in"},
        PAYLOAD,
        before_commit=lambda hashes: seen.append(
            (hashes, paths.markdown.exists() or paths.of("pdf").exists() or paths.json.exists())
        ),
    )
    assert seen == [
        ([outputs.sha256_text("abc"), outputs.sha256_bytes(b"%PDF-1.7 stand-in")], False)
    ]


def test_a_failing_write_leaves_no_temp_file(tmp_path: Path) -> None:
    """In a folder the daemon may not write, the error is 'permission' and nothing is left behind."""
    source = _source(tmp_path)
    tmp_path.chmod(0o555)  # the write below runs without root's permission override
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from daemon.outputs.writing import OutputError, write_success
        try:
            write_success(Path({str(source)!r}), {{"md": b"x"}}, {{}})
        except OutputError as error:
            print(error.reason)
        """
    )
    try:
        result = run_python_obeying_permissions(script)
    finally:
        tmp_path.chmod(0o755)
    assert result.stdout.strip() == "permission", result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.png"]


def test_stale_temp_files_are_removed(tmp_path: Path) -> None:
    """Temp files left by a killed daemon are cleaned at start; other files stay."""
    (tmp_path / "sub").mkdir()
    (tmp_path / f".a.png.ocr.md.1234{outputs.TEMP_SUFFIX}").write_text("x")
    (tmp_path / "sub" / f".b.png.ocr.json.99{outputs.TEMP_SUFFIX}").write_text("x")
    (tmp_path / "keep.png").write_text("x")
    assert outputs.remove_stale_temp_files([tmp_path], recursive=False) == 1
    assert outputs.remove_stale_temp_files([tmp_path], recursive=True) == 1
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["keep.png"]


def test_outputs_of_two_inputs_with_one_stem_do_not_collide(tmp_path: Path) -> None:
    """a.png and a.pdf get a.png.ocr.* and a.pdf.ocr.*: the full name is kept."""
    png, pdf = _source(tmp_path, "a.png"), _source(tmp_path, "a.pdf")
    write_success(png, {"md": b"png text"}, PAYLOAD)
    write_success(pdf, {"md": b"pdf text"}, PAYLOAD)
    assert (tmp_path / "a.png.ocr.md").read_text() == "png text"
    assert (tmp_path / "a.pdf.ocr.md").read_text() == "pdf text"


def test_a_daemon_sharing_a_folder_removes_only_its_own_temp_files(tmp_path: Path) -> None:
    """Temp files are named by their writer; a node's clean-up leaves another node's writes in progress."""
    from daemon.outputs.writing import _write_temp, writer_tag

    mine, theirs = writer_tag("gpu1-aaaa"), writer_tag("gpu2-bbbb")
    assert mine != theirs and len(mine) == 8
    own = _write_temp(tmp_path / "a.ocr.md", b"x", mine)
    other = _write_temp(tmp_path / "b.ocr.md", b"y", theirs)
    assert f".w{mine}." in own.name
    assert outputs.remove_stale_temp_files([tmp_path], recursive=False, writers={mine: None}) == 1
    assert not own.exists() and other.exists()
    assert outputs.remove_stale_temp_files([tmp_path], recursive=False) == 1  # one daemon: all


def test_temp_files_of_departed_writers_are_removed_with_ones_own(tmp_path: Path) -> None:
    """Given its own mark and a departed node's, a node removes both kinds and leaves a live node's."""
    from daemon.outputs.writing import _write_temp, writer_tag

    mine, gone, alive = (writer_tag(name) for name in ("gpu1", "gpu2", "gpu3"))
    own = _write_temp(tmp_path / "a.ocr.md", b"x", mine)
    left = _write_temp(tmp_path / "b.ocr.md", b"y", gone)
    busy = _write_temp(tmp_path / "c.ocr.md", b"z", alive)
    assert (
        outputs.remove_stale_temp_files(
            [tmp_path], recursive=False, writers={mine: None, gone: None}
        )
        == 2
    )
    assert not own.exists() and not left.exists() and busy.exists()


def test_a_departed_writers_temp_files_newer_than_its_moment_are_kept(tmp_path: Path) -> None:
    """Of a writer given a moment, only temp files last modified before it go (newer: it started again)."""
    from daemon.outputs.writing import _write_temp, writer_tag

    gone = writer_tag("gpu2")
    old = _write_temp(tmp_path / "a.ocr.md", b"x", gone)
    new = _write_temp(tmp_path / "b.ocr.md", b"y", gone)
    moment = new.stat().st_mtime - 30
    os.utime(old, (moment - 1, moment - 1))
    assert outputs.remove_stale_temp_files([tmp_path], recursive=False, writers={gone: moment}) == 1
    assert not old.exists() and new.exists()
