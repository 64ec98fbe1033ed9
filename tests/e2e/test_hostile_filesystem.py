"""Hostile file names, symlinks and folders through the running daemon.

Names with spaces, Unicode, newlines and leading dashes are ordinary names;
a name too long to carry our outputs, or not valid UTF-8, is refused with a
log line (never a crash loop); symlinks are never followed and never written
through; folders that appear with files already inside, and an inbox that is
deleted and recreated, are picked up. See docs/hostile-inputs.md.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.driver import Daemon, outputs_of, read_json, running_daemon
from harness.drops import faulty_settings, png_bytes
from harness.inbox import drop, outcomes_of, sha256_of, wait_outcome

pytestmark = pytest.mark.slow

RESCAN_SECONDS = 1.0
NAME_MAX = 255
LONGEST_OK = NAME_MAX - len(".ocr.error.json")  # 240 bytes: every output name fits


def png(seed: int) -> bytes:
    return png_bytes(seed, mark=9)


def fake_engine(root: Path, **watch: Any) -> dict[str, Any]:
    settings = faulty_settings(root / "inbox", root / "state")
    settings["watch"].update(rescan_interval_seconds=RESCAN_SECONDS, **watch)
    return settings


def bytes_name(raw: bytes) -> str:
    """A file name from raw bytes, as Python spells one that is not valid UTF-8."""
    return os.fsdecode(raw)


# Names that are ordinary, however odd: each gets its outputs under its own name.
ODD_NAMES = [
    "with  two spaces .png",
    "ünïcödé 文字 ✓.png",
    "café.png",  # precomposed é (NFC) ...
    "cafe\u0301.png",  # ... and e + combining accent (NFD): two files, two sets of outputs
    "new\nline.png",
    "tab\there.png",
    "-rf.png",
    "--help.png",
    "a" * (LONGEST_OK - 4) + ".png",  # 240 bytes: the longest name whose outputs fit
    "é" * ((LONGEST_OK - 4) // 2) + ".png",  # 240 bytes of two-byte characters
    "a.png",  # a.png and a.pdf: one stem, two inputs, no output collides
]
# Names no output can carry: refused with a log line, nothing written.
REFUSED_NAMES = {
    "b" * (LONGEST_OK - 3) + ".png": "name_too_long",  # 241 bytes
    "c" * (NAME_MAX - 4) + ".png": "name_too_long",  # 255 bytes, the filesystem's limit
    "文" * 80 + ".png": "name_too_long",  # 244 bytes in 84 characters
    bytes_name(b"latin1-\xe9t\xe9.png"): "name_not_utf8",
}


@dataclass
class Names:
    daemon: Daemon
    inbox: Path
    outside: Path
    hashes: dict[Path, str]  # every input dropped, with its content hash
    outside_before: dict[str, bytes]  # everything under `outside`, before the daemon saw it
    normal: Path
    done_before_rescans: Counter[str]


@pytest.fixture(scope="module")
def names(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Names]:
    """One recursive daemon gets every odd name, symlink and moved-in folder, then a normal file."""
    root = tmp_path_factory.mktemp("names")
    inbox, outside = root / "inbox", root / "outside"
    (outside / "folder" / "deeper").mkdir(parents=True)
    for index, relative in enumerate(["target.png", "folder/x.png", "folder/deeper/y.png"]):
        (outside / relative).write_bytes(png(1000 + index))
    (outside / "precious.txt").write_text("not the daemon's to write\n")
    outside_before = snapshot(outside)
    # A folder that is moved into the inbox with its files already in it.
    arriving = root / "arriving"
    (arriving / "nested").mkdir(parents=True)
    hashes: dict[Path, str] = {}
    for index, relative in enumerate(["one.png", "two.pdf", "nested/three.png"]):
        data = png(2000 + index)
        if relative.endswith(".pdf"):
            data = pdf_bytes()
        (arriving / relative).write_bytes(data)
        hashes[inbox / "arrived" / relative] = hashlib.sha256(data).hexdigest()

    with running_daemon(root, fake_engine(root, recursive=True)) as daemon:
        daemon.wait_ready()
        for index, name in enumerate([*ODD_NAMES, *REFUSED_NAMES]):
            path = drop(inbox / name, png(index))
            hashes[path] = sha256_of(path)
        pdf = drop(inbox / "a.pdf", pdf_bytes())
        hashes[pdf] = sha256_of(pdf)
        inside = drop(inbox / "real-inside.png", png(500))
        hashes[inside] = sha256_of(inside)
        os.symlink(outside / "target.png", inbox / "link-out.png")
        os.symlink(inside, inbox / "link-in.png")
        os.symlink(outside / "folder", inbox / "linked-folder")
        os.symlink(root / "nowhere.png", inbox / "dangling.png")
        os.symlink(outside / "precious.txt", inbox / "victim.png.ocr.md")
        victim = drop(inbox / "victim.png", png(600))
        hashes[victim] = sha256_of(victim)
        arriving.rename(inbox / "arrived")
        for path in hashes:
            wait_outcome(daemon, path)
        normal = drop(inbox / "normal-after.png", png(700))
        wait_outcome(daemon, normal)
        done = Counter(record["file"] for record in daemon.find("file.done"))
        daemon.wait_for_rescans(3)  # rescans come and go: nothing is taken up again
        yield Names(daemon, inbox, outside, hashes, outside_before, normal, done)


def pdf_bytes() -> bytes:
    from tests.support import hostile

    return hostile.pdf_document([hostile.PdfPage(200, 100, lines=["pdf"])])


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (links not followed) with its bytes."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found[str(path.relative_to(folder))] = path.read_bytes()
    return found


@pytest.mark.parametrize("name", [*ODD_NAMES, "a.pdf"], ids=repr)
def test_odd_names_get_outputs_under_their_own_name(names: Names, name: str) -> None:
    """Spaces, Unicode (NFC and NFD), newlines, leading dashes, 240 bytes: outputs beside, once."""
    path = names.inbox / name
    assert set(outputs_of(path)) == {"md", "json"}
    document = read_json(outputs_of(path)["json"])
    assert document["input"]["name"] == name
    assert document["input"]["sha256"] == names.hashes[path]
    assert [record["event"] for record in outcomes_of(names.daemon, path)] == ["file.done"]


def test_same_stem_different_types_do_not_collide(names: Names) -> None:
    """a.png and a.pdf each get their own pair of outputs, describing their own content."""
    png_json = read_json(outputs_of(names.inbox / "a.png")["json"])
    pdf_json = read_json(outputs_of(names.inbox / "a.pdf")["json"])
    assert (png_json["input"]["format"], pdf_json["input"]["format"]) == ("png", "pdf")
    assert png_json["input"]["sha256"] != pdf_json["input"]["sha256"]


@pytest.mark.parametrize("name", sorted(REFUSED_NAMES), ids=lambda name: name[:12])
def test_name_that_cannot_carry_outputs_is_refused_once_with_a_clear_log_line(
    names: Names, name: str
) -> None:
    """Too long for NAME.ocr.error.json, or not UTF-8: one file.failed line, no outputs, no loop."""
    path = names.inbox / name
    records = outcomes_of(names.daemon, path)
    assert [record["event"] for record in records] == ["file.failed"]  # once, rescans or not
    assert records[0]["code"] == REFUSED_NAMES[name]
    assert "rename the file" in records[0]["error"]
    # Listed, not stat()ed: NAME.ocr.md itself may be too long to stat.
    assert not [entry for entry in os.listdir(names.inbox) if entry.startswith(name + ".")]
    assert sha256_of(path) == names.hashes[path]


def test_long_name_message_says_how_long_a_name_may_be(names: Names) -> None:
    """The name_too_long message names the name's length and the longest that works (240 bytes)."""
    path = names.inbox / ("b" * (LONGEST_OK - 3) + ".png")
    [record] = outcomes_of(names.daemon, path)
    assert "241 bytes" in record["error"] and f"at most {LONGEST_OK} bytes" in record["error"]


def test_symlinks_are_never_followed_and_never_written_through(names: Names) -> None:
    """Links to files and folders inside or outside get no outputs; nothing outside changes."""
    for link in ("link-out.png", "link-in.png", "dangling.png", "linked-folder"):
        assert outputs_of(names.inbox / link) == {}, link
        assert not outcomes_of(names.daemon, names.inbox / link), link
    assert snapshot(names.outside) == names.outside_before
    assert not any(
        record["file"].startswith(str(names.inbox / "linked-folder"))
        for record in names.daemon.events()
        if "file" in record
    )
    [noted] = names.daemon.find("watch.symlink_outside", path=str(names.inbox / "link-out.png"))
    assert noted["target"] == str(names.outside / "target.png")
    # A link's target inside the inbox is processed under its own name.
    assert set(outputs_of(names.inbox / "real-inside.png")) == {"md", "json"}


def test_symlink_at_an_output_path_is_not_written_through(names: Names) -> None:
    """victim.png.ocr.md is a link out of the inbox: the file fails as output_in_the_way instead."""
    victim = names.inbox / "victim.png"
    [record] = outcomes_of(names.daemon, victim)
    assert (record["event"], record["reason"]) == ("file.failed", "output_in_the_way")
    assert (names.inbox / "victim.png.ocr.md").is_symlink()
    assert (names.outside / "precious.txt").read_text() == "not the daemon's to write\n"


def test_folder_moved_in_with_files_inside_is_processed(names: Names) -> None:
    """A folder renamed into a recursive inbox has every file in it (nested too) done."""
    arrived = names.inbox / "arrived"
    for relative in ("one.png", "two.pdf", "nested/three.png"):
        path = arrived / relative
        assert set(outputs_of(path)) == {"md", "json"}, relative
        assert read_json(outputs_of(path)["json"])["input"]["sha256"] == names.hashes[path]


def test_everything_is_done_once_and_the_daemon_goes_on(names: Names) -> None:
    """Inputs unchanged, no file done twice across rescans, no temp files, a normal file after."""
    for path, digest in names.hashes.items():
        assert sha256_of(path) == digest, path
    done = Counter(record["file"] for record in names.daemon.find("file.done"))
    assert done == names.done_before_rescans
    assert max(done.values()) == 1
    assert names.daemon.find("file.done", file=str(names.normal))
    assert names.daemon.process.poll() is None
    assert not [p for p in names.inbox.rglob("*") if p.name.endswith(".ocr-inbox.tmp")]


# --- the inbox itself goes away ---------------------------------------------------------------


def test_inbox_deleted_and_recreated_is_watched_again(tmp_path: Path) -> None:
    """rm -r of the inbox, the daemon recreating it, then mkdir by hand with files in it: all seen."""
    inbox = tmp_path / "inbox"
    with running_daemon(tmp_path, fake_engine(tmp_path)) as daemon:
        daemon.wait_ready()
        first = drop(inbox / "before.png", png(1))
        wait_outcome(daemon, first)
        # Deleted: the daemon notices, creates it again (create_missing) and re-attaches.
        shutil.rmtree(inbox)
        daemon.wait_for("watch.inbox_created", inbox=str(inbox))
        daemon.wait_for("watch.inbox_attached", inbox=str(inbox), count=2)
        second = drop(inbox / "after-recreate.png", png(2))
        assert wait_outcome(daemon, second)["event"] == "file.done"
        assert set(outputs_of(second)) == {"md", "json"}
        # Replaced by another folder that already holds files (moved into place).
        replacement = tmp_path / "replacement"
        replacement.mkdir()
        drop(replacement / "came-with-the-folder.png", png(3))
        shutil.rmtree(inbox)
        replacement.rename(inbox)
        third = inbox / "came-with-the-folder.png"
        wait_outcome(daemon, third)
        normal = drop(inbox / "normal-after.png", png(4))
        wait_outcome(daemon, normal)
        for path in (third, normal):
            assert set(outputs_of(path)) == {"md", "json"}, path.name
        assert daemon.process.poll() is None
