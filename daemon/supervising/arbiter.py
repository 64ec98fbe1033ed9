"""The arbiter: files -> workers, the fallback chain, and the main loop.

One thread runs the main loop (gunicorn's arbiter is the model): signal
handlers only queue the signal, the watcher and HTTP threads only queue work
or read a snapshot, and every decision is taken here. The loop waits on every
worker's pipe and process sentinel plus a wake-up pipe, so a result, a death
or a new file is acted on at once, and deadlines are checked on every turn.

Helpers with one job each: FileQueue (which files wait), WorkerPool (the
processes), Recovery (what a fault means, which model serves), Outcomes
(writing what became of a file), Health (readiness and systemd),
LoopSignals (signals and wake-ups). This process never imports torch:
engines live in spawned workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from daemon import logs
from daemon.journal.sqlite import Admission, Journal
from daemon.observing.health import Health, Notifier
from daemon.observing.metrics import Metrics
from daemon.outputs import writing as outputs
from daemon.protocol import (
    EXIT_CUDA_FATAL,
    EXIT_LOAD_FAILED,
    DocumentResult,
    Fault,
    FromWorker,
    Job,
    JobDone,
    JobFailed,
    Loaded,
    LoadFailed,
    PdfRequest,
    Progress,
)
from daemon.settings import Settings, SettingsError
from daemon.supervising.file_queue import FileQueue
from daemon.supervising.outcomes import Outcomes
from daemon.supervising.pool import WorkerPool, fallback_slot, is_fallback_slot
from daemon.supervising.recovery import Recovery
from daemon.supervising.signals import LoopSignals
from daemon.supervising.worker_handles import WorkerHandle, WorkerState, worker_config
from daemon.tasks import FileTask
from daemon.watching.intake import Arrival, Intake, content_key

log = structlog.get_logger("daemon.supervising.arbiter")

# Exit codes of the daemon (the CLI returns them).
EXIT_OK = 0
EXIT_FAILED = 1  # `once`: a file failed
EXIT_NO_MODEL = 3  # no model of the chain can run: systemd should restart us

LOOP_TICK_SECONDS = 0.5


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
        self.health = Health(notifier, clock)
        self.reload_settings = reload_settings
        self.clock = clock
        self.generation = 0  # bumped by a reload that changes what workers run
        self.queue = FileQueue()
        self.pool = WorkerPool(
            backoff_cap=settings.recovery.backoff_cap_seconds,
            grace=settings.recovery.stop_grace_seconds,
            clock=clock,
        )
        self.outcomes = Outcomes(
            journal,
            metrics,
            clock,
            settings.outputs.json_indent,
            retry_seconds=settings.outputs.retry_seconds,
            keep_final=not watch,
        )
        self.recovery = Recovery(
            settings.worker.chain,
            settings.recovery,
            journal=journal,
            queue=self.queue,
            outcomes=self.outcomes,
            metrics=metrics,
            clock=clock,
            release=self._release,
        )
        self.exit_code = EXIT_OK
        self.stopping = False
        self.stop_now = False
        self.signals = LoopSignals()
        self.intake = Intake(settings.limits.max_file_bytes, self.signals.wake)
        self._watch = watch
        self.watcher: object | None = None
        self._job_ids = 0
        self._worker_ids = 0

    # --- public ------------------------------------------------------------

    def add_files(self, paths: list[Path]) -> None:
        """`once`: admit these files now (processed even if outputs exist)."""
        for path in paths:
            try:
                info = path.stat()
                sha = content_key(
                    path, info.st_size, info.st_mtime_ns, self.settings.limits.max_file_bytes
                )
            except OSError as error:
                log.error("file.unreadable", file=str(path), error=error.strerror or str(error))
                self.outcomes.record_final(path, "failed")
                continue
            arrival = Arrival(path, path.parent, info.st_size, info.st_mtime_ns, sha)
            self._admit(arrival, forced=True)

    def run(self) -> int:
        """Serve until stopped (or, without watching, until every file is finished)."""
        self.signals.install()
        try:
            self._start()
            while not self._finished():
                self._turn()
        finally:
            self._shutdown()
            self.signals.restore()
        if not self._watch:
            # `once` answers one question: did every file get its outputs? (A
            # chain that could not load counts as failure; the log says why.)
            failed = any(outcome != "done" for outcome in self.outcomes.final.values())
            return EXIT_FAILED if failed or self.exit_code != EXIT_OK else EXIT_OK
        return self.exit_code

    def ready_state(self) -> tuple[bool, str]:
        """For /readyz (called from the HTTP thread: reads one tuple)."""
        return self.health.readiness

    # --- start and stop ----------------------------------------------------

    def _start(self) -> None:
        removed = outputs.remove_stale_temp_files(
            self.settings.watch.inboxes, recursive=self.settings.watch.recursive
        )
        if removed:
            log.info("outputs.stale_temp_removed", count=removed)
        for entry in self.journal.pending():
            if not os.path.lexists(entry.path):
                self.outcomes.vanished(Path(entry.path), "while the daemon was down")
        self.health.starting(self.recovery.active)
        if self._watch:
            from daemon.watching.watcher import Watcher

            watcher = Watcher(
                self.settings.watch,
                self.intake.on_stable,
                already_final=lambda c: self.journal.is_final(c.path, c.size, c.mtime_ns),
            )
            watcher.start()
            self.watcher = watcher
        log.info(
            "daemon.started",
            inboxes=[str(path.absolute()) for path in self.settings.watch.inboxes]
            if self._watch
            else [],
            chain=self.recovery.chain.names,
            pid=os.getpid(),
        )

    def _finished(self) -> bool:
        if self.recovery.exhausted:
            self.exit_code = EXIT_NO_MODEL
            return True
        if self.stopping:
            return self.stop_now or not self.pool.busy()
        if not self._watch:
            return len(self.queue) == 0 and not self.pool.in_flight() and not self.intake.busy()
        return False

    def _shutdown(self) -> None:
        self.health.stopping()
        self._stop_watcher()
        for worker in self.pool:
            if worker.task is not None:
                log.info("file.left_pending", file=str(worker.task.path), reason="shutdown")
            self.metrics.worker_up.labels(worker=worker.slot).set(0)
        self.pool.shutdown(immediately=self.stop_now)
        self.intake.close()  # before the wake pipe it writes to is closed
        self.metrics.set_active_model(None, self.recovery.chain.position or 0)
        self.signals.close()
        log.info("daemon.stopped", exit_code=self.exit_code, pending=len(self.journal.pending()))

    def _stop_watcher(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()  # type: ignore[attr-defined]
            self.watcher = None

    # --- signals -------------------------------------------------------------

    def _handle_signals(self) -> None:
        for signum in self.signals.pending():
            if signum == signal.SIGHUP:
                self._reload()
            elif self.stopping:
                log.warning("daemon.stop_now", signal=signal.Signals(signum).name)
                self.stop_now = True
            else:
                # Stop taking files; the file in hand is finished, queued ones stay pending.
                log.info("daemon.stopping", signal=signal.Signals(signum).name)
                self.stopping = True
                self._stop_watcher()

    # --- the loop --------------------------------------------------------------

    def _turn(self) -> None:
        self._handle_signals()
        for arrival in self.intake.drain():
            self._admit(arrival)
        for worker, message in self.pool.messages():
            self._on_message(worker, message)
        for worker, code, last_words in self.pool.exited():
            for message in last_words:
                self._on_message(worker, message)
            self._on_exit(worker, code)
        now = self.clock()
        for worker in self.pool.enforce_deadlines(now):
            log.error(
                "worker.hung",
                slot=worker.slot,
                pid=worker.pid,
                model=worker.model_name,
                path=str(worker.task.path) if worker.task else None,
                waited_for="a page" if worker.info is not None else "the model to load",
            )
        for task in self.queue.due(now):
            self._retry(task, now)
        self.outcomes.retry_sidecars(now)
        self.recovery.maintain(self.stopping)
        self._ensure_workers(now)
        self._dispatch(now)
        self._report(now)
        wait = LOOP_TICK_SECONDS
        due = self.health.seconds_to_next_message(self.clock())
        if due is not None:
            wait = min(wait, due)
        self.pool.wait(wait, self.signals.wake_fd)

    # --- admission -------------------------------------------------------------

    def _admit(self, arrival: Arrival, *, forced: bool = False) -> None:
        path = arrival.path
        refused = outputs.name_problem(path)
        if refused is not None:
            self.outcomes.refused_name(path, *refused)
            return
        held = self.queue.get(path)
        if held is not None:
            if held.sha256 == arrival.sha256 and held.unwritten is None:
                return
            if any(worker.task is held for worker in self.pool):
                self.queue.follow_up(arrival)  # in flight: finish what was read, then look again
                return
            self.queue.drop(held)
        if arrival.sha256 is None:
            task = FileTask(
                path, arrival.inbox, "", arrival.size, arrival.mtime_ns, self.clock(), time.time()
            )
            self.outcomes.unreadable(task, arrival.error or "unreadable")
            if self._watch:
                # Read again on the rescan schedule: the watcher hands a file on
                # once per content, and a chmod that fixes it is no new content.
                self.queue.delay(task, self.clock() + self.settings.watch.rescan_interval_seconds)
            return
        admission = self.journal.admit(
            path, arrival.inbox, arrival.size, arrival.mtime_ns, arrival.sha256
        )
        if not forced:
            recorded = outputs.recorded(path)
            if recorded is not None and recorded.sha256 == arrival.sha256:
                # Our outputs already describe this content (a crash came between
                # writing them and the journal, which left the row pending, or
                # the journal is new): not twice.
                if admission is not Admission.UNCHANGED:
                    self._record_from_outputs(arrival, recorded.outcome)
                self.outcomes.skipped(path, recorded.outcome)
                return
            if admission is Admission.UNCHANGED:
                log.info("file.redo", file=str(path), reason="its outputs were removed")
                self.journal.reopen(path)
        entry = self.journal.get(path)
        trail = list(entry.trail) if entry is not None else []
        task = FileTask(
            path=path,
            inbox=arrival.inbox,
            sha256=arrival.sha256,
            size=arrival.size,
            mtime_ns=arrival.mtime_ns,
            admitted_at=self.clock(),
            admitted_wall=time.time(),
            settle_seconds=arrival.settle_seconds,
            trail=trail,
            model_override=self.recovery.resume_model(trail),
            formats=tuple(self.settings.outputs.formats),
            pdf_over_existing_text=self.settings.outputs.pdf_text_over_existing_text,
        )
        self.queue.push(task, self.clock())
        log.debug("file.queued", file=str(path), waiting=len(self.queue))

    def _record_from_outputs(self, arrival: Arrival, outcome: str) -> None:
        assert arrival.sha256 is not None
        if outcome == "done":
            self.journal.mark_done(arrival.path, arrival.sha256, arrival.size, arrival.mtime_ns)
        else:
            self.journal.mark_failed(
                arrival.path,
                arrival.sha256,
                arrival.size,
                arrival.mtime_ns,
                "recorded in its error sidecar",
            )

    def _release(self, task: FileTask, *, changed: bool = False) -> None:
        """The file has its outcome: let it go, and look again if it changed meanwhile.

        `changed`: the worker read other content than was hashed at admission.
        A follow-up arrival (an event while it was in flight) says the same;
        either way the file is hashed again once, not once per sign.
        """
        followup = self.queue.release(task)
        if followup is not None:
            self.intake.recheck(followup.path, followup.inbox)
        elif changed:
            self.intake.recheck(task.path, task.inbox)

    # --- workers ---------------------------------------------------------------

    def _wanted_model(self, worker: WorkerHandle) -> str | None:
        """The model this worker's slot should run now."""
        if is_fallback_slot(worker.slot):
            return worker.model_name
        return self.recovery.active

    def _stale(self, worker: WorkerHandle) -> bool:
        return (
            worker.generation != self.generation or self._wanted_model(worker) != worker.model_name
        )

    def _ensure_workers(self, now: float) -> None:
        if self.stopping or self.recovery.exhausted:
            return
        active = self.recovery.active
        assert active is not None
        # Workers whose model or settings are out of date are replaced; busy
        # ones finish their file first (_after_job looks again).
        for worker in self.pool:
            if self._stale(worker) and worker.state in (WorkerState.IDLE, WorkerState.LOADING):
                self.pool.retire(worker, "model or settings changed")
        wanted = [(str(index), active) for index in range(self.settings.worker.count)]
        wanted += [
            (fallback_slot(model), model)
            for model in self.queue.overrides
            if model != active and self.recovery.usable(model)
        ]
        running = self.pool.slots()
        for slot, model in wanted:
            if slot not in running and self.pool.may_start(slot, now):
                self._worker_ids += 1
                self.pool.spawn(
                    slot,
                    worker_config(self.settings, self._worker_ids, model),
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
                and self.queue.overrides.get(worker.model_name, 0) == 0
                and worker.idle_since is not None
                and now - worker.idle_since > idle_limit
            ):
                self.pool.retire(worker, "fallback model idle")

    def _on_message(self, worker: WorkerHandle, message: FromWorker) -> None:
        now = self.clock()
        if isinstance(message, Progress):
            worker.deadline = now + self.settings.limits.page_deadline_seconds
        elif isinstance(message, Loaded):
            self._on_loaded(worker, message, now)
        elif isinstance(message, LoadFailed):
            worker.exit_reason = "load_error"
            worker.deadline = None
            if message.fault.kind == "cuda_fatal":
                # e.g. a device-side assert in the warm-up pass at load
                self.metrics.cuda_errors.labels(kind="cuda_fatal").inc()
            self.recovery.load_failed(worker.model_name, message.fault)
        elif isinstance(message, JobDone):
            task = self._take_task(worker, message.job_id)
            if task is not None:
                self.pool.succeeded(worker.slot)
                self.outcomes.recognised(message.result, worker.model_name)
                self._write(task, message.result, worker.model_name)
            self._after_job(worker, now)
        elif isinstance(message, JobFailed):
            self._on_job_failed(worker, message, now)

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
        info = message.info
        log.info(
            "model.loaded",
            slot=worker.slot,
            model=worker.model_name,
            engine=info.engine,
            device=info.device,
            dtype=info.dtype,
            attention=info.attention,
            family=info.family,
            seconds=round(message.load_seconds, 3),
        )
        if not is_fallback_slot(worker.slot) and worker.model_name == self.recovery.active:
            self.metrics.set_active_model(info, self.recovery.chain.position or 0)

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
        if self._stale(worker):
            self.pool.retire(worker, "model or settings changed")
        elif worker.state == WorkerState.IDLE and worker.over_memory(
            self.settings.recovery.max_worker_rss_megabytes
        ):
            # A model that leaks host memory would grow until the kernel's OOM
            # killer picks a victim, maybe not the worker. A fresh worker costs
            # one model load.
            self.metrics.worker_restarts.labels(reason="memory").inc()
            self.pool.retire(worker, "memory")

    def _on_job_failed(self, worker: WorkerHandle, message: JobFailed, now: float) -> None:
        task = self._take_task(worker, message.job_id)
        fault = message.fault
        self.metrics.record_memory(message.memory)
        if message.fatal:
            # The worker exits on its own (EXIT_CUDA_FATAL); SIGKILL if it does not.
            worker.expect_exit(now, self.settings.recovery.stop_grace_seconds, "cuda_fatal")
            self.metrics.cuda_errors.labels(kind="cuda_fatal").inc()
            if task is not None:
                self.recovery.worker_lost(worker.model_name, task, "cuda_fatal", fault)
            return
        self._after_job(worker, now)
        if task is None:
            return
        if fault.kind == "bad_input":
            if fault.detail.get("code") == "vanished":
                self.outcomes.vanished(task.path, "before it was read")
            elif fault.detail.get("code") == "permission_denied":
                # Made unreadable after it was hashed: handled like any file that
                # cannot be read (a sidecar, then read again on the rescan schedule).
                self._release(task)
                error = fault.message.removeprefix("cannot read the file: ")
                arrival = Arrival(task.path, task.inbox, task.size, task.mtime_ns, None, error)
                self._admit(arrival)
                return
            else:
                self.outcomes.failed(
                    task,
                    fault,
                    message.sha256,
                    worker.model_name,
                    "the file cannot be read as a document",
                )
            self._release(task)
            return
        self.recovery.model_failed_file(worker.model_name, task, fault, message.sha256)

    def _on_exit(self, worker: WorkerHandle, code: int | None) -> None:
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
            if is_fallback_slot(worker.slot) or int(worker.slot) >= self.settings.worker.count:
                # A retired per-file fallback slot, or one a reload took away
                # (fewer workers), is gone, not down: no WorkerDown alert for it.
                with contextlib.suppress(KeyError):
                    self.metrics.worker_up.remove(worker.slot)
            else:
                self.metrics.worker_up.labels(worker=worker.slot).set(0)
            return
        self.metrics.worker_up.labels(worker=worker.slot).set(0)
        if worker.info is None and reason != "load_error":
            # Ended while loading, without a word: a load that hung past its
            # deadline, or a crash (which may be the OOM killer's doing, once).
            self.recovery.died_loading(
                worker.model_name,
                reason,
                Fault(
                    kind="load_error",
                    message=f"the worker ended ({reason}) while loading, exit code {code}",
                ),
            )
        if worker.task is not None:
            task, worker.task = worker.task, None
            what = "missed its deadline" if reason == "hang" else "died"
            fault = Fault(
                kind="hang" if reason == "hang" else "crash",
                message=f"the worker {what} (exit code {code})",
            )
            self.recovery.worker_lost(worker.model_name, task, reason, fault)
        self.metrics.worker_restarts.labels(reason=reason).inc()
        self.pool.schedule_restart(worker.slot)

    # --- dispatch and results --------------------------------------------------

    def _dispatch(self, now: float) -> None:
        if self.stopping or self.recovery.exhausted or len(self.queue) == 0:
            return
        idle = self.pool.idle(self.generation)
        if not idle:
            return  # every worker busy: no need to walk (and copy) a long backlog
        active = self.recovery.active
        for task in self.queue:
            if not idle:
                break
            model = task.model_override or active
            worker = next((w for w in idle if w.model_name == model and not self._stale(w)), None)
            if worker is None:
                continue
            self.queue.take(task)
            if not self._still_there(task):
                continue
            self._job_ids += 1
            task.job_id = self._job_ids
            task.dispatched_at = now
            idle.remove(worker)
            if not worker.send(job_for(task)):
                self.queue.push(task, now, front=True)  # the sentinel will say why
                continue
            worker.state = WorkerState.BUSY
            worker.task = task
            worker.idle_since = None
            worker.deadline = now + self.settings.limits.page_deadline_seconds
            log.debug(
                "file.dispatched",
                file=str(task.path),
                model=worker.model_name,
                slot=worker.slot,
                pid=worker.pid,
            )
            self.metrics.queue_wait_seconds.observe(now - task.queued_at)

    def _still_there(self, task: FileTask) -> bool:
        try:
            info = task.path.lstat()
        except FileNotFoundError:
            self.outcomes.vanished(task.path, "before its turn")
            self._release(task)
            return False
        if not stat.S_ISREG(info.st_mode):
            log.warning("file.dropped", file=str(task.path), reason="no longer a regular file")
            self.journal.forget(task.path)
            self._release(task)
            return False
        return True

    def _write(self, task: FileTask, result: DocumentResult, model: str) -> None:
        error = self.outcomes.done(task, result, model)
        if error is None:
            changed = result.sha256 != task.sha256
            if changed:
                log.info("file.changed_while_processing", file=str(task.path))
            self._release(task, changed=changed)
            return
        if error.reason == "not_ours":
            self.outcomes.blocked(task, error)
            self._release(task)
            return
        if not self._watch:
            self.outcomes.record_final(task.path, "failed")  # `once` waits for no disk to clear
            self._release(task)
            return
        # Disk full, or the folder not writable: keep the result, try writing later.
        delay = self.settings.outputs.retry_seconds
        log.warning("file.output_retry", file=str(task.path), reason=error.reason, in_seconds=delay)
        task.unwritten = result
        task.last_model = model
        self.queue.delay(task, self.clock() + delay)

    def _retry(self, task: FileTask, now: float) -> None:
        if task.unwritten is not None:
            self._write(task, task.unwritten, task.last_model or "")
        elif task.sha256 == "":  # it could not be read: hash it again (_admit decides)
            self.queue.drop(task)
            self.intake.recheck(task.path, task.inbox)
        else:
            self.queue.push(task, now)

    # --- reporting -------------------------------------------------------------

    def _report(self, now: float) -> None:
        self.metrics.queue_depth.set(len(self.queue))
        if self.watcher is not None:
            self.metrics.files_settling.set(self.watcher.tracking)  # type: ignore[attr-defined]
        active = self.recovery.active
        self.health.update(
            now,
            stopping=self.stopping,
            exhausted=self.recovery.exhausted,
            active=active,
            serving=any(
                w.serving and not is_fallback_slot(w.slot) and w.model_name == active
                for w in self.pool
            ),
            loading=any(w.state == WorkerState.LOADING for w in self.pool),
            position=self.recovery.chain.position or 0,
            waiting=len(self.queue),
        )

    # --- reload ----------------------------------------------------------------

    def _reload(self) -> None:
        if self.reload_settings is None:
            log.warning("settings.reload_unsupported")
            return
        self.health.reloading()
        try:
            new = self.reload_settings()
        except SettingsError as error:
            log.error("settings.reload_failed", error=str(error), keeping="the running settings")
            self.health.reloaded()
            return
        old = self.settings
        self.settings = new
        if new.worker.chain != old.worker.chain or new.recovery != old.recovery:
            self.recovery.reset(new.worker.chain, new.recovery)
        for task in self.queue:
            if task.model_override is not None and task.model_override not in new.worker.chain:
                # Its fallback model left the chain (perhaps the settings too):
                # the file starts again at the new chain's head instead of
                # waiting for a worker that can no longer be configured.
                self.queue.clear_override(task, self.clock())
        if any(
            getattr(new, key) != getattr(old, key)
            for key in ("models", "limits", "worker", "recovery", "log")
        ):
            self.generation += 1  # workers are replaced, each after its current file
        self.pool.backoff_cap = new.recovery.backoff_cap_seconds
        self.pool.grace = new.recovery.stop_grace_seconds
        self.outcomes.indent = new.outputs.json_indent
        self.outcomes.retry_seconds = new.outputs.retry_seconds
        self.intake.max_bytes = new.limits.max_file_bytes
        if new.log != old.log:
            logs.configure(new.log.level, new.log.format)
        if self.watcher is not None and new.watch != old.watch:
            self.watcher.update(new.watch)  # type: ignore[attr-defined]
        for key in ("state", "metrics"):
            if getattr(new, key) != getattr(old, key):
                log.warning("settings.needs_restart", section=key)
        log.info("settings.reloaded", generation=self.generation, chain=new.worker.chain)
        self.health.reloaded()


def job_for(task: FileTask) -> Job:
    """The worker's instructions for a file: its path, and a PDF to build if one is wanted."""
    assert task.job_id is not None
    wants_pdf = "pdf" in task.formats
    request = PdfRequest(over_existing_text=task.pdf_over_existing_text) if wants_pdf else None
    return Job(task.job_id, str(task.path), pdf=request)
