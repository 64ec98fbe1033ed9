"""Several chains resident at once: inboxes with their own chains, on scripted workers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.journal.interface import FileKey
from daemon.journal.sqlite import SqliteJournal
from daemon.observing.metrics import Metrics
from daemon.settings import Settings
from daemon.supervising.arbiter import Supervisor
from daemon.supervising.inbox_chains import resident_heads, serving_chains, usable_after
from daemon.watching.intake import Arrival, content_key
from harness import pages
from tests.supervising.fakes import FakeClock, ScriptedWorkers


def _settings(tmp_path: Path, **recovery: object) -> Settings:
    return Settings.model_validate(
        {
            "models": {name: {"engine": "faulty"} for name in ("plain", "vlm")},
            "recovery": {"idle_fallback_seconds": 60, **recovery},
            "inboxes": {
                "letters": {"path": str(tmp_path / "letters"), "chain": ["plain"]},
                "photos": {"path": str(tmp_path / "photos"), "chain": ["vlm", "plain"]},
                "boards": {
                    "path": str(tmp_path / "boards"),
                    "chain": ["vlm"],
                    "prompt": "Read the board.",
                },
            },
        }
    )


@pytest.fixture
def daemon(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Supervisor, ScriptedWorkers, FakeClock]]:
    workers, clock = ScriptedWorkers(), FakeClock()
    recovery = getattr(request, "param", {})
    supervisor = Supervisor(
        _settings(tmp_path, **recovery),
        journal=SqliteJournal.open(None),
        metrics=Metrics(),
        watch=True,  # the loop is turned by hand: no watcher is started
        clock=clock,
        start_worker=workers,
    )
    yield supervisor, workers, clock
    supervisor.shutdown()


def turn(supervisor: Supervisor) -> None:
    supervisor.signals.wake()
    supervisor.turn()


def arrive(supervisor: Supervisor, inbox: Path, name: str) -> Path:
    inbox.mkdir(exist_ok=True)
    page = pages.render_page((name,), width=200, height=100, font_px=20, margin=10)
    path = pages.save_png(page, inbox / name)
    info = path.stat()
    sha = content_key(path, info.st_size, info.st_mtime_ns, 1 << 30)
    supervisor.flow.admit(Arrival(path, inbox, info.st_size, info.st_mtime_ns, sha))
    return path


def test_chains_are_told_apart_and_shared_heads_counted_once(tmp_path: Path) -> None:
    """Unused [worker] chain is not served; each other chain's head is resident, once per model."""
    primary, resident = serving_chains(_settings(tmp_path), watch=True)
    assert primary == ["plain"]
    assert resident == [("vlm", "plain"), ("vlm",)]
    assert resident_heads(resident, lambda model: True) == ["vlm"]
    assert resident_heads(resident, lambda model: model != "vlm") == ["plain"]
    assert usable_after(("vlm", "plain"), "vlm", lambda model: True) == "plain"
    assert usable_after(("vlm",), "vlm", lambda model: True) is None
    assert serving_chains(_settings(tmp_path), watch=False)[0] == ["rapid"]  # `once`


def test_two_inboxes_with_different_models_are_served_at_once(
    daemon: tuple[Supervisor, ScriptedWorkers, FakeClock], tmp_path: Path
) -> None:
    """Both models load at start (the shared one once), and files of each inbox go to their own."""
    supervisor, workers, clock = daemon
    turn(supervisor)
    assert sorted((w.slot, w.model_name) for w in workers.started) == [
        ("0", "plain"),
        ("fallback:vlm", "vlm"),
    ]
    plain, vlm = workers.latest("0"), workers.latest("fallback:vlm")
    plain.load()
    vlm.load()
    letter = arrive(supervisor, tmp_path / "letters", "letter.png")
    photo = arrive(supervisor, tmp_path / "photos", "photo.png")
    board = arrive(supervisor, tmp_path / "boards", "board.png")
    turn(supervisor)
    [letter_job] = plain.jobs()
    [photo_job] = vlm.jobs()  # the board waits for the one vlm worker
    assert (letter_job.path, photo_job.path) == (str(letter), str(photo))
    assert photo_job.prompt is None
    plain.finish(letter_job)
    vlm.finish(photo_job)
    turn(supervisor)
    [board_job] = vlm.jobs()
    assert (board_job.path, board_job.prompt) == (str(board), "Read the board.")
    vlm.finish(board_job)
    turn(supervisor)
    for path, inbox, model in ((letter, "letters", "plain"), (photo, "photos", "vlm")):
        document = json.loads(Path(f"{path}.ocr.json").read_text())
        assert (document["inbox"], document["model"]["name"]) == (inbox, model)
    assert supervisor.journal.get(FileKey("boards", "board.png")) is not None
    done = supervisor.metrics.files.labels(inbox="photos", outcome="done")._value.get()
    assert done == 1
    clock.advance(600)  # far past idle_fallback_seconds: a resident model stays
    turn(supervisor)
    assert not workers.shutdowns(vlm)
    assert len(workers.started) == 2


def test_a_file_moves_down_its_own_chain_and_ends_with_it(
    daemon: tuple[Supervisor, ScriptedWorkers, FakeClock], tmp_path: Path
) -> None:
    """Empty output on the vlm: a photo goes on to `plain`; a board, whose chain ends, gets its sidecar."""
    supervisor, workers, _ = daemon
    turn(supervisor)
    plain, vlm = workers.latest("0"), workers.latest("fallback:vlm")
    plain.load()
    vlm.load()
    photo = arrive(supervisor, tmp_path / "photos", "photo.png")
    turn(supervisor)
    [job] = vlm.jobs()
    vlm.fail(job, "empty")
    turn(supervisor)
    [moved] = plain.jobs()
    assert moved.path == str(photo)
    plain.finish(moved)
    board = arrive(supervisor, tmp_path / "boards", "board.png")
    turn(supervisor)
    [job] = vlm.jobs()
    vlm.fail(job, "empty")
    turn(supervisor)
    assert not plain.jobs()
    sidecar = json.loads(Path(f"{board}.ocr.error.json").read_text())
    assert sidecar["inbox"] == "boards"
    assert json.loads(Path(f"{photo}.ocr.json").read_text())["model"]["name"] == "plain"


def chain_position(supervisor: Supervisor, inbox: str) -> float | None:
    registry = supervisor.metrics.registry
    return registry.get_sample_value("ocr_inbox_chain_position", {"inbox": inbox})


def serving(supervisor: Supervisor, inbox: str) -> list[str]:
    """The model named by the inbox's active-model info series."""
    return [
        sample.labels["model"]
        for family in supervisor.metrics.registry.collect()
        if family.name == "ocr_inbox_active_model_info"
        for sample in family.samples
        if sample.labels["inbox"] == inbox
    ]


@pytest.mark.parametrize(
    "daemon",
    [{"max_fatal_failures": 2, "attempts_per_model": 5, "cooldown_seconds": 300}],
    indirect=True,
)
def test_each_inboxs_chain_falls_back_on_its_own_and_comes_back_after_its_cooldown(
    daemon: tuple[Supervisor, ScriptedWorkers, FakeClock], tmp_path: Path
) -> None:
    """The vlm dying K times moves photos to plain and holds the boards' files; letters flow on."""
    supervisor, workers, clock = daemon
    turn(supervisor)
    plain, vlm = workers.latest("0"), workers.latest("fallback:vlm")
    plain.load()
    vlm.load()
    turn(supervisor)
    assert [chain_position(supervisor, name) for name in ("letters", "photos", "boards")] == [
        0,
        0,
        0,
    ]
    assert (serving(supervisor, "photos"), serving(supervisor, "letters")) == (["vlm"], ["plain"])
    photo = arrive(supervisor, tmp_path / "photos", "photo.png")
    board = arrive(supervisor, tmp_path / "boards", "board.png")
    for _ in range(2):  # K = 2 deaths of the vlm in the window
        turn(supervisor)
        vlm = workers.latest("fallback:vlm")
        if vlm.state.value == "loading":
            vlm.load()
            turn(supervisor)
        assert vlm.jobs()
        vlm.die()
        turn(supervisor)
        clock.advance(5)  # past the restart backoff
    turn(supervisor)
    assert not supervisor.recovery.exhausted and not supervisor._finished()
    assert chain_position(supervisor, "photos") == 1
    assert chain_position(supervisor, "boards") == -1  # no model left: its files wait
    assert chain_position(supervisor, "letters") == 0
    assert serving(supervisor, "photos") == ["plain"] and serving(supervisor, "boards") == []
    [photo_job] = plain.jobs()  # the photo moved to plain; the board waits, no vlm restarted
    assert photo_job.path == str(photo)
    assert workers.latest("fallback:vlm") is vlm
    plain.finish(photo_job)
    letter = arrive(supervisor, tmp_path / "letters", "letter.png")
    turn(supervisor)
    [letter_job] = plain.jobs()
    plain.finish(letter_job)
    turn(supervisor)
    assert Path(f"{letter}.ocr.json").exists() and not Path(f"{board}.ocr.json").exists()
    assert not Path(f"{board}.ocr.error.json").exists()  # not blamed on the file

    clock.advance(300)  # the cool-down: both chains try the vlm again
    turn(supervisor)
    assert [chain_position(supervisor, name) for name in ("photos", "boards")] == [0, 0]
    fresh = workers.latest("fallback:vlm")
    assert fresh is not vlm
    fresh.load()
    turn(supervisor)
    [board_job] = fresh.jobs()
    assert board_job.path == str(board)
    fresh.finish(board_job)
    turn(supervisor)
    assert json.loads(Path(f"{board}.ocr.json").read_text())["model"]["name"] == "vlm"
    assert serving(supervisor, "boards") == ["vlm"]


def test_a_resident_model_that_cannot_load_moves_its_chains_not_its_files_to_sidecars(
    daemon: tuple[Supervisor, ScriptedWorkers, FakeClock], tmp_path: Path
) -> None:
    """The vlm failing to load: photos serve with plain, boards wait, and nothing gets a sidecar."""
    supervisor, workers, _ = daemon
    turn(supervisor)
    plain, vlm = workers.latest("0"), workers.latest("fallback:vlm")
    plain.load()
    photo = arrive(supervisor, tmp_path / "photos", "photo.png")
    board = arrive(supervisor, tmp_path / "boards", "board.png")
    vlm.fail_to_load()
    turn(supervisor)
    turn(supervisor)
    [job] = plain.jobs()
    assert job.path == str(photo)
    assert (chain_position(supervisor, "photos"), chain_position(supervisor, "boards")) == (1, -1)
    assert not Path(f"{board}.ocr.error.json").exists()
    assert supervisor.journal.get(FileKey("boards", "board.png")) is not None
