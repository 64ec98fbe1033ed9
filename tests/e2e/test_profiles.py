"""Inbox profiles through the running daemon: two chains at once, and a read-only inbox with output_dir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from harness import pages
from harness.driver import base_settings, running_daemon, write_settings
from harness.drops import png_bytes
from harness.inbox import drop, wait_outcome
from harness.tiny_models import tiny_model
from tests.support.tools import require_tool, unavailable

pytestmark = pytest.mark.slow

LINES = ("Invoice number 48213 for the harbour office",)


def _table_settings(root: Path, **inboxes: dict[str, Any]) -> dict[str, Any]:
    """Test settings watching only [inboxes.NAME] tables."""
    settings = base_settings(root / "unused", root / "state")
    del settings["watch"]["inboxes"]
    settings["inboxes"] = inboxes
    return settings


def test_two_inboxes_with_different_chains_are_served_at_once(
    tmp_path: Path, tiny_models_root: Path
) -> None:
    """The embedded engine and a tiny VLM both load at start (a shared VLM once); each inbox's files
    go to its own model, with the inbox in the JSON, the log lines and the metric label."""
    vlm = tiny_model("qwen2_vl", tiny_models_root, "brief")
    letters, photos, boards = (tmp_path / name for name in ("letters", "photos", "boards"))
    settings = _table_settings(
        tmp_path,
        letters={"path": str(letters), "chain": ["rapid"]},
        photos={"path": str(photos), "chain": ["tiny-vlm", "rapid"], "formats": ["json", "txt"]},
        boards={"path": str(boards), "chain": ["tiny-vlm"], "prompt": "Read the whiteboard."},
    )
    settings["models"] = {"tiny-vlm": {"engine": "hf_vlm", "path": str(vlm), "max_new_tokens": 8}}
    page = pages.render_page(LINES, width=620, height=200, font_px=28, margin=30)
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready(timeout=300)
        loaded = daemon.wait_for("model.loaded", count=2, timeout=300)
        assert sorted(record["model"] for record in loaded) == ["rapid", "tiny-vlm"]
        letter = pages.save_png(page, letters / "letter.png")
        photo = pages.save_png(page, photos / "photo.png")
        board = pages.save_png(page, boards / "board.png")
        outcomes = {
            path: wait_outcome(daemon, path, timeout=300) for path in (letter, photo, board)
        }
        for path, inbox, model in (
            (letter, "letters", "rapid"),
            (photo, "photos", "tiny-vlm"),
            (board, "boards", "tiny-vlm"),
        ):
            record = outcomes[path]
            assert (record["event"], record["inbox"], record["model"]) == (
                "file.done",
                inbox,
                model,
            )
            document = json.loads(Path(f"{path}.ocr.json").read_text())
            assert document["inbox"] == inbox
            assert document["model"]["name"] == model
            assert daemon.metric("ocr_inbox_files_total", inbox=inbox, outcome="done") == 1
            assert daemon.journal_state(path) == "done"
        assert Path(f"{photo}.ocr.txt").is_file() and not Path(f"{photo}.ocr.md").exists()
        assert "48213" in Path(f"{letter}.ocr.md").read_text()
        assert len(daemon.find("model.loaded")) == 2  # the VLM two inboxes share: loaded once


def test_an_inboxs_own_chain_falls_back_and_waits_on_its_own(tmp_path: Path) -> None:
    """A model that cannot load moves photos to its fallback and holds the boards' file (no
    sidecar) while letters flow; each inbox's chain position is on /metrics; the cool-down retries."""
    letters, photos, boards = (tmp_path / name for name in ("letters", "photos", "boards"))
    settings = _table_settings(
        tmp_path,
        letters={"path": str(letters), "chain": ["steady"]},
        photos={"path": str(photos), "chain": ["broken", "steady"]},
        boards={"path": str(boards), "chain": ["broken"]},
    )
    settings["models"] = {
        "steady": {"engine": "faulty"},
        "broken": {"engine": "faulty", "load_fault": "error"},
    }
    settings["recovery"] = {"cooldown_seconds": 4}
    for folder in (letters, photos, boards):
        folder.mkdir()
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready()
        daemon.wait_for("chain.exhausted", where=lambda r: r.get("inboxes") == ["boards"])
        board = drop(boards / "board.png", png_bytes(seed=1))
        letter = drop(letters / "letter.png", png_bytes(seed=2))
        photo = drop(photos / "photo.png", png_bytes(seed=3))
        assert wait_outcome(daemon, letter)["model"] == "steady"
        assert wait_outcome(daemon, photo)["model"] == "steady"
        assert daemon.metric("ocr_inbox_chain_position", inbox="letters") == 0
        assert daemon.metric("ocr_inbox_chain_position", inbox="photos") == 1
        assert daemon.metric("ocr_inbox_chain_position", inbox="boards") == -1
        assert daemon.metric("ocr_inbox_active_model_info", inbox="photos", model="steady") == 1
        with urllib.request.urlopen(daemon.url("/readyz"), timeout=10) as reply:
            assert reply.status == 200  # ready: the other inboxes flow
            assert "no model left for inbox(es) boards" in reply.read().decode()
        [moved] = daemon.find("chain.fallback", inboxes=["photos"])
        assert (moved["from_model"], moved["to_model"]) == ("broken", "steady")
        # The cool-down tries the broken model again for both chains; it fails again.
        daemon.wait_for("chain.retry_first", where=lambda r: r.get("inboxes") == ["boards"])
        daemon.wait_for("model.load_failed", count=2)
        assert daemon.journal_state(board) == "pending"
        assert not Path(f"{board}.ocr.error.json").exists()
        assert not Path(f"{board}.ocr.json").exists()
        assert daemon.find("file.done", file=str(board)) == []
        assert daemon.find("file.failed", file=str(board)) == []


@contextmanager
def read_only_view(source: Path, view: Path) -> Iterator[Path]:
    """`source` bind-mounted read-only at `view` (needs root, as the tmpfs tests do)."""
    mount, umount = require_tool("mount"), require_tool("umount")
    view.mkdir(parents=True)
    made = subprocess.run(
        [mount, "--bind", str(source), str(view)], capture_output=True, text=True, check=False
    )
    if made.returncode != 0:
        unavailable(f"cannot bind-mount here: {made.stderr.strip()}")
    try:
        remount = [mount, "-o", "remount,bind,ro", str(view)]
        subprocess.run(remount, capture_output=True, text=True, check=True)
        yield view
    finally:
        subprocess.run([umount, "-l", str(view)], check=False)


def test_a_read_only_inbox_with_output_dir_gets_a_mirrored_tree(tmp_path: Path) -> None:
    """Every file of a read-only inbox is done, its outputs in output_dir's mirrored tree, nothing
    written in the inbox; a symlink planted in the tree is not written through."""
    source, out, elsewhere = tmp_path / "scans", tmp_path / "out", tmp_path / "elsewhere"
    (source / "2026" / "march").mkdir(parents=True)
    (source / "trap").mkdir()
    elsewhere.mkdir()
    top = drop(source / "top.png", png_bytes(1, mark=41))
    deep = drop(source / "2026" / "march" / "deep.png", png_bytes(2, mark=41))
    trapped = drop(source / "trap" / "t.png", png_bytes(3, mark=41))
    out.mkdir()
    (out / "trap").symlink_to(elsewhere)  # would lead the outputs of trap/ out of the tree
    before = sorted(str(path.relative_to(source)) for path in source.rglob("*"))
    with read_only_view(source, tmp_path / "inbox") as inbox:
        settings = _table_settings(
            tmp_path,
            scans={"path": str(inbox), "recursive": True, "output_dir": str(out), "chain": ["f"]},
        )
        settings["models"] = {"f": {"engine": "faulty"}}
        with running_daemon(tmp_path, settings) as daemon:
            daemon.wait_ready()
            for path in (top, deep):
                seen = inbox / path.relative_to(source)
                assert wait_outcome(daemon, seen)["event"] == "file.done"
                mirrored = out / path.relative_to(source)
                document = json.loads(Path(f"{mirrored}.ocr.json").read_text())
                assert document["inbox"] == "scans"
                assert Path(f"{mirrored}.ocr.md").is_file()
            trap = wait_outcome(daemon, inbox / trapped.relative_to(source))
            assert trap["event"] == "file.failed"
            assert trap["reason"] == "output_in_the_way"
            assert not daemon.find("output.error", reason="permission")
        assert sorted(str(path.relative_to(source)) for path in source.rglob("*")) == before
        assert os.listdir(elsewhere) == []


def test_sighup_applies_profile_changes(tmp_path: Path) -> None:
    """A table added by SIGHUP is watched with its own formats and chain; a changed table's
    formats apply to the next file."""
    first, second = tmp_path / "first", tmp_path / "second"
    settings = _table_settings(tmp_path, first={"path": str(first), "chain": ["a"]})
    settings["models"] = {"a": {"engine": "faulty"}, "b": {"engine": "faulty"}}
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready()
        before = drop(first / "before.png", png_bytes(1, mark=47))
        assert wait_outcome(daemon, before)["model"] == "a"
        settings["inboxes"]["first"]["formats"] = ["json", "txt"]
        settings["inboxes"]["second"] = {"path": str(second), "chain": ["b"]}
        write_settings(daemon.config, settings)
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for("settings.reloaded")
        daemon.wait_for("watch.inbox_attached", name="second")
        after = drop(first / "after.png", png_bytes(2, mark=47))
        other = drop(second / "other.png", png_bytes(3, mark=47))
        assert wait_outcome(daemon, after)["formats"] == ["json", "txt"]
        done = wait_outcome(daemon, other)
        assert (done["inbox"], done["model"]) == ("second", "b")
        assert daemon.metric("ocr_inbox_files_total", inbox="second", outcome="done") == 1
