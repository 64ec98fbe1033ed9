"""FileFlow: one file from arrival to its outcome, with the real queue, ledger, journal and outputs.

Workers are scripted (tests/supervising/fakes.py) and the clock is the
test's, so each policy is proven in milliseconds: admission, dispatch under a
claim, the worker's answer, output-write retry, fallback and quarantine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from daemon.journal.interface import ClaimLost, FileKey, State
from daemon.journal.sqlite import SqliteJournal
from daemon.observing.metrics import Metrics
from daemon.outputs.writing import OutputError, OutputPaths
from daemon.protocol import Fault, Job, JobDone, JobFailed, WorkerConfig
from daemon.settings import FaultyModel, LimitsSettings, Settings, inbox_root
from daemon.supervising import ledger as ledger_module
from daemon.supervising.file_flow import FileFlow
from daemon.supervising.file_queue import FileQueue
from daemon.supervising.ledger import Ledger
from daemon.supervising.recovery import Recovery
from daemon.supervising.worker_handles import WorkerState
from daemon.watching.intake import Arrival, Intake, content_key
from tests.supervising.fakes import FakeClock, ScriptedWorker, ScriptedWorkers, result_of

RETRY_SECONDS = 30.0


@dataclass
class Rig:
    flow: FileFlow
    queue: FileQueue
    ledger: Ledger
    recovery: Recovery
    journal: SqliteJournal
    clock: FakeClock
    inbox: Path
    workers: ScriptedWorkers

    def drop(self, name: str, data: bytes = b"page") -> Path:
        path = self.inbox / name
        path.write_bytes(data)
        return path

    def arrive(self, path: Path) -> None:
        info = path.stat()
        sha = content_key(path, info.st_size, info.st_mtime_ns, 1 << 30)
        self.flow.admit(Arrival(path, inbox_root(self.inbox), info.st_size, info.st_mtime_ns, sha))

    def worker(self, model: str) -> ScriptedWorker:
        """An idle worker of `model`, as if it had loaded."""
        config = worker_config_for(model)
        handle = self.workers(model, config, 0, self.clock(), 60.0)
        assert isinstance(handle, ScriptedWorker)
        handle.state = WorkerState.IDLE
        handle.deadline = None
        return handle

    def dispatch_to(self, worker: ScriptedWorker) -> Job:
        """Hand the next queued file to `worker`; returns the job it received."""
        self.flow.dispatch([worker], self.clock())
        [job] = worker.jobs()
        return job

    def answer(self, worker: ScriptedWorker, message: JobDone | JobFailed) -> None:
        task = worker.take_task(message.job_id)
        assert task is not None
        worker.state = WorkerState.IDLE
        self.flow.answered(task, message, worker.model_name)

    def key(self, path: Path) -> FileKey:
        return FileKey.of(path, inbox_root(self.inbox))


def worker_config_for(model: str) -> WorkerConfig:
    return WorkerConfig(worker_id=1, model_name=model, model=FaultyModel(), limits=LimitsSettings())


@pytest.fixture
def make_rig(tmp_path: Path) -> Any:
    intakes: list[Intake] = []

    def make(chain: list[str] | None = None, *, watch: bool = True, **recovery: Any) -> Rig:
        chain = chain or ["first", "second"]
        inbox = tmp_path / "inbox"
        inbox.mkdir(exist_ok=True)
        settings = Settings.model_validate(
            {
                "watch": {"inboxes": [str(inbox)]},
                "worker": {"chain": chain},
                "models": {name: {"engine": "faulty"} for name in chain},
                "recovery": recovery,
                "outputs": {"retry_seconds": RETRY_SECONDS},
            }
        )
        clock = FakeClock()
        metrics = Metrics()
        journal = SqliteJournal.open(None)
        queue = FileQueue()
        ledger = Ledger(journal, metrics, clock, 2, RETRY_SECONDS, keep_final=not watch)
        policy = Recovery(
            chain, settings.recovery, metrics=metrics, clock=clock, held=lambda: queue.held
        )
        intake = Intake(1 << 30, wake=lambda: None)
        intakes.append(intake)
        flow = FileFlow(
            settings,
            queue=queue,
            ledger=ledger,
            recovery=policy,
            intake=intake,
            metrics=metrics,
            clock=clock,
            watch=watch,
        )
        return Rig(flow, queue, ledger, policy, journal, clock, inbox, ScriptedWorkers())

    yield make
    for intake in intakes:
        intake.close()


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


# --- the way through ---------------------------------------------------------------------


def test_a_file_goes_from_arrival_to_done(make_rig: Any) -> None:
    """Admitted, claimed at dispatch, answered: outputs beside it, the journal done, nothing held."""
    rig = make_rig()
    page = rig.drop("scan.png")
    rig.arrive(page)
    assert len(rig.queue) == 1
    assert rig.journal.get(rig.key(page)).state is State.PENDING
    worker = rig.worker("first")
    job = rig.dispatch_to(worker)
    assert job.path == str(page) and worker.state is WorkerState.BUSY
    rig.journal.fence(rig.key(page))  # the claim is held while the worker reads
    with capture_logs() as logs:
        rig.answer(worker, JobDone(job.job_id, result_of(page, "first", "Invoice 48213")))
    [done] = events(logs, "file.done")
    assert (done["file"], done["model"]) == (str(page), "first")
    paths = OutputPaths.beside(page)
    assert paths.markdown.read_text() == "Invoice 48213\n"
    assert json.loads(paths.json.read_text())["model"]["name"] == "first"
    entry = rig.journal.get(rig.key(page))
    assert entry is not None and entry.state is State.DONE
    assert rig.queue.held == 0 and len(rig.queue) == 0
    with pytest.raises(ClaimLost):
        rig.journal.fence(rig.key(page))  # the outcome ended the claim


def test_a_file_whose_outputs_exist_for_its_content_is_skipped(make_rig: Any) -> None:
    """Outputs of ours for the same content (a crash before the journal) are not made twice."""
    first = make_rig()
    page = first.drop("scan.png")
    first.arrive(page)
    worker = first.worker("first")
    job = first.dispatch_to(worker)
    first.answer(worker, JobDone(job.job_id, result_of(page, "first")))
    written = OutputPaths.beside(page).json.read_bytes()
    again = make_rig()  # a new journal: it knows nothing of the file
    with capture_logs() as logs:
        again.arrive(page)
    assert events(logs, "file.skipped")
    assert len(again.queue) == 0
    assert again.journal.get(again.key(page)).state is State.DONE
    assert OutputPaths.beside(page).json.read_bytes() == written


def test_a_file_gone_before_its_turn_leaves_the_journal(make_rig: Any) -> None:
    """A queued file deleted before dispatch is logged as vanished and its row forgotten."""
    rig = make_rig()
    page = rig.drop("scan.png")
    rig.arrive(page)
    page.unlink()
    worker = rig.worker("first")
    with capture_logs() as logs:
        rig.flow.dispatch([worker], rig.clock())
    assert worker.jobs() == []
    assert events(logs, "file.vanished")[0]["when"] == "before its turn"
    assert rig.journal.get(rig.key(page)) is None
    assert rig.queue.held == 0


def test_new_content_while_in_flight_waits_for_the_file_in_hand(make_rig: Any) -> None:
    """An arrival for a file in flight is held as a follow-up and looked at again once it is done."""
    rig = make_rig()
    page = rig.drop("scan.png", b"one")
    rig.arrive(page)
    worker = rig.worker("first")
    job = rig.dispatch_to(worker)
    page.write_bytes(b"two, longer")
    rig.arrive(page)
    assert len(rig.queue) == 0  # not queued twice
    rig.answer(worker, JobDone(job.job_id, result_of(page, "first")))
    rig.flow.intake.close()  # waits for the recheck the release asked for
    [arrival] = rig.flow.intake.drain()
    assert (arrival.path, arrival.size) == (page, len(b"two, longer"))


# --- writing the outputs ---------------------------------------------------------------------


def test_a_full_disk_keeps_the_result_and_writes_it_when_the_retry_is_due(
    make_rig: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC at write time: the file waits retry_seconds, then its kept result is written (no rerun)."""
    rig = make_rig()
    page = rig.drop("scan.png")
    real_write = ledger_module.write_success
    refusals = []

    def full_once(source: Path, *args: Any, **kwargs: Any) -> Any:
        # A stand-in for a full disk: ENOSPC cannot be had on command here.
        if not refusals:
            refusals.append(source)
            raise OutputError("no_space", source, "No space left on device")
        return real_write(source, *args, **kwargs)

    monkeypatch.setattr(ledger_module, "write_success", full_once)
    rig.arrive(page)
    worker = rig.worker("first")
    job = rig.dispatch_to(worker)
    with capture_logs() as logs:
        rig.answer(worker, JobDone(job.job_id, result_of(page, "first")))
    assert events(logs, "file.output_retry")[0]["in_seconds"] == RETRY_SECONDS
    assert rig.journal.get(rig.key(page)).state is State.PENDING
    assert rig.queue.held == 1 and len(rig.queue) == 1
    rig.clock.advance(RETRY_SECONDS - 1)
    rig.flow.retry_due(rig.clock())
    assert not OutputPaths.beside(page).json.exists()
    rig.clock.advance(1)
    rig.flow.retry_due(rig.clock())
    assert OutputPaths.beside(page).json.exists()
    assert rig.journal.get(rig.key(page)).state is State.DONE
    rig.flow.dispatch([worker], rig.clock())
    assert worker.jobs() == []  # the model was not asked again
    assert rig.queue.held == 0


def test_an_output_path_taken_by_someone_else_fails_the_file_without_a_retry(
    make_rig: Any,
) -> None:
    """A file of another writer where an output goes: the file fails, nothing is overwritten."""
    rig = make_rig()
    page = rig.drop("scan.png")
    foreign = OutputPaths.beside(page).json
    foreign.write_text("mine, not the daemon's")
    rig.arrive(page)
    worker = rig.worker("first")
    job = rig.dispatch_to(worker)
    rig.answer(worker, JobDone(job.job_id, result_of(page, "first")))
    assert foreign.read_text() == "mine, not the daemon's"
    assert rig.journal.get(rig.key(page)).state is State.FAILED
    assert rig.queue.held == 0


def test_a_claim_lost_before_the_outputs_land_writes_nothing(make_rig: Any) -> None:
    """When the journal says the claim went to another daemon, no output lands and the file is let go."""
    rig = make_rig()
    page = rig.drop("scan.png")
    rig.arrive(page)
    worker = rig.worker("first")
    job = rig.dispatch_to(worker)
    # A stand-in for a shared journal whose lease ran out: one node cannot lose its own claim.
    rig.journal.release(rig.key(page))
    with capture_logs() as logs:
        rig.answer(worker, JobDone(job.job_id, result_of(page, "first")))
    assert events(logs, "file.claim_lost")
    assert sorted(p.name for p in rig.inbox.iterdir()) == ["scan.png"]  # no output, no temp file
    assert rig.journal.get(rig.key(page)).state is State.PENDING
    assert rig.queue.held == 0


# --- faults: retry, fallback, quarantine -----------------------------------------------------


def test_a_poison_file_moves_down_the_chain_and_is_quarantined(make_rig: Any) -> None:
    """A file that kills each model's worker attempts_per_model times ends with its error sidecar."""
    rig = make_rig(attempts_per_model=2, max_fatal_failures=10)
    page = rig.drop("poison.png")
    rig.arrive(page)
    first, second = rig.worker("first"), rig.worker("second")
    for worker in (first, first, second, second):
        job = rig.dispatch_to(worker)
        task = worker.take_task(job.job_id)
        worker.state = WorkerState.IDLE
        assert task is not None
        rig.flow.worker_lost(task, worker.model_name, "crash", Fault(kind="crash", message="died"))
    error = json.loads(OutputPaths.beside(page).error.read_text())
    assert error["error"]["summary"] == "every model of the chain failed on this file"
    assert [step["model"] for step in error["fallback_trail"]] == ["first", "second"]
    entry = rig.journal.get(rig.key(page))
    assert entry is not None and entry.state is State.FAILED
    assert entry.attempts == {"first": 2, "second": 2}
    assert rig.recovery.active == "first"  # the chain never gave way for one file
    assert rig.queue.held == 0


def test_empty_output_sends_the_file_to_the_next_model_with_its_trail(make_rig: Any) -> None:
    """A model that reads nothing hands the file to the next model; the trail is kept in the journal."""
    rig = make_rig()
    page = rig.drop("faint.png")
    rig.arrive(page)
    first, second = rig.worker("first"), rig.worker("second")
    job = rig.dispatch_to(first)
    rig.answer(first, JobFailed(job.job_id, Fault(kind="empty_output", message="no text")))
    [task] = list(rig.queue)
    assert task.model_override == "second"
    assert rig.journal.get(rig.key(page)).trail == [
        {"model": "first", "outcome": "empty_output", "message": "no text"}
    ]
    rig.flow.dispatch([first], rig.clock())
    assert first.jobs() == []  # not the model that failed it
    job = rig.dispatch_to(second)
    rig.answer(second, JobDone(job.job_id, result_of(page, "second")))
    assert json.loads(OutputPaths.beside(page).json.read_text())["fallback_trail"][0]["model"] == (
        "first"
    )


def test_files_waiting_for_a_model_that_cannot_load_move_on(make_rig: Any) -> None:
    """When a per-file fallback model fails to load, the files queued for it go on down the chain."""
    rig = make_rig(["first", "second", "third"])
    page = rig.drop("scan.png")
    rig.arrive(page)
    first = rig.worker("first")
    job = rig.dispatch_to(first)
    rig.answer(first, JobFailed(job.job_id, Fault(kind="degenerate_output", message="!!!!")))
    [task] = list(rig.queue)
    assert task.model_override == "second"
    fault = Fault(kind="load_error", message="no weights for second")
    rig.flow.carry_out(rig.recovery.load_failed("second", fault), fault=fault)
    assert task.model_override == "third"
    assert [step["outcome"] for step in task.trail] == ["degenerate_output", "load_error"]
    assert rig.journal.get(rig.key(page)).trail == task.trail


def test_files_waiting_for_a_demoted_model_go_to_the_active_one(make_rig: Any) -> None:
    """A model demoted for the daemon hands the files queued for it to the model now active."""
    rig = make_rig(["first", "second", "third"])
    page = rig.drop("scan.png")
    rig.arrive(page)
    [task] = list(rig.queue)
    rig.queue.drop(task)
    task.model_override = "first"  # sent there per file, e.g. resumed after a restart
    rig.queue.push(task, rig.clock())
    fault = Fault(kind="load_error", message="gone")
    rig.flow.carry_out(rig.recovery.load_failed("first", fault), fault=fault)
    assert rig.recovery.active == "second"
    assert task.model_override is None and rig.queue.overrides == {}
