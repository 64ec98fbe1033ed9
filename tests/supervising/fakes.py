"""Stand-ins for the supervisor's policy tests: a clock the test moves, and scripted workers.

A scripted worker is a real WorkerHandle on a real pipe and a real sentinel
file descriptor, so the real WorkerPool (and the real Supervisor loop) waits
on it and reads from it; only the process is a stand-in: the test speaks for
the worker (Loaded, JobDone, JobFailed...) and decides when it ends. A
signal the pool sends it (SIGTERM, SIGKILL) ends it at once.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path

from daemon.protocol import (
    DocumentResult,
    EngineInfo,
    Fault,
    FaultKind,
    Job,
    JobDone,
    JobFailed,
    Loaded,
    LoadFailed,
    PageResult,
    PageText,
    Shutdown,
    ToWorker,
    WorkerConfig,
)
from daemon.supervising.worker_handles import WorkerHandle
from daemon.watching.intake import content_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ScriptedProcess:
    """What WorkerHandle asks of a process, with an exit the test (or a signal) decides."""

    pid = None  # never signalled through the kernel

    def __init__(self) -> None:
        self.exitcode: int | None = None
        self.sentinel, self._ended = os.pipe()

    def is_alive(self) -> bool:
        return self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        pass

    def end(self, code: int) -> None:
        if self.exitcode is None:
            self.exitcode = code
            os.write(self._ended, b"x")  # the sentinel becomes readable, as a dead child's does

    def close(self) -> None:
        for fd in (self.sentinel, self._ended):
            os.close(fd)


@dataclass(eq=False)
class ScriptedWorker(WorkerHandle):
    child: Connection | None = None  # the worker's end of the pipe, held by the test
    config: WorkerConfig | None = None

    def _signal(self, signum: int) -> None:
        assert isinstance(self.process, ScriptedProcess)
        self.process.end(-signum)

    # --- the test speaks for the worker ----------------------------------------

    @property
    def scripted(self) -> ScriptedProcess:
        assert isinstance(self.process, ScriptedProcess)
        return self.process

    def received(self) -> list[ToWorker]:
        assert self.child is not None
        messages = []
        while self.child.poll():
            messages.append(self.child.recv())
        return messages

    def jobs(self) -> list[Job]:
        return [message for message in self.received() if isinstance(message, Job)]

    def load(self, environment: dict[str, str] | None = None) -> None:
        """Loaded; `environment`: the pinning variables it says it found."""
        info = EngineInfo(engine="faulty", model=self.model_name)
        self._say(Loaded(info, load_seconds=0.5, environment=environment or {}))

    def fail_to_load(self, message: str = "no weights") -> None:
        self._say(LoadFailed(Fault(kind="load_error", message=message)))
        self.scripted.end(4)

    def finish(self, job: Job, text: str = "words") -> None:
        self._say(JobDone(job.job_id, result_of(Path(job.path), self.model_name, text)))

    def fail(self, job: Job, kind: FaultKind, *, fatal: bool = False, **detail: str) -> None:
        fault = Fault(kind=kind, message=f"{kind} on {Path(job.path).name}", detail=dict(detail))
        self._say(JobFailed(job.job_id, fault, fatal=fatal))
        if fatal:
            self.scripted.end(3)

    def die(self, code: int = -int(signal.SIGSEGV)) -> None:
        self.scripted.end(code)

    def _say(self, message: object) -> None:
        assert self.child is not None
        self.child.send(message)


@dataclass
class ScriptedWorkers:
    """Starts scripted workers for a WorkerPool (its `start`), and keeps them for the test."""

    started: list[ScriptedWorker] = field(default_factory=list)

    def __call__(
        self, slot: str, config: WorkerConfig, generation: int, now: float, load_deadline: float
    ) -> WorkerHandle:
        parent, child = Pipe(duplex=True)
        worker = ScriptedWorker(
            slot=slot,
            model_name=config.model_name,
            generation=generation,
            process=ScriptedProcess(),  # what WorkerHandle needs of a process
            conn=parent,
            deadline=now + load_deadline,
            child=child,
            config=config,
            placement=config.placement or config.device,
        )
        self.started.append(worker)
        return worker

    def latest(self, slot: str = "0") -> ScriptedWorker:
        return [worker for worker in self.started if worker.slot == slot][-1]

    def models(self) -> list[str]:
        return [worker.model_name for worker in self.started]

    def shutdowns(self, worker: ScriptedWorker) -> list[Shutdown]:
        return [message for message in worker.received() if isinstance(message, Shutdown)]


def result_of(path: Path, model: str, text: str = "words") -> DocumentResult:
    """What a worker answers for `path`: one page of `text`, for the bytes on disk now."""
    info = path.stat()
    return DocumentResult(
        sha256=content_key(path, info.st_size, info.st_mtime_ns, 1 << 30),
        size=info.st_size,
        format="png",
        page_count=1,
        pages=(PageResult(0, 10, 10, PageText(text), seconds=0.01),),
        open_seconds=0.001,
        inference_seconds=0.01,
        engine=EngineInfo(engine="faulty", model=model),
    )
