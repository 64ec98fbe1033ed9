"""Workforce: which workers run, and what a load, a failure or an exit means, on a scripted pool."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from daemon.devices import GpuLister
from daemon.observing.metrics import Metrics
from daemon.protocol import EXIT_CUDA_FATAL, Fault, JobFailed, Loaded
from daemon.settings import Settings
from daemon.supervising.chains import DAEMONS
from daemon.supervising.file_queue import FileQueue
from daemon.supervising.pool import WorkerPool
from daemon.supervising.recovery import Decision, Recovery
from daemon.supervising.worker_handles import WorkerState
from daemon.supervising.workforce import Workforce
from daemon.tasks import FileTask
from tests.supervising.fakes import FakeClock, ScriptedWorker, ScriptedWorkers


@dataclass
class Crew:
    workforce: Workforce
    pool: WorkerPool
    queue: FileQueue
    recovery: Recovery
    workers: ScriptedWorkers
    clock: FakeClock

    def ensure(self) -> None:
        self.workforce.ensure(self.clock())

    def loaded(self, worker: ScriptedWorker) -> None:
        worker.load()
        for handle, message in self.pool.messages():
            assert isinstance(message, Loaded)
            self.workforce.loaded(handle, message)

    def exits(self) -> list[Any]:
        return [self.workforce.exited(worker, code) for worker, code, _ in self.pool.exited()]


def crew(
    chain: list[str] | None = None, gpus: GpuLister | None = None, **sections: dict[str, Any]
) -> Crew:
    chain = chain or ["first", "second"]
    settings = Settings.model_validate(
        {
            "worker": {"chain": chain},
            "models": {name: {"engine": "faulty"} for name in chain},
            **sections,
        }
    )
    clock, metrics, workers = FakeClock(), Metrics(), ScriptedWorkers()
    pool = WorkerPool(backoff_cap=30, grace=5, clock=clock, start=workers)
    queue = FileQueue()
    recovery = Recovery(chain, settings.recovery, metrics=metrics, clock=clock)
    workforce = Workforce(
        settings,
        pool=pool,
        recovery=recovery,
        queue=queue,
        metrics=metrics,
        clock=clock,
        gpus=gpus or (lambda: None),  # no GPU is asked about: listed devices on trust
    )
    return Crew(workforce, pool, queue, recovery, workers, clock)


def queued(queue: FileQueue, name: str, override: str | None) -> FileTask:
    task = FileTask(Path("/in") / name, Path("/in"), "a" * 64, 1, 1, 0.0, 0.0)
    task.model_override = override
    queue.push(task, 0.0)
    return task


def test_the_active_model_runs_on_every_slot_and_is_started_once() -> None:
    """worker.count slots run the active model; a slot that runs is not started again."""
    team = crew(worker={"count": 2, "chain": ["first", "second"]})
    team.ensure()
    team.ensure()
    assert [(w.slot, w.model_name) for w in team.workers.started] == [
        ("0", "first"),
        ("1", "first"),
    ]
    assert team.workforce.idle() == []  # loading
    team.loaded(team.workers.latest("0"))
    assert team.workforce.idle() == [team.workers.latest("0")]
    assert team.workforce.serving() and team.workforce.loading()


def test_a_fallback_model_runs_while_files_wait_for_it_and_no_longer() -> None:
    """A per-file fallback slot starts for queued files and is retired once idle past its limit."""
    team = crew(recovery={"idle_fallback_seconds": 120})
    task = queued(team.queue, "faint.png", "second")
    team.ensure()
    fallback = team.workers.latest("fallback:second")
    team.loaded(fallback)
    team.queue.take(task)
    team.queue.release(task)
    team.clock.advance(120)
    team.ensure()
    assert team.workers.shutdowns(fallback) == []  # not yet past the limit
    team.clock.advance(1)
    team.ensure()
    assert [s.reason for s in team.workers.shutdowns(fallback)] == ["fallback model idle"]


def test_a_crashed_worker_is_restarted_after_its_backoff() -> None:
    """The first restart is at once, the next ones wait 1, 1, 2 s; a finished job resets the wait."""
    team = crew()
    starts = []
    for _ in range(4):
        team.ensure()
        worker = team.workers.latest("0")
        starts.append(team.clock())
        team.loaded(worker)
        worker.die()
        [end] = team.exits()
        assert end.reason == "crash" and end.decision == Decision()
        while True:  # turn the loop until the slot may start again
            team.ensure()
            if team.workers.latest("0") is not worker:
                break
            team.clock.advance(0.5)
    team.ensure()
    starts.append(team.clock())
    waits = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert waits == [0, 1, 1, 2]
    team.pool.succeeded("0")
    team.loaded(team.workers.latest("0"))
    team.workers.latest("0").die()
    team.exits()
    team.ensure()
    assert len(team.workers.started) == 6  # at once again


def test_a_worker_lost_on_a_file_says_which_and_why() -> None:
    """An exit with a file in hand hands the file back as lost, with a crash or hang fault."""
    team = crew()
    team.ensure()
    worker = team.workers.latest("0")
    team.loaded(worker)
    task = queued(team.queue, "scan.png", None)
    team.queue.take(task)
    assert worker.assign(task, 1, team.clock(), 300)
    team.clock.advance(301)
    team.workforce.enforce_deadlines(team.clock())  # SIGTERM: the scripted worker ends
    [end] = team.exits()
    assert (end.lost, end.reason) == ((task,), "hang")
    assert end.fault == Fault(kind="hang", message="the worker missed its deadline (exit code -15)")


def test_a_fatal_cuda_error_lets_the_worker_exit_and_counts_the_file() -> None:
    """A fatal JobFailed returns the file (for recovery) and expects the worker's own exit."""
    team = crew()
    team.ensure()
    worker = team.workers.latest("0")
    team.loaded(worker)
    task = queued(team.queue, "scan.png", None)
    team.queue.take(task)
    worker.assign(task, 7, team.clock(), 300)
    fault = Fault(kind="cuda_fatal", message="device-side assert")
    assert team.workforce.job_finished(worker, JobFailed(7, fault, fatal=True)) is task
    assert (worker.state, worker.exit_reason) == (WorkerState.STOPPING, "cuda_fatal")
    worker.die(EXIT_CUDA_FATAL)
    [end] = team.exits()
    assert end.reason == "cuda_fatal" and end.lost == ()


def test_a_worker_dying_while_loading_is_a_fatal_failure_of_its_model() -> None:
    """Died while loading, without a word: recovery counts it; K of them demote the model."""
    team = crew(recovery={"max_fatal_failures": 2})
    for expected in (Decision(), Decision(demoted="first", chains=(DAEMONS,))):
        team.ensure()
        team.workers.latest("0").die()
        [end] = team.exits()
        assert end.decision == expected
        assert end.load_fault is not None and end.load_fault.kind == "load_error"
        team.clock.advance(60)
    assert team.recovery.active == "second"


def test_workers_of_an_old_model_or_settings_are_replaced() -> None:
    """After a reload (a new generation) idle workers are retired; a busy one finishes its file first."""
    team = crew(worker={"count": 2, "chain": ["first", "second"]})
    team.ensure()
    idle, busy = team.workers.latest("0"), team.workers.latest("1")
    team.loaded(idle)
    team.loaded(busy)
    task = queued(team.queue, "scan.png", None)
    team.queue.take(task)
    busy.assign(task, 1, team.clock(), 300)
    team.workforce.generation += 1
    team.ensure()
    assert [s.reason for s in team.workers.shutdowns(idle)] == ["model or settings changed"]
    assert team.workers.shutdowns(busy) == []
    assert team.workforce.idle() == []


def loaded_with_capacity(team: Crew, capacity: int) -> ScriptedWorker:
    team.ensure()
    worker = team.workers.latest("0")
    worker.load()
    for handle, message in team.pool.messages():
        assert isinstance(message, Loaded)
        team.workforce.loaded(handle, replace(message, capacity=capacity))
    return worker


def test_a_server_worker_takes_files_up_to_its_capacity() -> None:
    """A worker whose Loaded says capacity 3 stays available until it holds three files, then again after one."""
    team = crew()
    worker = loaded_with_capacity(team, 3)
    tasks = [queued(team.queue, f"{index}.png", None) for index in range(4)]
    for job_id, task in enumerate(tasks[:3], start=1):
        assert team.workforce.idle() == [worker]
        team.queue.take(task)
        assert worker.assign(task, job_id, team.clock(), 300)
    assert team.workforce.idle() == [] and worker.state is WorkerState.BUSY
    assert (
        team.workforce.job_finished(worker, JobFailed(2, Fault(kind="engine_error", message="x")))
        is tasks[1]
    )
    assert team.workforce.idle() == [worker] and worker.state is WorkerState.BUSY
    assert set(worker.tasks) == {1, 3}


def test_each_job_of_a_server_worker_has_its_own_deadline() -> None:
    """Progress on one job moves only its deadline; the worker's is the earliest of them."""
    team = crew()
    worker = loaded_with_capacity(team, 2)
    first, second = queued(team.queue, "a.png", None), queued(team.queue, "b.png", None)
    start = team.clock()
    worker.assign(first, 1, team.clock(), 300)
    team.clock.advance(100)
    worker.assign(second, 2, team.clock(), 300)
    assert worker.deadline == start + 300
    team.clock.advance(100)
    team.workforce.progressed(worker, 1)
    assert worker.deadline == start + 400  # job 2's, now the earlier one
    worker.take_task(2)
    assert worker.deadline == start + 500


def test_a_retired_server_worker_finishes_its_files_first() -> None:
    """Retired while holding files: it is asked to stop, not killed, and its kill timer starts after the last file."""
    team = crew()
    worker = loaded_with_capacity(team, 4)
    tasks = [queued(team.queue, f"{index}.png", None) for index in range(2)]
    for job_id, task in enumerate(tasks, start=1):
        team.queue.take(task)
        worker.assign(task, job_id, team.clock(), 300)
    team.pool.retire(worker, "model or settings changed")
    assert [s.reason for s in team.workers.shutdowns(worker)] == ["model or settings changed"]
    assert worker.state is WorkerState.STOPPING and worker.kill_at is None
    assert worker.scripted.is_alive()
    team.workforce.job_finished(worker, JobFailed(1, Fault(kind="engine_error", message="x")))
    assert worker.kill_at is None
    team.workforce.job_finished(worker, JobFailed(2, Fault(kind="engine_error", message="x")))
    assert worker.kill_at is not None


def test_a_server_worker_lost_hands_back_every_file_it_held() -> None:
    """A crash of a worker holding three files returns all three as lost."""
    team = crew()
    worker = loaded_with_capacity(team, 3)
    tasks = [queued(team.queue, f"{index}.png", None) for index in range(3)]
    for job_id, task in enumerate(tasks, start=1):
        team.queue.take(task)
        worker.assign(task, job_id, team.clock(), 300)
    worker.die()
    [end] = team.exits()
    assert end.reason == "crash" and set(end.lost) == set(tasks)


def test_one_worker_per_listed_gpu_each_pinned_and_labelled_by_what_it_reports() -> None:
    """A device list starts a worker per GPU, each told cuda:0 with its own CUDA_VISIBLE_DEVICES;
    fallbacks run on the first GPU; worker_info carries the device and what the worker reported."""
    team = crew(
        worker={"chain": ["first", "second"], "device": ["cuda:2", "cuda:5"]},
        gpus=lambda: [str(index) for index in range(8)],
    )
    queued(team.queue, "a.png", "second")
    team.ensure()
    configs = {worker.slot: worker.config for worker in team.workers.started}
    assert sorted(configs) == ["0", "1", "fallback:second"]
    pinned = {
        slot: (config.device, config.placement, config.environment)
        for slot, config in configs.items()
        if config is not None
    }
    order = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert pinned == {
        "0": ("cuda:0", "cuda:2", {"CUDA_VISIBLE_DEVICES": "2", **order}),
        "1": ("cuda:0", "cuda:5", {"CUDA_VISIBLE_DEVICES": "5", **order}),
        "fallback:second": ("cuda:0", "cuda:2", {"CUDA_VISIBLE_DEVICES": "2", **order}),
    }
    team.workers.latest("1").load({"CUDA_VISIBLE_DEVICES": "5", **order})
    for handle, message in team.pool.messages():
        assert isinstance(message, Loaded)
        team.workforce.loaded(handle, message)
    labels = {"worker": "1", "model": "first", "device": "cuda:5", "cuda_visible_devices": "5"}
    registry = team.workforce.metrics.registry
    assert registry.get_sample_value("ocr_inbox_worker_info", labels) == 1
