"""One worker process as the supervisor sees it: a spawned child, a pipe, a sentinel.

The supervisor never blocks on a worker: it waits on the pipe and the process
sentinel together (multiprocessing.connection.wait), so a worker that dies
mid-job is noticed at once, and a worker that hangs is noticed by its deadline.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from dataclasses import dataclass, field
from enum import StrEnum
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

import psutil
import structlog

from daemon import logs
from daemon.devices import WorkerDevice
from daemon.protocol import EngineInfo, FromWorker, Job, PdfRequest, ToWorker, WorkerConfig
from daemon.settings import Settings
from daemon.worker import run_worker

if TYPE_CHECKING:
    from daemon.tasks import FileTask

# spawn, never fork: a forked child would inherit the supervisor's threads and
# locks, and CUDA cannot be used in a forked child at all.
SPAWN = multiprocessing.get_context("spawn")

log = structlog.get_logger("daemon.supervising.worker_handles")


def worker_config(
    settings: Settings, worker_id: int, model: str, place: WorkerDevice | None = None
) -> WorkerConfig:
    """What a new worker needs to load `model` and serve files, from the daemon's settings,
    on its place of the device plan (None: the settings' one device, unpinned)."""
    if place is None:
        device = settings.worker.device
        place = WorkerDevice(device if isinstance(device, str) else device[0])
    log_format = settings.log.format
    if log_format == "auto":
        # Decided here, not in the worker: its stdout is the daemon's (the journal or a tty).
        log_format = "json" if logs.wants_json("auto") else "console"
    return WorkerConfig(
        worker_id=worker_id,
        model_name=model,
        model=settings.model(model),
        limits=settings.limits,
        device=place.worker_device,
        threads=settings.worker.threads,
        allow_download=settings.worker.allow_download,
        oom_retries=settings.recovery.oom_retries,
        oom_scale=settings.recovery.oom_scale,
        log_level=settings.log.level,
        log_format=log_format,
        placement=place.device,
        environment=place.environment(),
    )


class WorkerState(StrEnum):
    LOADING = "loading"
    IDLE = "idle"  # loaded, no file in hand
    BUSY = "busy"  # loaded, one file in hand or more (up to its capacity)
    STOPPING = "stopping"  # told to stop (or killed); waiting for the sentinel


@dataclass(eq=False)
class WorkerHandle:
    slot: str  # "0", "1", ... for the active model; "fallback:<model>" for per-file fallbacks
    model_name: str
    generation: int  # settings generation it was started with (SIGHUP bumps it)
    process: BaseProcess
    conn: Connection
    deadline: float | None  # monotonic: the load's, or the earliest of its jobs'; None while idle
    state: WorkerState = WorkerState.LOADING
    info: EngineInfo | None = None
    # The files in hand by job id: one for a model in the worker, up to
    # `capacity` for a server's (Loaded says how many).
    tasks: dict[int, FileTask] = field(default_factory=dict)
    capacity: int = 1
    job_deadlines: dict[int, float] = field(default_factory=dict)
    idle_since: float | None = None
    kill_at: float | None = None  # after SIGTERM, when SIGKILL follows
    exit_reason: str | None = (
        None  # why we expect it to be gone: stop, hang, cuda_fatal, load_error
    )
    placement: str = ""  # its device as the plan names it ("cuda:1")

    @classmethod
    def spawn(
        cls, slot: str, config: WorkerConfig, generation: int, now: float, load_deadline: float
    ) -> WorkerHandle:
        parent_end, child_end = SPAWN.Pipe(duplex=True)
        process = SPAWN.Process(
            target=run_worker,
            args=(config, child_end),
            name=f"ocr-inbox-worker-{slot}",
            daemon=True,
        )
        process.start()
        child_end.close()  # the child has its copy; ours would hide EOF from it
        return cls(
            slot=slot,
            model_name=config.model_name,
            generation=generation,
            process=process,
            conn=parent_end,
            deadline=now + load_deadline,
            placement=config.placement or config.device,
        )

    @property
    def sentinel(self) -> int:
        return self.process.sentinel

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def serving(self) -> bool:
        """Loaded and usable: idle or busy with a job."""
        return self.state in (WorkerState.IDLE, WorkerState.BUSY)

    @property
    def has_room(self) -> bool:
        """Loaded and holding fewer files than it can take."""
        return self.serving and len(self.tasks) < self.capacity

    @property
    def task(self) -> FileTask | None:
        """The file in hand (the first, for a worker holding several)."""
        return next(iter(self.tasks.values()), None)

    def job_progressed(self, job_id: int, deadline: float) -> None:
        """The job said it is alive: its deadline moves to `deadline`."""
        if job_id in self.job_deadlines:
            self.job_deadlines[job_id] = deadline
            self.deadline = min(self.job_deadlines.values())

    def send(self, message: ToWorker) -> bool:
        """Send a message; False when the pipe is broken (the sentinel will tell why)."""
        try:
            self.conn.send(message)
            return True
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
            return False

    def assign(self, task: FileTask, job_id: int, now: float, deadline_seconds: float) -> bool:
        """Send this file to the worker as job `job_id`; False when the pipe is broken."""
        # The PDF is built in the worker (it parses the input); only when wanted.
        wanted = "pdf" in task.formats
        pdf = PdfRequest(over_existing_text=task.pdf_over_existing_text) if wanted else None
        prompt = task.profile.prompt if task.profile is not None else None
        if not self.send(Job(job_id, str(task.path), pdf=pdf, prompt=prompt)):
            return False  # the sentinel will say why
        task.job_id = job_id
        self.state = WorkerState.BUSY
        self.tasks[job_id] = task
        self.idle_since = None
        self.job_deadlines[job_id] = now + deadline_seconds
        self.deadline = min(self.job_deadlines.values())
        return True

    def take_task(self, job_id: int) -> FileTask | None:
        """The file the worker just answered for (job `job_id`); None if it holds no such job."""
        task = self.tasks.pop(job_id, None)
        self.job_deadlines.pop(job_id, None)
        self.deadline = min(self.job_deadlines.values()) if self.job_deadlines else None
        if task is None:
            log.error("worker.protocol_error", slot=self.slot, job_id=job_id)
        return task

    def take_all(self) -> list[FileTask]:
        """Every file still in hand (the worker is gone)."""
        tasks = list(self.tasks.values())
        self.tasks.clear()
        self.job_deadlines.clear()
        return tasks

    def receive_all(self) -> list[FromWorker]:
        """Every message waiting on the pipe, without blocking."""
        messages: list[FromWorker] = []
        try:
            while self.conn.poll():
                messages.append(self.conn.recv())
        except (EOFError, ConnectionResetError, OSError):
            pass  # the worker is gone; its sentinel fires too
        return messages

    def terminate(self, now: float, grace: float, reason: str) -> None:
        """SIGTERM now, SIGKILL after `grace` seconds if it is still there."""
        if self.exit_reason is None:
            self.exit_reason = reason
        if self.kill_at is not None:
            return
        self.state = WorkerState.STOPPING
        self.kill_at = now + grace
        self._signal(signal.SIGTERM)

    def expect_exit(self, now: float, grace: float, reason: str) -> None:
        """The worker said it is exiting (a sticky CUDA error): let it, SIGKILL after `grace`."""
        self.exit_reason = reason
        self.state = WorkerState.STOPPING
        self.deadline = None
        if self.kill_at is None:
            self.kill_at = now + grace

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        # Never after reap(): the pid may belong to another process by then.
        if self.process.pid is not None and self.process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signum)

    def rss_bytes(self) -> int | None:
        """The worker's resident memory now; None when it is gone."""
        if self.pid is None or self.has_exited():
            return None
        try:
            return int(psutil.Process(self.pid).memory_info().rss)
        except psutil.Error:
            return None

    def over_memory(self, limit_megabytes: int) -> bool:
        """Is the worker's resident memory over the limit (0: no limit)? Logs it when so."""
        if not limit_megabytes:
            return False
        rss = self.rss_bytes()
        if rss is None or rss <= limit_megabytes * 1024 * 1024:
            return False
        log.warning(
            "worker.memory_exceeded",
            slot=self.slot,
            pid=self.pid,
            model=self.model_name,
            rss_megabytes=round(rss / (1024 * 1024)),
            limit_megabytes=limit_megabytes,
        )
        return True

    def has_exited(self) -> bool:
        return self.process.exitcode is not None or not self.process.is_alive()

    def reap(self) -> int | None:
        """Collect the exit status (the sentinel has fired); close our pipe end."""
        self.process.join(timeout=5)
        with contextlib.suppress(OSError):
            self.conn.close()
        return self.process.exitcode
