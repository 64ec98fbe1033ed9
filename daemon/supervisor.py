"""The arbiter: queue -> workers, deadlines, restarts with backoff, the fallback chain.

One thread runs the main loop (gunicorn's arbiter is the model): signal
handlers only queue the signal, the watcher and HTTP threads only queue work or
read snapshots, and every decision happens here. The loop waits on every
worker's pipe and process sentinel plus a wake-up pipe, so a result, a death
or a new file is acted on at once, and deadlines are checked on every turn.

This process never imports torch: the engines live in spawned workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import time
from collections import Counter, deque
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path
from typing import Protocol

import structlog

from daemon import logs, outputs, payloads
from daemon.chain import ModelChain, RestartBackoff
from daemon.intake import Arrival, Intake
from daemon.journal import Admission, Journal
from daemon.metrics import Metrics
from daemon.protocol import (
    EXIT_CUDA_FATAL,
    EXIT_LOAD_FAILED,
    DocumentResult,
    Fault,
    Job,
    JobDone,
    JobFailed,
    Loaded,
    LoadFailed,
    Progress,
    Shutdown,
    WorkerConfig,
)
from daemon.settings import Settings, SettingsError
from daemon.tasks import FileTask
from daemon.workers import WorkerHandle, WorkerState

log = structlog.get_logger("daemon.supervisor")

# Exit codes of the daemon (the CLI returns them).
EXIT_OK = 0
EXIT_FAILED = 1  # `once`: a file failed
EXIT_NO_MODEL = 3  # no model of the chain can run: systemd should restart us

# Delays before retrying outputs that could not be written.
NO_SPACE_RETRY_SECONDS = 30.0
PERMISSION_RETRY_SECONDS = 60.0
LOOP_TICK_SECONDS = 0.5
STATUS_EVERY_SECONDS = 2.0
EXTEND_TIMEOUT_EVERY_SECONDS = 10.0


class Notifier(Protocol):
    """What the supervisor needs of daemon.systemd.Notifier."""

    @property
    def watchdog_interval(self) -> float | None: ...
    def ready(self, status: str | None = None) -> None: ...
    def status(self, text: str) -> None: ...
    def extend_timeout(self, seconds: float) -> None: ...
    def watchdog(self) -> None: ...
    def reloading(self) -> None: ...
    def stopping(self, status: str | None = None) -> None: ...


class _Silent:
    """The notifier when not under systemd (and in `once`)."""

    watchdog_interval: float | None = None

    def ready(self, status: str | None = None) -> None:
        pass

    def status(self, text: str) -> None:
        pass

    def extend_timeout(self, seconds: float) -> None:
        pass

    def watchdog(self) -> None:
        pass

    def reloading(self) -> None:
        pass

    def stopping(self, status: str | None = None) -> None:
        pass


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        *,
        journal: Journal,
        metrics: Metrics,
        notifier: Notifier | None = None,
        reload_settings: Callable[[], Settings] | None = None,
        watch: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.metrics = metrics
        self.notifier: Notifier = notifier if notifier is not None else _Silent()
        self.reload_settings = reload_settings
        self.clock = clock
        self.generation = 0
        self.chain = ModelChain(settings.worker.chain, settings.recovery, clock)
        self.workers: list[WorkerHandle] = []
        self.backoff: dict[str, RestartBackoff] = {}
        self.restart_due: dict[str, float] = {}
        self.unloadable: dict[str, float] = {}  # fallback models that failed to load, and when
        self.queue: deque[FileTask] = deque()
        self.delayed: list[FileTask] = []
        self.tasks: dict[Path, FileTask] = {}  # queued, delayed or in flight
        self.followups: dict[Path, Arrival] = {}  # arrivals for files that were in flight
        self.overrides: Counter[str] = Counter()  # queued tasks per per-file fallback model
        self.outcomes: dict[Path, str] = {}  # final outcome per file (for `once`)
        self.exit_code = EXIT_OK
        self.stopping = False
        self.stop_now = False
        self.ready_sent = False
        self.readiness: tuple[bool, str] = (False, "starting")
        self._signals: deque[int] = deque()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.intake = Intake(settings.limits.max_file_bytes, self._wake)
        self._watch = watch
        self.watcher: object | None = None
        self._job_ids = 0
        self._worker_ids = 0
        self._last_ping = 0.0
        self._last_status = ("", 0.0)
        self._last_extend = 0.0

    # --- public ------------------------------------------------------------

    def add_files(self, paths: list[Path]) -> None:
        """`once`: admit these files now (processed even if outputs exist)."""
        for path in paths:
            try:
                info = path.stat()
                sha = self._hash_now(path, info.st_size, info.st_mtime_ns)
            except OSError as error:
                log.error("file.unreadable", path=str(path), error=error.strerror or str(error))
                self.outcomes[path] = "failed"
                continue
            self._admit(
                Arrival(path, path.parent, info.st_size, info.st_mtime_ns, sha), forced=True
            )

    def run(self) -> int:
        """Serve until stopped (or, without watching, until the queue is empty)."""
        previous = self._install_signal_handlers()
        try:
            self._start()
            while not self._finished():
                self._turn()
        finally:
            self._shutdown()
            self._restore_signal_handlers(previous)
        failed = any(outcome != "done" for outcome in self.outcomes.values())
        if not self._watch and self.exit_code == EXIT_OK and failed:
            return EXIT_FAILED
        return self.exit_code

    def request_stop(self) -> None:
        self._signals.append(signal.SIGTERM)
        self._wake()

    def ready_state(self) -> tuple[bool, str]:
        """For /readyz (called from the HTTP thread: reads one tuple)."""
        return self.readiness

    # --- start and stop ----------------------------------------------------

    def _start(self) -> None:
        removed = outputs.remove_stale_temp_files(
            self.settings.watch.inboxes, recursive=self.settings.watch.recursive
        )
        if removed:
            log.info("outputs.stale_temp_removed", count=removed)
        for entry in self.journal.pending():
            if not os.path.lexists(entry.path):
                log.info("file.vanished", path=entry.path, when="while the daemon was down")
                self.journal.forget(Path(entry.path))
                self.metrics.files.labels(outcome="vanished").inc()
        self.notifier.status(f"loading {self.chain.active}")
        if self._watch:
            from daemon.watcher import Watcher

            watcher = Watcher(
                self.settings.watch, self.intake.on_stable, already_final=self.journal.is_final
            )
            watcher.start()
            self.watcher = watcher
        log.info(
            "daemon.started",
            inboxes=[str(path) for path in self.settings.watch.inboxes] if self._watch else [],
            chain=self.chain.names,
            pid=os.getpid(),
        )

    def _finished(self) -> bool:
        if self.chain.exhausted:
            return True
        if self.stopping:
            return (
                not any(worker.state == WorkerState.BUSY for worker in self.workers)
                or self.stop_now
            )
        if not self._watch:
            return not self.queue and not self.delayed and not self._in_flight()
        return False

    def _shutdown(self) -> None:
        self.notifier.stopping("stopping")
        self.readiness = (False, "stopping")
        if self.watcher is not None:
            self.watcher.stop()  # type: ignore[attr-defined]
        now = self.clock()
        grace = self.settings.recovery.stop_grace_seconds
        for worker in self.workers:
            if worker.task is not None:
                log.info("file.left_pending", path=str(worker.task.path), reason="shutdown")
            if worker.state in (WorkerState.IDLE, WorkerState.LOADING) and not self.stop_now:
                worker.send(Shutdown("daemon stopping"))
                worker.exit_reason = "stop"
            else:
                worker.terminate(now, grace, "stop")
        deadline = time.monotonic() + grace
        for worker in self.workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if not worker.has_exited():
                worker.kill()
            worker.reap()
            self.metrics.worker_up.labels(worker=worker.slot).set(0)
        self.workers.clear()
        self.metrics.set_active_model(None, self.chain.position or 0)
        with contextlib.suppress(OSError):
            os.close(self._wake_r)
            os.close(self._wake_w)
        log.info("daemon.stopped", exit_code=self.exit_code, pending=len(self.journal.pending()))

    # --- signals -------------------------------------------------------------

    def _install_signal_handlers(self) -> dict[int, object]:
        previous: dict[int, object] = {}
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _restore_signal_handlers(self, previous: dict[int, object]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _on_signal(self, signum: int, _frame: object) -> None:
        # Only queue it: the main loop acts (gunicorn's arbiter does the same).
        self._signals.append(signum)
        self._wake()

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.popleft()
            if signum == signal.SIGHUP:
                self._reload()
            elif self.stopping:
                log.warning("daemon.stop_now", signal=signal.Signals(signum).name)
                self.stop_now = True
            else:
                log.info("daemon.stopping", signal=signal.Signals(signum).name)
                self.stopping = True
                if self.watcher is not None:
                    self.watcher.stop()  # type: ignore[attr-defined]
                    self.watcher = None

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"!")

    # --- the loop --------------------------------------------------------------

    def _turn(self) -> None:
        self._handle_signals()
        now = self.clock()
        for arrival in self.intake.drain():
            self._admit(arrival)
        for worker in list(self.workers):
            for message in worker.receive_all():
                self._on_message(worker, message)
        for worker in list(self.workers):
            if worker.has_exited():
                self._on_exit(worker)
        now = self.clock()
        self._enforce_deadlines(now)
        self._release_delayed(now)
        self._maintain_chain()
        self._ensure_workers(now)
        self._dispatch(now)
        self._report(now)
        self._sleep(now)

    def _sleep(self, now: float) -> None:
        timeout = LOOP_TICK_SECONDS
        for worker in self.workers:
            for moment in (worker.deadline, worker.kill_at):
                if moment is not None:
                    timeout = min(timeout, max(0.0, moment - now))
        for due in self.restart_due.values():
            if due > now:
                timeout = min(timeout, due - now)
        objects: list[object] = [self._wake_r]
        for worker in self.workers:
            objects.extend((worker.conn, worker.sentinel))
        wait(objects, timeout)  # type: ignore[arg-type]
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 4096):
                pass

    def _in_flight(self) -> bool:
        return any(worker.task is not None for worker in self.workers)

    # --- admission -------------------------------------------------------------

    def _hash_now(self, path: Path, size: int, mtime_ns: int) -> str:
        from daemon.intake import content_key

        return content_key(path, size, mtime_ns, self.settings.limits.max_file_bytes)

    def _admit(self, arrival: Arrival, *, forced: bool = False) -> None:
        path = arrival.path
        if arrival.sha256 is None:
            self._unreadable(arrival)
            return
        current = self.tasks.get(path)
        if current is not None:
            if current.sha256 == arrival.sha256 and not current.unwritten:
                return
            if any(worker.task is current for worker in self.workers):
                # In flight: finish what was read, then look again.
                self.followups[path] = arrival
                return
            self._drop(current)
        admission = self.journal.admit(
            path, arrival.inbox, arrival.size, arrival.mtime_ns, arrival.sha256
        )
        if admission is not Admission.PENDING and not forced:
            recorded = outputs.recorded(path)
            if recorded is not None and recorded.sha256 == arrival.sha256:
                # Our outputs already describe this content (a crash came between
                # writing them and the journal, or the journal is new): not twice.
                if admission is Admission.NEW:
                    finish = self.journal.mark_done if recorded.outcome == "done" else None
                    if finish is not None:
                        finish(path, arrival.sha256, arrival.size, arrival.mtime_ns)
                    else:
                        self.journal.mark_failed(
                            path, arrival.sha256, arrival.size, arrival.mtime_ns, "recorded"
                        )
                log.info("file.skipped", path=str(path), reason="outputs exist for this content")
                self.metrics.files.labels(outcome="skipped").inc()
                self.outcomes[path] = recorded.outcome
                return
            if admission is Admission.UNCHANGED:
                log.info("file.redo", path=str(path), reason="outputs were removed")
                self.journal.reopen(path)
        now = self.clock()
        entry = self.journal.get(path)
        task = FileTask(
            path=path,
            inbox=arrival.inbox,
            sha256=arrival.sha256,
            size=arrival.size,
            mtime_ns=arrival.mtime_ns,
            admitted_at=now,
            admitted_wall=time.time(),
            settle_seconds=arrival.settle_seconds,
            trail=list(entry.trail) if entry is not None else [],
            forced=forced,
        )
        self._enqueue(task, now)
        log.debug("file.queued", path=str(path), queue=len(self.queue))

    def _unreadable(self, arrival: Arrival) -> None:
        """No permission to read (or an I/O error): an error sidecar, retried on rescans."""
        existing = outputs.read_owned_json(outputs.OutputPaths.beside(arrival.path).error)
        if existing is not None and existing.get("error", {}).get("code") == "unreadable":
            return
        log.error("file.failed", path=str(arrival.path), reason="unreadable", error=arrival.error)
        fault = Fault(
            kind="bad_input",
            message=f"cannot read the file: {arrival.error}",
            detail={"code": "unreadable"},
        )
        task = FileTask(
            arrival.path,
            arrival.inbox,
            "",
            arrival.size,
            arrival.mtime_ns,
            self.clock(),
            time.time(),
        )
        try:
            outputs.write_failure(
                arrival.path,
                payloads.failure(
                    task,
                    fault,
                    sha256="",
                    model_name=None,
                    summary="the file could not be read; it is tried again on the next rescan",
                ),
            )
        except outputs.OutputError as error:
            self._count_output_error(error)
        self.metrics.files.labels(outcome="failed").inc()
        self.outcomes[arrival.path] = "failed"

    def _enqueue(self, task: FileTask, now: float, *, front: bool = False) -> None:
        task.queued_at = now
        if front:
            self.queue.appendleft(task)
        else:
            self.queue.append(task)
        self.tasks[task.path] = task
        if task.model_override is not None:
            self.overrides[task.model_override] += 1

    def _dequeue(self, task: FileTask) -> None:
        self.queue.remove(task)
        if task.model_override is not None:
            self.overrides[task.model_override] -= 1
            if self.overrides[task.model_override] <= 0:
                del self.overrides[task.model_override]

    def _drop(self, task: FileTask) -> None:
        """Forget a queued or delayed task (superseded by new content)."""
        if task in self.queue:
            self._dequeue(task)
        if task in self.delayed:
            self.delayed.remove(task)
        self.tasks.pop(task.path, None)

    def _forget(self, task: FileTask) -> None:
        self.tasks.pop(task.path, None)
        followup = self.followups.pop(task.path, None)
        if followup is not None:
            self._recheck(followup.path, followup.inbox)

    def _recheck(self, path: Path, inbox: Path) -> None:
        """Look at a file again now (it changed while it was being processed)."""
        try:
            info = path.lstat()
        except FileNotFoundError:
            return
        if stat.S_ISREG(info.st_mode):
            self.intake.put(path, inbox, info.st_size, info.st_mtime_ns)

    # --- workers ---------------------------------------------------------------

    def _worker_config(self, model: str) -> WorkerConfig:
        self._worker_ids += 1
        settings = self.settings
        log_format = settings.log.format
        if log_format == "auto":
            log_format = "json" if logs.wants_json("auto") else "console"
        return WorkerConfig(
            worker_id=self._worker_ids,
            model_name=model,
            model=settings.model(model),
            limits=settings.limits,
            device=settings.worker.device,
            threads=settings.worker.threads,
            allow_download=settings.worker.allow_download,
            oom_retries=settings.recovery.oom_retries,
            oom_scale=settings.recovery.oom_scale,
            log_level=settings.log.level,
            log_format=log_format,
        )

    def _spawn(self, slot: str, model: str, now: float) -> None:
        worker = WorkerHandle.spawn(
            slot,
            self._worker_config(model),
            self.generation,
            now,
            self.settings.limits.load_deadline_seconds,
        )
        self.workers.append(worker)
        self.restart_due.pop(slot, None)
        # The series exists (at 0) from the first start, so "worker down" can
        # fire for a worker that never manages to load.
        self.metrics.worker_up.labels(worker=slot).set(0)
        log.info("worker.started", slot=slot, model=model, pid=worker.pid)

    def _wanted_model(self, worker: WorkerHandle) -> str | None:
        """The model this worker's slot should run now (None: the slot should close)."""
        if worker.slot.startswith("fallback:"):
            return worker.model_name
        return self.chain.active

    def _ensure_workers(self, now: float) -> None:
        if self.stopping or self.chain.exhausted:
            return
        active = self.chain.active
        assert active is not None
        # Retire workers whose model or settings are out of date; busy ones
        # finish their file first (_after_job checks again).
        for worker in self.workers:
            stale = (
                worker.generation != self.generation
                or self._wanted_model(worker) != worker.model_name
            )
            if stale and worker.state in (WorkerState.IDLE, WorkerState.LOADING):
                self._retire(worker, now, "model or settings changed")
        slots = {worker.slot for worker in self.workers}
        wanted = [(str(index), active) for index in range(self.settings.worker.count)]
        for model in self.overrides:
            if model != active and model not in self.unloadable:
                wanted.append((f"fallback:{model}", model))
        for slot, model in wanted:
            if slot in slots or now < self.restart_due.get(slot, 0.0):
                continue
            self._spawn(slot, model, now)
        idle_limit = self.settings.recovery.idle_fallback_seconds
        for worker in self.workers:
            if (
                worker.slot.startswith("fallback:")
                and worker.state == WorkerState.IDLE
                and self.overrides.get(worker.model_name, 0) == 0
                and worker.idle_since is not None
                and now - worker.idle_since > idle_limit
            ):
                self._retire(worker, now, "idle fallback")

    def _retire(self, worker: WorkerHandle, now: float, why: str) -> None:
        log.info("worker.retiring", slot=worker.slot, model=worker.model_name, why=why)
        if worker.state == WorkerState.IDLE and worker.send(Shutdown(why)):
            worker.state = WorkerState.STOPPING
            worker.exit_reason = "retired"
            worker.kill_at = now + self.settings.recovery.stop_grace_seconds
        else:
            worker.terminate(now, self.settings.recovery.stop_grace_seconds, "retired")

    def _enforce_deadlines(self, now: float) -> None:
        for worker in self.workers:
            if worker.kill_at is not None and now >= worker.kill_at and not worker.has_exited():
                log.warning(
                    "worker.killed", slot=worker.slot, pid=worker.pid, why="did not stop in time"
                )
                worker.kill()
                worker.kill_at = None
            elif worker.deadline is not None and now >= worker.deadline and worker.kill_at is None:
                what = "loading" if worker.state == WorkerState.LOADING else "a page"
                log.error(
                    "worker.hung",
                    slot=worker.slot,
                    pid=worker.pid,
                    model=worker.model_name,
                    path=str(worker.task.path) if worker.task else None,
                    waited_for=what,
                )
                worker.deadline = None
                worker.terminate(now, self.settings.recovery.stop_grace_seconds, "hang")

    def _on_message(self, worker: WorkerHandle, message: object) -> None:
        now = self.clock()
        if isinstance(message, Progress):
            worker.deadline = now + self.settings.limits.page_deadline_seconds
        elif isinstance(message, Loaded):
            self._on_loaded(worker, message, now)
        elif isinstance(message, LoadFailed):
            worker.exit_reason = "load_error"
            worker.deadline = None
            self._model_load_failed(worker.model_name, message.fault)
        elif isinstance(message, JobDone):
            task = self._take_task(worker, message.job_id)
            if task is not None:
                self.backoff.setdefault(
                    worker.slot, RestartBackoff(self.settings.recovery.backoff_cap_seconds)
                ).reset()
                self._complete(task, message.result, worker.model_name)
            self._after_job(worker, now)
        elif isinstance(message, JobFailed):
            self._on_job_failed(worker, message, now)
        else:
            log.error("worker.protocol_error", slot=worker.slot, received=type(message).__name__)

    def _on_loaded(self, worker: WorkerHandle, message: Loaded, now: float) -> None:
        worker.state = WorkerState.IDLE
        worker.info = message.info
        worker.deadline = None
        worker.idle_since = now
        self.metrics.model_load_seconds.labels(model=worker.model_name).observe(
            message.load_seconds
        )
        self.metrics.worker_up.labels(worker=worker.slot).set(1)
        self.metrics.record_memory(message.memory)
        log.info(
            "model.loaded",
            slot=worker.slot,
            model=worker.model_name,
            engine=message.info.engine,
            device=message.info.device,
            dtype=message.info.dtype,
            attention=message.info.attention,
            family=message.info.family,
            seconds=round(message.load_seconds, 3),
        )
        if not worker.slot.startswith("fallback:") and worker.model_name == self.chain.active:
            self.metrics.set_active_model(message.info, self.chain.position or 0)

    def _take_task(self, worker: WorkerHandle, job_id: int) -> FileTask | None:
        task = worker.task
        worker.task = None
        worker.deadline = None
        if task is None or task.job_id != job_id:
            log.error("worker.protocol_error", slot=worker.slot, job_id=job_id)
            return None
        return task

    def _after_job(self, worker: WorkerHandle, now: float) -> None:
        if worker.state == WorkerState.BUSY:
            worker.state = WorkerState.IDLE
            worker.idle_since = now
        if worker.generation != self.generation or self._wanted_model(worker) != worker.model_name:
            self._retire(worker, now, "model or settings changed")

    def _on_job_failed(self, worker: WorkerHandle, message: JobFailed, now: float) -> None:
        task = self._take_task(worker, message.job_id)
        fault = message.fault
        self.metrics.record_memory(message.memory)
        if message.fatal:
            # The worker exits on its own (EXIT_CUDA_FATAL); make sure it does.
            worker.expect_exit(now, self.settings.recovery.stop_grace_seconds, "cuda_fatal")
            self.metrics.cuda_errors.labels(kind="cuda_fatal").inc()
            if task is not None:
                self._fatal_for_task(worker.model_name, task, "cuda_fatal", fault)
            return
        self._after_job(worker, now)
        if task is None:
            return
        if fault.kind == "bad_input":
            if fault.detail.get("code") == "vanished":
                self._vanished(task)
            else:
                self._fail(
                    task,
                    fault,
                    message.sha256,
                    worker.model_name,
                    "the file cannot be read as a document",
                )
            return
        if fault.kind == "oom":
            self.metrics.cuda_errors.labels(kind="oom").inc()
        task.trail.append(
            {"model": worker.model_name, "outcome": fault.kind, "message": fault.message[:500]}
        )
        self._send_down_chain(task, worker.model_name, fault, message.sha256)

    def _on_exit(self, worker: WorkerHandle) -> None:
        code = worker.reap()
        self.workers.remove(worker)
        self.metrics.worker_up.labels(worker=worker.slot).set(0)
        reason = worker.exit_reason
        if reason is None:
            if code == EXIT_CUDA_FATAL:
                reason = "cuda_fatal"
            elif code == EXIT_LOAD_FAILED:
                reason = "load_error"
            else:
                reason = "crash"
        log_method = log.info if reason in ("stop", "retired") else log.error
        log_method(
            "worker.exited",
            slot=worker.slot,
            pid=worker.pid,
            exit_code=code,
            reason=reason,
            model=worker.model_name,
        )
        if reason in ("stop", "retired"):
            if worker.slot.startswith("fallback:"):
                # A retired per-file fallback slot is gone, not down.
                with contextlib.suppress(KeyError):
                    self.metrics.worker_up.remove(worker.slot)
            return
        if worker.info is None and reason != "load_error":
            # Died (or hung) while loading, without a word: the model cannot load.
            self._model_load_failed(
                worker.model_name,
                Fault(
                    kind="load_error",
                    message=f"the worker {reason} while loading (exit code {code})",
                ),
            )
        if worker.task is not None:
            task = worker.task
            worker.task = None
            self._fatal_for_task(
                worker.model_name,
                task,
                reason,
                Fault(
                    kind="hang" if reason == "hang" else "crash",
                    message=f"the worker {'missed its deadline' if reason == 'hang' else 'died'} (exit code {code})",
                ),
            )
        self.metrics.worker_restarts.labels(reason=reason).inc()
        backoff = self.backoff.setdefault(
            worker.slot, RestartBackoff(self.settings.recovery.backoff_cap_seconds)
        )
        delay = backoff.next_delay()
        self.restart_due[worker.slot] = self.clock() + delay
        log.info(
            "worker.restart_scheduled",
            slot=worker.slot,
            in_seconds=delay,
            restarts=backoff.restarts,
        )

    # --- the chain -------------------------------------------------------------

    def _model_load_failed(self, model: str, fault: Fault) -> None:
        log.error("model.load_failed", model=model, error=fault.message)
        if model == self.chain.active:
            self._demote("load_error")
            return
        self.unloadable[model] = self.clock()
        for task in [task for task in self.queue if task.model_override == model]:
            self._dequeue(task)
            task.trail.append(
                {"model": model, "outcome": "load_error", "message": fault.message[:500]}
            )
            self.tasks.pop(task.path, None)
            self._send_down_chain(task, model, fault, None)

    def _demote(self, reason: str) -> None:
        old = self.chain.active
        new = self.chain.demote()
        while new is not None and new in self.unloadable:
            new = self.chain.demote()
        self.metrics.fallbacks.labels(
            from_model=old or "", to_model=new or "none", reason=reason, scope="daemon"
        ).inc()
        self.metrics.set_active_model(None, self.chain.position or 0)
        if new is None:
            log.critical("chain.exhausted", last=old, reason=reason, pending=len(self.tasks))
            self.exit_code = EXIT_NO_MODEL
            self.readiness = (False, "no model of the chain can run")
            return
        log.warning("chain.fallback", from_model=old, to_model=new, reason=reason)

    def _maintain_chain(self) -> None:
        if self.chain.cooldown_due() and not self.stopping:
            first = self.chain.promote()
            self.unloadable.clear()
            log.info(
                "chain.retry_first",
                model=first,
                after_seconds=self.settings.recovery.cooldown_seconds,
            )
            self.metrics.set_active_model(None, 0)

    def _fatal_for_task(self, model: str, task: FileTask, reason: str, fault: Fault) -> None:
        """A worker died (or must die) on this file: count it against file and model."""
        attempts = self.journal.record_attempt(task.path, model)
        demote = self.chain.record_fatal(model)
        limit = self.settings.recovery.attempts_per_model
        log.error(
            "file.attempt_failed",
            path=str(task.path),
            model=model,
            reason=reason,
            attempt=attempts,
            of=limit,
        )
        if attempts >= limit:
            task.trail.append(
                {
                    "model": model,
                    "outcome": reason,
                    "message": f"the worker was lost {attempts} times on this file",
                }
            )
            self._send_down_chain(task, model, fault, None)
        else:
            self.tasks.pop(task.path, None)
            self._enqueue(task, self.clock(), front=True)
        if demote:
            self._demote(reason)

    def _send_down_chain(
        self, task: FileTask, model: str, fault: Fault, sha256: str | None
    ) -> None:
        """One file moves to the next model after `model`; none left: error sidecar."""
        following = self.chain.after(model)
        while following is not None and following in self.unloadable:
            following = self.chain.after(following)
        self.journal.record_trail(task.path, task.trail)
        if following is None:
            self._fail(task, fault, sha256, model, "every model of the chain failed on this file")
            return
        self.metrics.fallbacks.labels(
            from_model=model, to_model=following, reason=fault.kind, scope="file"
        ).inc()
        log.warning(
            "file.fallback",
            path=str(task.path),
            from_model=model,
            to_model=following,
            reason=fault.kind,
        )
        self.tasks.pop(task.path, None)
        task.model_override = following
        self._enqueue(task, self.clock(), front=True)

    # --- dispatch --------------------------------------------------------------

    def _dispatch(self, now: float) -> None:
        if self.stopping or self.chain.exhausted:
            return
        idle = [
            w
            for w in self.workers
            if w.state == WorkerState.IDLE and w.generation == self.generation
        ]
        if not idle or not self.queue:
            return
        active = self.chain.active
        for task in list(self.queue):
            if not idle:
                break
            model = task.model_override or active
            worker = next(
                (w for w in idle if w.model_name == model and self._wanted_model(w) == model), None
            )
            if worker is None:
                continue
            self._dequeue(task)
            if not self._still_there(task):
                continue
            self._job_ids += 1
            task.job_id = self._job_ids
            task.dispatched_at = now
            if not worker.send(Job(self._job_ids, str(task.path), attempt=1)):
                self._enqueue(task, now, front=True)
                idle.remove(worker)
                continue
            idle.remove(worker)
            worker.state = WorkerState.BUSY
            worker.task = task
            worker.idle_since = None
            worker.deadline = now + self.settings.limits.page_deadline_seconds
            self.metrics.queue_wait_seconds.observe(now - task.queued_at)

    def _still_there(self, task: FileTask) -> bool:
        try:
            info = task.path.lstat()
        except FileNotFoundError:
            self._vanished(task)
            return False
        if not stat.S_ISREG(info.st_mode):
            log.warning("file.dropped", path=str(task.path), reason="no longer a regular file")
            self.journal.forget(task.path)
            self.tasks.pop(task.path, None)
            return False
        return True

    def _vanished(self, task: FileTask) -> None:
        log.info("file.vanished", path=str(task.path), when="before its turn")
        self.journal.forget(task.path)
        self.metrics.files.labels(outcome="vanished").inc()
        self.outcomes[task.path] = "vanished"
        self._forget(task)

    def _release_delayed(self, now: float) -> None:
        due = [task for task in self.delayed if task.not_before <= now]
        for task in due:
            self.delayed.remove(task)
            if task.unwritten is not None:
                self._write_result(
                    task, task.unwritten, task.trail[-1]["model"] if task.trail else "", now
                )
            else:
                self._enqueue(task, now)

    # --- outcomes --------------------------------------------------------------

    def _complete(self, task: FileTask, result: DocumentResult, model: str) -> None:
        now = self.clock()
        pages = len(result.pages)
        self.metrics.pages.labels(model=model).inc(pages)
        tokens = sum(page.text.tokens or 0 for page in result.pages)
        if tokens:
            self.metrics.generated_tokens.labels(model=model).inc(tokens)
        for page in result.pages:
            self.metrics.page_inference_seconds.labels(model=model).observe(page.seconds)
        if any("out of memory" in note for page in result.pages for note in page.notes):
            self.metrics.cuda_errors.labels(kind="oom").inc()
        self.metrics.record_memory(result.memory)
        self._write_result(task, result, model, now)

    def _write_result(self, task: FileTask, result: DocumentResult, model: str, now: float) -> None:
        queue_seconds = (task.dispatched_at or now) - task.queued_at
        timings = {
            "queue_seconds": queue_seconds,
            "open_seconds": result.open_seconds,
            "inference_seconds": result.inference_seconds,
            "total_seconds": now - task.admitted_at,
        }
        if task.settle_seconds is not None:
            timings["settle_seconds"] = task.settle_seconds
        entry = self.journal.get(task.path)
        known = [entry.md_sha256] if entry is not None and entry.md_sha256 else []
        write_started = time.monotonic()
        try:
            outputs.write_success(
                task.path,
                payloads.markdown(result),
                payloads.success(task, result, model, timings),
                known_markdown_hashes=known,
                before_commit=lambda digest: self.journal.note_markdown(task.path, digest),
                indent=self.settings.outputs.json_indent,
            )
        except outputs.OutputError as error:
            self._output_failed(task, result, error)
            return
        write_seconds = time.monotonic() - write_started
        changed = result.sha256 != task.sha256
        # A file that changed under us is recorded for what was read; an
        # impossible size keeps the new content from looking finished.
        size, mtime = (-1, -1) if changed else (task.size, task.mtime_ns)
        self.journal.mark_done(task.path, result.sha256, size, mtime)
        total = self.clock() - task.admitted_at
        self.metrics.files.labels(outcome="done").inc()
        self.metrics.file_seconds.labels(outcome="done").observe(total)
        self.metrics.last_success.set(time.time())
        self.outcomes[task.path] = "done"
        log.info(
            "file.done",
            path=str(task.path),
            outcome="done",
            model=model,
            engine=result.engine.engine,
            pages=len(result.pages),
            seconds=round(total, 3),
            queue_seconds=round(queue_seconds, 3),
            inference_seconds=round(result.inference_seconds, 3),
            write_seconds=round(write_seconds, 4),
            settle_seconds=round(task.settle_seconds, 3)
            if task.settle_seconds is not None
            else None,
            fallbacks=len(task.trail),
        )
        self._forget(task)
        if changed:
            log.info("file.changed_while_processing", path=str(task.path))
            self._recheck(task.path, task.inbox)

    def _output_failed(
        self, task: FileTask, result: DocumentResult | None, error: outputs.OutputError
    ) -> None:
        self._count_output_error(error)
        if error.reason == "not_ours":
            log.error(
                "file.failed", path=str(task.path), reason="output_in_the_way", error=str(error)
            )
            self.journal.mark_failed(task.path, task.sha256, task.size, task.mtime_ns, str(error))
            self.metrics.files.labels(outcome="failed").inc()
            self.outcomes[task.path] = "failed"
            self._forget(task)
            return
        delay = NO_SPACE_RETRY_SECONDS if error.reason == "no_space" else PERMISSION_RETRY_SECONDS
        log.error(
            "file.output_failed",
            path=str(task.path),
            reason=error.reason,
            error=str(error),
            retry_in=delay,
        )
        if not self._watch:
            # `once` does not wait: the file failed this time.
            self.outcomes[task.path] = "failed"
            self._forget(task)
            return
        task.unwritten = result
        task.not_before = self.clock() + delay
        self.delayed.append(task)

    def _count_output_error(self, error: outputs.OutputError) -> None:
        self.metrics.output_errors.labels(reason=error.reason).inc()
        log.error("output.error", path=str(error.path), reason=error.reason, error=str(error))

    def _fail(
        self, task: FileTask, fault: Fault, sha256: str | None, model: str | None, summary: str
    ) -> None:
        sha = sha256 or task.sha256
        try:
            outputs.write_failure(
                task.path,
                payloads.failure(task, fault, sha256=sha, model_name=model, summary=summary),
                indent=self.settings.outputs.json_indent,
            )
        except outputs.OutputError as error:
            self._count_output_error(error)
        self.journal.mark_failed(task.path, sha, task.size, task.mtime_ns, fault.message[:1000])
        total = self.clock() - task.admitted_at
        self.metrics.files.labels(outcome="failed").inc()
        self.metrics.file_seconds.labels(outcome="failed").observe(total)
        self.outcomes[task.path] = "failed"
        log.error(
            "file.failed",
            path=str(task.path),
            outcome="failed",
            reason=fault.kind,
            code=fault.detail.get("code"),
            error=fault.message[:500],
            model=model,
            seconds=round(total, 3),
            tried=[step["model"] for step in task.trail],
        )
        self._forget(task)

    # --- reporting -------------------------------------------------------------

    def _report(self, now: float) -> None:
        self.metrics.queue_depth.set(len(self.queue) + len(self.delayed))
        if self.watcher is not None:
            self.metrics.files_settling.set(self.watcher.tracking)  # type: ignore[attr-defined]
        active = self.chain.active
        serving = [
            w
            for w in self.workers
            if w.serving and not w.slot.startswith("fallback:") and w.model_name == active
        ]
        if self.stopping:
            self.readiness = (False, "stopping")
        elif self.chain.exhausted:
            self.readiness = (False, "no model of the chain can run")
        elif serving:
            self.readiness = (True, f"serving with {active}")
        else:
            loading = any(w.state == WorkerState.LOADING for w in self.workers)
            self.readiness = (
                False,
                f"loading model {active}" if loading else f"worker for {active} is restarting",
            )
        if serving and not self.ready_sent and (self.watcher is not None or not self._watch):
            self.ready_sent = True
            self.notifier.ready(self._status_text(active))
            log.info("daemon.ready", model=active)
        if not self.ready_sent and now - self._last_extend >= EXTEND_TIMEOUT_EVERY_SECONDS:
            # A large model may take minutes to load: keep systemd's start timeout ahead of us.
            self._last_extend = now
            self.notifier.extend_timeout(EXTEND_TIMEOUT_EVERY_SECONDS * 3)
        interval = self.notifier.watchdog_interval
        if interval is not None and now - self._last_ping >= interval:
            # From the main loop only: if this loop is stuck, the pings stop and systemd acts.
            self._last_ping = now
            self.notifier.watchdog()
        text = self._status_text(active)
        if text != self._last_status[0] and now - self._last_status[1] >= STATUS_EVERY_SECONDS:
            self._last_status = (text, now)
            self.notifier.status(text)

    def _status_text(self, active: str | None) -> str:
        waiting = len(self.queue) + len(self.delayed)
        if self.chain.exhausted:
            return "no model of the chain can run"
        ready, reason = self.readiness
        text = reason if not ready else f"serving with {active}"
        if self.chain.position:
            text += f" (fallback: position {self.chain.position} of the chain)"
        return f"{text}; {waiting} file(s) waiting"

    # --- reload ----------------------------------------------------------------

    def _reload(self) -> None:
        if self.reload_settings is None:
            log.warning("settings.reload_unsupported")
            return
        self.notifier.reloading()
        try:
            new = self.reload_settings()
        except SettingsError as error:
            log.error("settings.reload_failed", error=str(error), keeping="the running settings")
            self.notifier.ready(self._status_text(self.chain.active))
            return
        old = self.settings
        self.settings = new
        if new.worker.chain != old.worker.chain or new.recovery != old.recovery:
            self.chain = ModelChain(new.worker.chain, new.recovery, self.clock)
            self.unloadable.clear()
            self.metrics.set_active_model(None, 0)
        if (
            new.models != old.models
            or new.limits != old.limits
            or new.worker != old.worker
            or new.recovery != old.recovery
            or new.log != old.log
        ):
            self.generation += 1
        if new.log != old.log:
            logs.configure(new.log.level, new.log.format)
        if self.watcher is not None and new.watch != old.watch:
            self.watcher.update(new.watch)  # type: ignore[attr-defined]
        self.intake.max_bytes = new.limits.max_file_bytes
        for key in ("state", "metrics"):
            if getattr(new, key) != getattr(old, key):
                log.warning("settings.needs_restart", section=key)
        log.info("settings.reloaded", generation=self.generation, chain=new.worker.chain)
        self.notifier.ready(self._status_text(self.chain.active))
