"""The supervisor: no torch in its process, `once` runs the daemon's path, and the loop on scripted workers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.journal.sqlite import SqliteJournal
from daemon.observing.metrics import Metrics
from daemon.settings import Settings
from daemon.supervising.arbiter import Supervisor
from harness import pages
from harness.driver import daemon_env, outputs_of, run_cli, write_settings
from tests.supervising.fakes import FakeClock, ScriptedWorkers

FAKE = {"worker": {"chain": ["fake"]}, "models": {"fake": {"engine": "faulty"}}}


def _tiny_png(path: Path) -> Path:
    return pages.save_png(
        pages.render_page(("tiny",), width=200, height=100, font_px=20, margin=10), path
    )


def test_supervisor_never_imports_torch(tmp_path: Path) -> None:
    """A whole `once` run with the embedded engine leaves torch (and transformers) out of the supervisor."""
    source = _tiny_png(tmp_path / "page.png")
    script = textwrap.dedent(
        f"""
        import json, sys
        from daemon.cli import main
        import daemon.watching.watcher, daemon.observing.metrics_server, daemon.observing.systemd_notify, daemon.supervising.arbiter
        code = main(["once", {str(source)!r}])
        heavy = sorted(m for m in ("torch", "transformers", "torchvision", "onnxruntime") if m in sys.modules)
        print(json.dumps({{"code": code, "heavy": heavy}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=daemon_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "heavy": []}, result.stdout[-2000:]
    assert set(outputs_of(source)) == {"md", "json"}


def test_once_exit_codes(tmp_path: Path) -> None:
    """`once` exits 0 when every file succeeded and 1 when any failed, writing outputs for each."""
    config = write_settings(
        tmp_path / "s.toml",
        {
            **FAKE,
            "models": {
                "fake": {"engine": "faulty", "rules": [{"match": "bad-*", "fault": "bad_input"}]}
            },
        },
    )
    good = _tiny_png(tmp_path / "good.png")
    bad = _tiny_png(tmp_path / "bad-one.png")
    ok = run_cli("once", "--config", str(config), str(good), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout[-2000:]
    assert set(outputs_of(good)) == {"md", "json"}
    mixed = run_cli("once", "--config", str(config), str(good), str(bad), cwd=tmp_path)
    assert mixed.returncode == 1
    assert set(outputs_of(bad)) == {"error"}
    missing = run_cli("once", "--config", str(config), str(tmp_path / "absent.png"), cwd=tmp_path)
    assert missing.returncode == 1


def test_once_redoes_files_that_already_have_outputs(tmp_path: Path) -> None:
    """`once` processes a file again even when its outputs exist (it is how users re-run a model)."""
    config = write_settings(tmp_path / "s.toml", FAKE)
    source = _tiny_png(tmp_path / "again.png")
    assert run_cli("once", "--config", str(config), str(source), cwd=tmp_path).returncode == 0
    second_run = run_cli("once", "--config", str(config), str(source), cwd=tmp_path)
    assert second_run.returncode == 0
    assert '"event": "file.done"' in second_run.stdout
    assert '"event": "file.skipped"' not in second_run.stdout


# --- the loop itself, in this process, on scripted workers and a clock the test moves ---------


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Callable[..., tuple[Supervisor, ScriptedWorkers, FakeClock]]]:
    made: list[Supervisor] = []

    def make(chain: list[str], **recovery: Any) -> tuple[Supervisor, ScriptedWorkers, FakeClock]:
        settings = Settings.model_validate(
            {
                "watch": {"inboxes": [str(tmp_path / "inbox")]},
                "worker": {"chain": chain},
                "models": {name: {"engine": "faulty"} for name in chain},
                "recovery": recovery,
            }
        )
        workers, clock = ScriptedWorkers(), FakeClock()
        supervisor = Supervisor(
            settings,
            journal=SqliteJournal.open(None),
            metrics=Metrics(),
            watch=False,
            clock=clock,
            start_worker=workers,
        )
        made.append(supervisor)
        return supervisor, workers, clock

    yield make
    for supervisor in made:
        supervisor.shutdown()


def turn(supervisor: Supervisor) -> None:
    supervisor.signals.wake()  # nothing to wait for: the test has spoken already
    supervisor.turn()


def test_the_loop_carries_a_file_from_arrival_to_done(loop: Any, tmp_path: Path) -> None:
    """add_files, a worker started and loaded, the job sent and answered: outputs, and `done`."""
    supervisor, workers, _ = loop(["first"])
    page = _tiny_png(tmp_path / "page.png")
    supervisor.add_files([page])
    turn(supervisor)
    worker = workers.latest("0")
    worker.load()
    turn(supervisor)
    [job] = worker.jobs()
    assert job.path == str(page)
    worker.finish(job, "tiny")
    turn(supervisor)
    assert supervisor.ledger.final == {page: "done"}
    assert (tmp_path / "page.png.ocr.md").read_text() == "tiny\n"
    assert supervisor.ready_state() == (True, "serving with first")


def test_the_chain_falls_back_on_fatal_failures_and_fails_back_after_the_cooldown(
    loop: Any, tmp_path: Path
) -> None:
    """A crash demotes the first model (K=1): the file is done by the next; after the cool-down the first returns."""
    supervisor, workers, clock = loop(
        ["first", "second"], max_fatal_failures=1, attempts_per_model=3, cooldown_seconds=600
    )
    page = _tiny_png(tmp_path / "page.png")
    supervisor.add_files([page])
    turn(supervisor)
    first = workers.latest("0")
    first.load()
    turn(supervisor)
    assert len(first.jobs()) == 1
    first.die()
    turn(supervisor)
    assert supervisor.recovery.active == "second"
    second = workers.latest("0")
    assert second.model_name == "second"
    second.load()
    turn(supervisor)
    [job] = second.jobs()
    second.finish(job)
    turn(supervisor)
    assert supervisor.ledger.final == {page: "done"}
    clock.advance(600)
    turn(supervisor)
    assert supervisor.recovery.active == "first"
    assert [s.reason for s in workers.shutdowns(second)] == ["model or settings changed"]
    second.die(0)
    turn(supervisor)
    assert workers.models() == ["first", "second", "first"]
