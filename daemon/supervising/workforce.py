"""Which workers run, and what their lifecycle means: started, loaded, idle, retired, exited.

One worker per slot: slots "0", "1", ... run the active model of the chain,
one per entry of the device plan (daemon.devices: `count` on one device, or
one per listed GPU, each pinned to it);
a slot "fallback:<model>" runs a per-file fallback model while files wait for
it, and is retired once idle for idle_fallback_seconds, or the first model
of an inbox's own chain, kept resident while that chain wants it
(daemon.supervising.inbox_chains). A worker whose model
or settings are out of date is replaced, a busy one after its file. The pool
(daemon.supervising.pool) holds the processes; what a fault means for the
chain is recovery's answer, returned to the arbiter as a Decision for the
flow of files to carry out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from daemon.devices import GpuLister, WorkerDevice, device_plan, visible_gpus
from daemon.observing.metrics import Metrics
from daemon.protocol import (
    EXIT_CUDA_FATAL,
    EXIT_LOAD_FAILED,
    Fault,
    JobDone,
    JobFailed,
    Loaded,
    LoadFailed,
)
from daemon.settings import Settings, WorkerSettings
from daemon.supervising.file_queue import FileQueue
from daemon.supervising.pool import WorkerPool, fallback_slot, is_fallback_slot
from daemon.supervising.recovery import Decision, Recovery
from daemon.supervising.worker_handles import WorkerHandle, WorkerState, worker_config
from daemon.tasks import FileTask

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Exit:
    """What a worker's end means: for the chain, and for the file it had in hand."""

    decision: Decision
    load_fault: Fault | None = None  # why it could not load, when it ended while loading
    lost: tuple[FileTask, ...] = ()  # the files it had in hand
    reason: str = ""
    fault: Fault | None = None  # what happened to `lost`


class Workforce:
    def __init__(
        self,
        settings: Settings,
        *,
        pool: WorkerPool,
        recovery: Recovery,
        queue: FileQueue,
        metrics: Metrics,
        clock: Callable[[], float],
        gpus: GpuLister = visible_gpus,
    ) -> None:
        self.settings = settings
        self._gpus = gpus  # where "all" finds its GPUs (daemon.devices)
        self._planned: tuple[WorkerSettings, list[WorkerDevice]] | None = None
        self.pool = pool
        self.recovery = recovery
        self.queue = queue
        self.metrics = metrics
        self.clock = clock
        self.generation = 0  # bumped by a reload that changes what workers run
        self._worker_ids = 0

    # --- which workers ----------------------------------------------------------

    def plan(self) -> list[WorkerDevice]:
        """The device of each slot of the daemon's chain, planned again when [worker] changes."""
        worker = self.settings.worker
        if self._planned is None or self._planned[0] != worker:
            self._planned = (worker, device_plan(worker, self._gpus))
            log.info("workers.planned", devices=[place.describe() for place in self._planned[1]])
        return self._planned[1]

    def place_of(self, slot: str) -> WorkerDevice:
        """A chain slot's device; per-file fallbacks and inboxes' chains run on the first."""
        plan = self.plan()
        return plan[0] if is_fallback_slot(slot) else plan[int(slot)]

    def wanted_model(self, worker: WorkerHandle) -> str | None:
        """The model this worker's slot should run now."""
        if is_fallback_slot(worker.slot):
            return worker.model_name
        return self.recovery.active

    def stale(self, worker: WorkerHandle) -> bool:
        return (
            worker.generation != self.generation or self.wanted_model(worker) != worker.model_name
        )

    def idle(self) -> list[WorkerHandle]:
        """Workers that may take a file now."""
        return [w for w in self.pool.idle(self.generation) if not self.stale(w)]

    def ensure(self, now: float) -> None:
        """Start the workers that should run and retire those that should not."""
        active = self.recovery.active
        assert active is not None
        # Workers whose model or settings are out of date are replaced; busy
        # ones finish their file first (after_job looks again).
        for worker in self.pool:
            if self.stale(worker) and worker.state in (WorkerState.IDLE, WorkerState.LOADING):
                self.pool.retire(worker, "model or settings changed")
        wanted = [(str(index), active) for index in range(len(self.plan()))]
        resident = self.recovery.resident_models()
        benched = self.recovery.chains.benched()  # files wait for them: no worker
        for model in [*resident, *self.queue.overrides]:
            entry = (fallback_slot(model), model)
            usable = self.recovery.usable(model) and model not in benched
            if model != active and usable and entry not in wanted:
                wanted.append(entry)
        running = self.pool.slots()
        for slot, model in wanted:
            if slot not in running and self.pool.may_start(slot, now):
                self._worker_ids += 1
                self.pool.spawn(
                    slot,
                    worker_config(self.settings, self._worker_ids, model, self.place_of(slot)),
                    self.generation,
                    self.settings.limits.load_deadline_seconds,
                )
                # The series exists (at 0) from the first start, so "worker down"
                # can fire for a worker that never manages to load.
                self.metrics.worker_up.labels(worker=slot).set(0)
        idle_limit = self.settings.recovery.idle_fallback_seconds
        for worker in self.pool:
            if (
                is_fallback_slot(worker.slot)
                and worker.state == WorkerState.IDLE
                and (
                    self.queue.overrides.get(worker.model_name, 0) == 0
                    or worker.model_name in benched
                )
                and worker.model_name not in resident
                and worker.idle_since is not None
                and now - worker.idle_since > idle_limit
            ):
                self.pool.retire(worker, "fallback model idle")

    # --- what workers say -------------------------------------------------------

    def progressed(self, worker: WorkerHandle, job_id: int) -> None:
        worker.job_progressed(job_id, self.clock() + self.settings.limits.page_deadline_seconds)

    def loaded(self, worker: WorkerHandle, message: Loaded) -> None:
        worker.state = WorkerState.IDLE
        worker.info = message.info
        worker.capacity = max(1, message.capacity)
        worker.deadline = None
        worker.idle_since = self.clock()
        self.metrics.model_load_seconds.labels(model=worker.model_name).observe(
            message.load_seconds
        )
        self.metrics.worker_up.labels(worker=worker.slot).set(1)
        # What the worker says it was given, not what was planned: the proof of its pinning.
        visible = message.environment.get("CUDA_VISIBLE_DEVICES", "")
        self.metrics.set_worker_info(worker.slot, worker.model_name, worker.placement, visible)
        self.metrics.record_memory(message.memory)
        info = message.info
        log.info(
            "model.loaded",
            slot=worker.slot,
            model=worker.model_name,
            placement=worker.placement,
            cuda_visible_devices=visible or None,
            engine=info.engine,
            device=info.device,
            dtype=info.dtype,
            attention=info.attention,
            family=info.family,
            seconds=round(message.load_seconds, 3),
        )
        # Every chain this model serves shows how it runs, on its inboxes' series.
        self.recovery.chains.model_loaded(worker.model_name, info)

    def load_failed(self, worker: WorkerHandle, message: LoadFailed) -> Decision:
        worker.exit_reason = "load_error"
        worker.deadline = None
        if message.fault.kind == "cuda_fatal":
            # e.g. a device-side assert in the warm-up pass at load
            self.metrics.cuda_errors.labels(kind="cuda_fatal").inc()
        elif message.fault.kind == "unavailable":
            self.metrics.server_up.labels(model=worker.model_name).set(0)
        return self.recovery.load_failed(worker.model_name, message.fault)

    def job_finished(self, worker: WorkerHandle, message: JobDone | JobFailed) -> FileTask | None:
        """The worker answered for its file: the file it had, and the worker made ready again."""
        task = worker.take_task(message.job_id)
        now = self.clock()
        if isinstance(message, JobDone):
            if task is not None:
                self.pool.succeeded(worker.slot)
        else:
            self.metrics.record_memory(message.memory)
            if message.fatal:
                # The worker exits on its own (EXIT_CUDA_FATAL); SIGKILL if it does not.
                worker.expect_exit(now, self.settings.recovery.stop_grace_seconds, "cuda_fatal")
                self.metrics.cuda_errors.labels(kind="cuda_fatal").inc()
                return task
        self._after_job(worker, now)
        return task

    def _after_job(self, worker: WorkerHandle, now: float) -> None:
        if worker.tasks:
            if self.stale(worker) and worker.state != WorkerState.STOPPING:
                self.pool.retire(worker, "model or settings changed")  # after its files
            return
        if worker.state == WorkerState.BUSY:
            worker.state = WorkerState.IDLE
            worker.idle_since = now
        elif worker.state == WorkerState.STOPPING and worker.kill_at is None:
            # It was told to stop after its files, and this was the last one.
            worker.kill_at = now + self.settings.recovery.stop_grace_seconds
        if self.stale(worker):
            self.pool.retire(worker, "model or settings changed")
        elif worker.state == WorkerState.IDLE and worker.over_memory(
            self.settings.recovery.max_worker_rss_megabytes
        ):
            # A model that leaks host memory would grow until the kernel's OOM
            # killer picks a victim, maybe not the worker. A fresh worker costs
            # one model load.
            self.metrics.worker_restarts.labels(reason="memory").inc()
            self.pool.retire(worker, "memory")

    # --- deaths -------------------------------------------------------------------

    def enforce_deadlines(self, now: float) -> None:
        for worker in self.pool.enforce_deadlines(now):
            log.error(
                "worker.hung",
                slot=worker.slot,
                pid=worker.pid,
                model=worker.model_name,
                path=str(worker.task.path) if worker.task else None,
                waited_for="a page" if worker.info is not None else "the model to load",
            )

    def exited(self, worker: WorkerHandle, code: int | None) -> Exit:
        """A worker's process has ended (reaped by the pool): say so, and what it means."""
        reason = worker.exit_reason
        if reason is None:
            reason = {EXIT_CUDA_FATAL: "cuda_fatal", EXIT_LOAD_FAILED: "load_error"}.get(
                code or 0, "crash"
            )
        expected = reason in ("stop", "retired")
        (log.info if expected else log.error)(
            "worker.exited",
            slot=worker.slot,
            pid=worker.pid,
            exit_code=code,
            reason=reason,
            model=worker.model_name,
        )
        if expected:
            if is_fallback_slot(worker.slot) or int(worker.slot) >= len(self.plan()):
                # A retired per-file fallback slot, or one a reload took away
                # (fewer workers), is gone, not down: no WorkerDown alert for it.
                with contextlib.suppress(KeyError):
                    self.metrics.worker_up.remove(worker.slot)
                self.metrics.forget_worker_info(worker.slot)
            else:
                self.metrics.worker_up.labels(worker=worker.slot).set(0)
            return Exit(Decision())
        self.metrics.worker_up.labels(worker=worker.slot).set(0)
        decision, load_fault = Decision(), None
        if worker.info is None and reason != "load_error":
            # Ended while loading, without a word: a load that hung past its
            # deadline, or a crash (which may be the OOM killer's doing, once).
            load_fault = Fault(
                kind="load_error",
                message=f"the worker ended ({reason}) while loading, exit code {code}",
            )
            decision = self.recovery.died_loading(worker.model_name, reason, load_fault)
        lost, fault = tuple(worker.take_all()), None
        if lost:
            what = "missed its deadline" if reason == "hang" else "died"
            fault = Fault(
                kind="hang" if reason == "hang" else "crash",
                message=f"the worker {what} (exit code {code})",
            )
        self.metrics.worker_restarts.labels(reason=reason).inc()
        self.pool.schedule_restart(worker.slot)
        return Exit(decision, load_fault, lost, reason, fault)

    # --- the state of the pool, for readiness --------------------------------------

    def serving(self) -> bool:
        """A worker of the active model (not a per-file fallback) is loaded."""
        active = self.recovery.active
        return any(
            w.serving and not is_fallback_slot(w.slot) and w.model_name == active for w in self.pool
        )

    def loading(self) -> bool:
        return any(w.state == WorkerState.LOADING for w in self.pool)

    def shutdown(self, *, immediately: bool) -> None:
        for worker in self.pool:
            for task in worker.tasks.values():
                log.info("file.left_pending", file=str(task.path), reason="shutdown")
            self.metrics.worker_up.labels(worker=worker.slot).set(0)
        self.pool.shutdown(immediately=immediately)
