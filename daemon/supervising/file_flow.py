"""One file's way through the supervisor, in the order it happens.

Arrival (hashed by the intake) -> admission (the journal, our outputs on disk)
-> the queue -> a worker (claimed in the journal first) -> its answer ->
outputs written and the file done, or an error sidecar, or another model, or
a later retry of the write -> released (looked at again if it changed). Every
step that changes what the daemon knows of the file goes through the ledger;
what a fault means comes from recovery as a Decision, carried out here.
Nothing here calls back into the arbiter: it hands this module arrivals,
idle workers and answers, and reads the queue.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from daemon.journal.interface import Admission, ClaimLost, FileKey
from daemon.observing.metrics import Metrics
from daemon.outputs.writing import name_problem, recorded, remove_stale_temp_files
from daemon.protocol import DocumentResult, Fault, JobDone, JobFailed
from daemon.settings import Settings
from daemon.supervising.archiving import Archivist
from daemon.supervising.file_queue import FileQueue
from daemon.supervising.ledger import Ledger
from daemon.supervising.recovery import Decision, Quarantine, Recovery, Requeue
from daemon.supervising.worker_handles import WorkerHandle
from daemon.tasks import FileTask
from daemon.watching.intake import Arrival, Intake, content_key

log = structlog.get_logger(__name__)

# `once` watches no inbox: its files are keyed by absolute path (daemon.journal.interface).
NO_INBOX = Path("/")


class FileFlow:
    def __init__(
        self,
        settings: Settings,
        *,
        queue: FileQueue,
        ledger: Ledger,
        recovery: Recovery,
        intake: Intake,
        metrics: Metrics,
        clock: Callable[[], float],
        watch: bool,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.ledger = ledger
        self.recovery = recovery
        self.intake = intake
        self.metrics = metrics
        self.clock = clock
        self.watch = watch
        self.profiles = settings.profiles()  # by inbox root; again on reload
        self.archivist = Archivist(ledger, lambda: self.profiles)
        self._job_ids = 0

    # --- arrival and admission ----------------------------------------------

    def remove_stale_temp_files(self, writers: list[str] | None) -> int:
        """Remove temp files killed daemons left in inboxes and output folders (`writers`' only)."""
        profiles = self.profiles.values()
        return sum(
            remove_stale_temp_files([profile.root], recursive=profile.recursive, writers=writers)
            for profile in profiles
        ) + remove_stale_temp_files(
            [p.output_dir for p in profiles if p.output_dir is not None],
            recursive=True,
            writers=writers,
        )

    def look_for_takeovers(self) -> None:
        """Pending files no live claim holds (their node died): hashed and admitted again, the
        claim at dispatch takes them over. Other daemons' inboxes are left to them."""
        roots = {profile.name: profile.root for profile in self.profiles.values()}
        for key in self.ledger.journal.takeable():
            root = roots.get(key.inbox)
            if root is None:
                continue
            path = root / key.relative
            if self.queue.get(path) is None:
                self.intake.recheck(path, root)

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
                self.ledger.record_final(path, "failed")
                continue
            self.admit(Arrival(path, NO_INBOX, info.st_size, info.st_mtime_ns, sha), forced=True)

    def admit(self, arrival: Arrival, *, forced: bool = False) -> None:
        """A stable, hashed file: queue it, or say why not."""
        path = arrival.path
        refused = name_problem(path)
        if refused is not None:
            profile = self.profiles.get(arrival.inbox)
            inbox = profile.name if profile is not None else arrival.inbox.name or "/"
            self.ledger.refused_name(path, inbox, *refused)
            return
        held = self.queue.get(path)
        if held is not None:
            if held.sha256 == arrival.sha256 and held.unwritten is None:
                return
            if self.queue.in_flight(held):
                self.queue.follow_up(arrival)  # finish what was read, then look again
                return
            self.queue.drop(held)
        profile = self.profiles.get(arrival.inbox)
        outputs = self.settings.outputs
        task = FileTask(
            path=path,
            inbox=arrival.inbox,
            sha256=arrival.sha256 or "",
            size=arrival.size,
            mtime_ns=arrival.mtime_ns,
            admitted_at=self.clock(),
            admitted_wall=time.time(),
            settle_seconds=arrival.settle_seconds,
            formats=profile.formats if profile is not None else tuple(outputs.formats),
            pdf_over_existing_text=outputs.pdf_text_over_existing_text,
            profile=profile,
        )
        if arrival.sha256 is None:
            self.ledger.unreadable(task, arrival.error or "unreadable")
            if self.watch:
                # Read again on the rescan schedule: the watcher hands a file on
                # once per content, and a chmod that fixes it is no new content.
                self.queue.delay(task, self.clock() + self.settings.watch.rescan_interval_seconds)
            return
        key = task.key
        admission = self.ledger.admit(key, task.size, task.mtime_ns, task.sha256)
        if not forced and self._done_before(task, key, admission):
            return
        task.trail = self.ledger.trail(key)
        if profile is not None and list(profile.chain) != self.recovery.chain.names:
            task.chain = profile.chain
        task.model_override = self.recovery.resume_model(task.trail, task.chain)
        self.queue.push(task, self.clock())
        log.debug("file.queued", file=str(path), inbox=task.inbox_name, waiting=len(self.queue))

    def _done_before(self, task: FileTask, key: FileKey, admission: Admission) -> bool:
        """Whether our outputs on disk already answer for this content (then it is skipped)."""
        on_disk = recorded(task.path, task.outputs)
        if on_disk is not None and on_disk.sha256 == task.sha256:
            # Our outputs already describe this content (a crash came between
            # writing them and the journal, which left the row pending, or
            # the journal is new): not twice.
            if admission is not Admission.UNCHANGED:
                pending = admission is Admission.PENDING
                self.ledger.found_on_disk(task, on_disk.outcome, announce=pending)
            self.ledger.skipped(task, on_disk.outcome)
            return True
        if admission is Admission.UNCHANGED:
            self.ledger.redo(task.path, key)
        return False

    # --- to a worker ---------------------------------------------------------------

    def dispatch(self, idle: list[WorkerHandle], now: float) -> None:
        """Hand queued files to workers with room, of their model, in queue order."""
        if not idle or len(self.queue) == 0:
            return  # every worker busy: no need to walk (and copy) a long backlog
        active = self.recovery.active
        for task in self.queue:
            if not idle:
                break
            if task.chain and self.recovery.waits(task.chain):
                continue  # its inbox's chain has no model left until its cool-down
            model = task.model_override or active
            worker = next((w for w in idle if w.model_name == model), None)
            if worker is None:
                continue
            self.queue.take(task)
            if not self._still_there(task):
                continue
            if not self.ledger.claim(task):
                self._release(task)
                continue
            self._job_ids += 1
            if not worker.assign(
                task, self._job_ids, now, self.settings.limits.page_deadline_seconds
            ):
                idle.remove(worker)
                self.queue.push(task, now, front=True)
                continue
            if not worker.has_room:
                idle.remove(worker)  # a server's worker takes files up to its capacity
            task.dispatched_at = now
            log.debug(
                "file.dispatched",
                file=str(task.path),
                inbox=task.inbox_name,
                model=worker.model_name,
                slot=worker.slot,
                pid=worker.pid,
            )
            self.metrics.queue_wait_seconds.observe(now - task.queued_at)

    def _still_there(self, task: FileTask) -> bool:
        try:
            info = task.path.lstat()
        except FileNotFoundError:
            self.ledger.vanished(task.path, task.key, "before its turn")
            self._release(task)
            return False
        if not stat.S_ISREG(info.st_mode):
            self.ledger.dropped(task, "no longer a regular file")
            self._release(task)
            return False
        return True

    # --- the worker's answer ---------------------------------------------------------

    def answered(self, task: FileTask, message: JobDone | JobFailed, model: str) -> None:
        """The worker finished with this file (or is dying on it: a fatal JobFailed)."""
        try:
            if isinstance(message, JobDone):
                self.ledger.recognised(message.result, model)
                self._write(task, message.result, model)
            elif message.fatal:
                self._lost(task, model, "cuda_fatal", message.fault)
            else:
                self._failed(task, message, model)
        except ClaimLost:
            self._claim_lost(task)

    def worker_lost(self, task: FileTask, model: str, reason: str, fault: Fault) -> None:
        """The worker died (crash, hang) with this file in hand."""
        try:
            self._lost(task, model, reason, fault)
        except ClaimLost:
            self._claim_lost(task)

    def _lost(self, task: FileTask, model: str, reason: str, fault: Fault) -> None:
        attempts = self.ledger.attempt_failed(task, model)
        decision = self.recovery.worker_lost(model, task, reason, attempts)
        self.carry_out(decision, task, model=model, fault=fault)

    def _failed(self, task: FileTask, message: JobFailed, model: str) -> None:
        fault = message.fault
        if fault.kind != "bad_input":
            decision = self.recovery.model_failed_file(model, task, fault)
            self.carry_out(decision, task, model=model, fault=fault, sha256=message.sha256)
        elif fault.detail.get("code") == "vanished":
            self.ledger.vanished(task.path, task.key, "before it was read")
            self._release(task)
        elif fault.detail.get("code") == "permission_denied":
            # Made unreadable after it was hashed: handled like any file that
            # cannot be read (a sidecar, then read again on the rescan schedule).
            self._release(task)
            error = fault.message.removeprefix("cannot read the file: ")
            self.admit(Arrival(task.path, task.inbox, task.size, task.mtime_ns, None, error))
        else:
            summary = "the file cannot be read as a document"
            self.archivist.plan(task, "failed")
            self.ledger.failed(task, fault, message.sha256, model, summary)
            self.archivist.after_failure(task)
            self._release(task)

    def _write(self, task: FileTask, result: DocumentResult, model: str) -> None:
        """Write the outputs; when the disk says no, keep the result and try again later."""
        if self.watch and result.sha256 == task.sha256:
            self.archivist.plan(task, "done")  # before the outcome is announced
        error = self.ledger.done(task, result, model)
        if error is None:
            changed = result.sha256 != task.sha256
            if changed:
                log.info("file.changed_while_processing", file=str(task.path))
            elif self.watch:
                self.archivist.after_success(task)
            self._release(task, changed=changed)
        elif error.reason == "not_ours":
            self.ledger.blocked(task, error)
            self._release(task)
        elif not self.watch:
            self.ledger.record_final(task.path, "failed")  # `once` waits for no disk to clear
            self._release(task)
        else:
            # Disk full, or the folder not writable: keep the result, try writing later.
            delay = self.settings.outputs.retry_seconds
            log.warning(
                "file.output_retry", file=str(task.path), reason=error.reason, in_seconds=delay
            )
            task.unwritten = result
            task.last_model = model
            self.queue.delay(task, self.clock() + delay)

    # --- what recovery decided -------------------------------------------------------

    def carry_out(
        self,
        decision: Decision,
        task: FileTask | None = None,
        *,
        model: str | None = None,
        fault: Fault,
        sha256: str | None = None,
    ) -> None:
        """Do what recovery decided (about `fault`): for the file in hand, then for files queued for a model."""
        # Files sent to a model that just went out of service in their chain: the
        # chain's active model (which follows it) takes them instead.
        for queued in self.queue if decision.demoted is not None else ():
            if queued.model_override == decision.demoted and queued.chain in decision.chains:
                self.queue.retarget(queued, self.recovery.model_for(queued.chain), self.clock())
                self._let_go_if_waiting(queued)
        if task is not None and decision.file is not None:
            if decision.left is not None:
                task.trail.append(decision.left)
                self.ledger.left_model(task)
            self._follow(task, decision.file, model, fault, sha256)
        if decision.unloadable is not None:
            self._move_on_from(decision.unloadable, fault)

    def _follow(
        self,
        task: FileTask,
        verdict: Requeue | Quarantine,
        model: str | None,
        fault: Fault,
        sha256: str | None,
    ) -> None:
        if isinstance(verdict, Quarantine):
            self.archivist.plan(task, "failed")
            self.ledger.failed(task, fault, sha256, model, verdict.summary)
            self.archivist.after_failure(task)
            self._release(task)
            return
        task.model_override = verdict.model
        self.queue.push(task, self.clock(), front=True)
        self._let_go_if_waiting(task)

    def _let_go_if_waiting(self, task: FileTask) -> None:
        """A file whose inbox's chain has no model left here gives up its claim: another node
        (its models working) may take it meanwhile; this one claims it again to dispatch it."""
        if self.recovery.waits(task.chain):
            self.ledger.let_go(task)

    def _move_on_from(self, model: str, fault: Fault) -> None:
        """`model` cannot load: every file queued for it moves on down the chain."""
        for task in self.queue:
            if task.model_override != model or self.recovery.waits(task.chain):
                continue  # (a waiting chain's files wait for its cool-down, not for sidecars)
            self.queue.drop(task)
            try:
                if not self.ledger.claim(task):
                    self._release(task)
                    continue
                task.trail.append(
                    {"model": model, "outcome": "load_error", "message": fault.message[:500]}
                )
                self.ledger.left_model(task)
                verdict = self.recovery.next_model_for(task, model, "load_error")
                self._follow(task, verdict, model, fault, None)
            except ClaimLost:
                self._claim_lost(task)

    # --- letting go ------------------------------------------------------------------------

    def retry_due(self, now: float) -> None:
        """Delayed files whose time has come: a write to try again, or a file to read again."""
        for task in self.queue.due(now):
            if task.unwritten is not None:
                try:
                    self._write(task, task.unwritten, task.last_model or "")
                except ClaimLost:
                    self._claim_lost(task)
            elif task.sha256 == "":  # it could not be read: hash it again (admit decides)
                self.queue.drop(task)
                self.intake.recheck(task.path, task.inbox)
            else:
                self.queue.push(task, now)
        self.ledger.retry_sidecars(now)

    def _claim_lost(self, task: FileTask) -> None:
        self.ledger.claim_lost(task)
        self.queue.drop(task)
        self._release(task)

    def _release(self, task: FileTask, *, changed: bool = False) -> None:
        """The file has its outcome (or is no longer ours): let it go, and look again if it changed.

        `changed`: the worker read other content than was hashed at admission.
        A follow-up arrival (an event while it was in flight) says the same;
        either way the file is hashed again once, not once per sign.
        """
        self.ledger.let_go(task)
        followup = self.queue.release(task)
        if followup is not None:
            self.intake.recheck(followup.path, followup.inbox)
        elif changed:
            self.intake.recheck(task.path, task.inbox)
