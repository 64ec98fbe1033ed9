"""10,000 files dropped into one folder of a running daemon: each gets its outputs exactly once.

Correctness only (bench/ measures how fast a backlog drains): the burst is
bigger than the kernel's inotify queue (fs.inotify.max_queued_events, 16,384
by default, against four events per file written and renamed), so lost events
must be made up for by rescans, and the rescans must not hand anything on twice.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from harness.driver import read_json, running_daemon, wait_until
from harness.drops import faulty_settings
from harness.inbox import drop

pytestmark = pytest.mark.slow

FILES = 10_000
RESCAN_SECONDS = 5.0


def tiny_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (4, 4), 255).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.timeout(900)
def test_ten_thousand_files_in_one_folder_each_done_exactly_once(tmp_path: Path) -> None:
    """A burst of 10,000 tiny PNGs: 10,000 file.done lines, one pair of outputs each, no repeats."""
    inbox = tmp_path / "inbox"
    settings = faulty_settings(inbox, tmp_path / "state")
    settings["watch"]["rescan_interval_seconds"] = RESCAN_SECONDS
    settings["log"]["level"] = "info"  # 10,000 files make enough lines as it is
    png = tiny_png()
    names = [f"page-{index:05d}.png" for index in range(FILES)]
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready()
        for index, name in enumerate(names):
            # Distinct content per file (a trailer after IEND), written then renamed in.
            drop(inbox / name, png + index.to_bytes(4, "big"))
        wait_until(lambda: len(daemon.find("file.done")) >= FILES, timeout=800, interval=1.0)
        daemon.wait_for_rescans(1)  # a rescan after the last file: nothing is done again
        done = Counter(record["file"] for record in daemon.find("file.done"))
        assert daemon.process.poll() is None
    assert done == Counter({str(inbox / name): 1 for name in names})
    assert not daemon.find("file.failed")
    expected = set(names)
    expected |= {name + ".ocr.md" for name in names} | {name + ".ocr.json" for name in names}
    assert set(os.listdir(inbox)) == expected
    for name in names[:: FILES // 20]:  # a sample: each JSON describes its own input
        document = read_json(inbox / (name + ".ocr.json"))
        assert document["input"]["name"] == name
