"""Temp files of dead writers: removed at start, and while running once a node is known gone (real PostgreSQL)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import cast

import pytest

from daemon.journal.interface import Departure, FileKey, Journal
from daemon.journal.opening import open_journal
from daemon.journal.sqlite import SqliteJournal
from daemon.observing.metrics import Metrics
from daemon.outputs.paths import TEMP_SUFFIX
from daemon.outputs.writing import writer_tag
from daemon.settings import InboxProfile
from daemon.settings.sections import StateSettings
from daemon.supervising.sweeping import TempSweeper

LEASE = 60.0  # seconds: no node here goes silent; "gone" means closed
KEY = FileKey("scans", "a.png")
SHA = "a" * 64
BEFORE_DEATH = 3600.0  # age of a temp file written well before its node died


class Folders:
    """An inbox with a subfolder and an output folder, and temp files written into them by name."""

    def __init__(self, root: Path) -> None:
        self.inbox = root / "inbox"
        self.output = root / "out"
        (self.inbox / "sub").mkdir(parents=True)
        self.output.mkdir()
        self.profile = InboxProfile(
            name="scans",
            root=self.inbox,
            chain=("plain",),
            formats=("md",),
            recursive=True,
            mode="polling",
            settle_seconds=1.0,
            output_dir=self.output,
        )

    def temp(self, folder: Path, node: str, token: str, age: float = 0.0) -> Path:
        """A temp file of `node`'s, last written `age` seconds ago."""
        path = folder / f".{token}.png.ocr.md.w{writer_tag(node)}.{token}{TEMP_SUFFIX}"
        path.write_bytes(b"half")
        if age:
            written = time.time() - age
            os.utime(path, (written, written))
        return path


@pytest.fixture
def shared(pg_url: str, tmp_path: Path) -> Iterator[dict[str, Journal]]:
    """Three nodes on one fresh shared journal: "a" sweeps, "b" will die, "c" stays alive."""
    opened = {
        name: open_journal(
            StateSettings(dir=tmp_path / name, url=pg_url, node=name, lease_seconds=LEASE)
        )
        for name in ("a", "b", "c")
    }
    yield opened
    for journal in opened.values():
        journal.close()


def _sweeper(journal: Journal, folders: Folders, *, shared: bool) -> tuple[TempSweeper, Metrics]:
    metrics = Metrics()
    return TempSweeper(journal, metrics, profiles=lambda: [folders.profile], shared=shared), metrics


def _removed(metrics: Metrics, node: str) -> float | None:
    return metrics.registry.get_sample_value(
        "ocr_inbox_stale_temp_files_removed_total", {"node": node}
    )


def test_a_node_found_gone_while_running_has_its_temp_files_removed_once(
    shared: dict[str, Journal], tmp_path: Path
) -> None:
    """The next look after a node dies removes its temp files in inbox and output folder, once; live writers' stay."""
    folders = Folders(tmp_path)
    sweeper, metrics = _sweeper(shared["a"], folders, shared=True)
    sweeper.at_start()
    dead = [
        folders.temp(folders.inbox / "sub", "b", "one", age=BEFORE_DEATH),
        folders.temp(folders.output, "b", "two", age=BEFORE_DEATH),
    ]
    alive = [
        folders.temp(folders.inbox, "c", "three", age=BEFORE_DEATH),
        folders.temp(folders.inbox, "a", "four", age=BEFORE_DEATH),
    ]
    sweeper.look()
    assert all(path.exists() for path in dead + alive)  # b is alive yet
    shared["b"].close()
    sweeper.look()
    assert not any(path.exists() for path in dead)
    assert all(path.exists() for path in alive)  # c's and this node's own writes in progress
    assert _removed(metrics, "a") == 2
    # Swept once: the next looks walk no folder for b again.
    later = folders.temp(folders.inbox, "b", "five", age=BEFORE_DEATH)
    sweeper.look()
    assert later.exists() and _removed(metrics, "a") == 2


def test_a_node_that_came_back_and_died_again_is_swept_again(
    shared: dict[str, Journal], tmp_path: Path, pg_url: str
) -> None:
    """A node started again under its name and gone again is a new departure: its new leftovers go too."""
    folders = Folders(tmp_path)
    sweeper, _ = _sweeper(shared["a"], folders, shared=True)
    shared["b"].close()
    sweeper.at_start()
    again = open_journal(
        StateSettings(dir=tmp_path / "b", url=pg_url, node="b", lease_seconds=LEASE)
    )
    sweeper.look()  # b is back: forgotten
    left = folders.temp(folders.inbox, "b", "one", age=BEFORE_DEATH)
    again.close()
    sweeper.look()
    assert not left.exists()


def test_a_dead_nodes_lease_taken_over_is_no_new_departure(pg_url: str, tmp_path: Path) -> None:
    """Its gone moment moves earlier when another node takes its last claim over: not swept again."""
    lease = 0.6
    a, b = (
        open_journal(StateSettings(dir=tmp_path / n, url=pg_url, node=n, lease_seconds=lease))
        for n in ("a", "b")
    )
    try:
        a.admit(KEY, 1, 1, SHA)
        assert b.claim(KEY)
        b.heartbeat.stop()  # dead: its lease runs out
        folders = Folders(tmp_path)
        sweeper, metrics = _sweeper(a, folders, shared=True)
        deadline = time.monotonic() + 10
        while not a.departed():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        [first] = a.departed()
        sweeper.look()
        assert a.claim(KEY)  # taken over: b's claims no longer hold its moment up
        [later] = a.departed()
        assert later.since < first.since
        left = folders.temp(folders.inbox, "b", "one", age=BEFORE_DEATH)
        sweeper.look()
        assert left.exists() and _removed(metrics, "a") == 0
    finally:
        a.close()
        b.close()


def test_at_start_a_node_removes_its_own_and_departed_nodes_temp_files(
    shared: dict[str, Journal], tmp_path: Path
) -> None:
    """Starting, a node removes its own leftovers (of any age) and a closed node's, never a live node's."""
    folders = Folders(tmp_path)
    shared["b"].close()
    own = folders.temp(folders.output, "a", "one")
    dead = folders.temp(folders.inbox, "b", "two", age=BEFORE_DEATH)
    alive = folders.temp(folders.inbox, "c", "three", age=BEFORE_DEATH)
    sweeper, metrics = _sweeper(shared["a"], folders, shared=True)
    sweeper.at_start()
    assert not own.exists() and not dead.exists() and alive.exists()
    assert _removed(metrics, "a") == 2
    again = folders.temp(folders.inbox, "b", "four", age=BEFORE_DEATH)
    sweeper.look()  # b was swept at start: not again
    assert again.exists()


def test_a_departed_nodes_temp_file_newer_than_its_departure_survives(
    shared: dict[str, Journal], tmp_path: Path
) -> None:
    """Of a node gone since a moment, temp files older than it (less the clock margin) go, newer ones stay."""
    folders = Folders(tmp_path)
    shared["b"].close()
    [gone] = shared["a"].departed()
    margin = gone.lease_seconds / 3
    older = folders.temp(folders.inbox, "b", "one", age=time.time() - gone.since + margin + 1)
    within = folders.temp(folders.inbox, "b", "two", age=time.time() - gone.since + margin - 1)
    newer = folders.temp(folders.output, "b", "three")
    sweeper, _ = _sweeper(shared["a"], folders, shared=True)
    sweeper.at_start()
    assert not older.exists()
    assert within.exists() and newer.exists()


class StartsAgainAfterAnswering:
    """Node a's real journal; right after departed() answers, node b starts again and begins a write."""

    def __init__(self, journal: Journal, start_again: Callable[[], None]) -> None:
        self.journal = journal
        self.start_again = start_again

    def departed(self) -> Sequence[Departure]:
        answer = self.journal.departed()
        self.start_again()
        return answer

    def __getattr__(self, name: str) -> object:
        return getattr(self.journal, name)


def test_a_node_started_again_between_the_answer_and_the_sweep_keeps_its_new_write(
    shared: dict[str, Journal], tmp_path: Path, pg_url: str
) -> None:
    """The race with a restart: the journal says b is gone, b starts again and writes; the sweep keeps that write."""
    folders = Folders(tmp_path)
    left = folders.temp(folders.inbox, "b", "one", age=BEFORE_DEATH)
    shared["b"].close()
    writes: list[Path] = []

    def start_again() -> None:
        state = StateSettings(dir=tmp_path / "b", url=pg_url, node="b", lease_seconds=LEASE)
        shared["b again"] = open_journal(state)
        writes.append(folders.temp(folders.inbox, "b", "two"))

    racing = cast(Journal, StartsAgainAfterAnswering(shared["a"], start_again))
    sweeper, _ = _sweeper(racing, folders, shared=True)
    sweeper.look()
    assert not left.exists()
    assert [path.exists() for path in writes] == [True]
    assert shared["a"].departed() == []  # b is back


def test_one_daemon_alone_removes_every_temp_file_at_start_and_none_while_running(
    tmp_path: Path,
) -> None:
    """With the SQLite journal the folders are this daemon's: every temp file goes at start, none later."""
    folders = Folders(tmp_path)
    journal = SqliteJournal.open(None)
    first = [folders.temp(folders.inbox, "x", "one"), folders.temp(folders.output, "y", "two")]
    sweeper, metrics = _sweeper(journal, folders, shared=False)
    sweeper.at_start()
    assert not any(path.exists() for path in first)
    later = folders.temp(folders.inbox, "x", "three")
    sweeper.look()
    assert later.exists() and _removed(metrics, journal.node) == 2
