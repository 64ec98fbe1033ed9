"""The arbiter: the supervisor's main loop. Wait, react to signals and worker events, dispatch.

One thread runs the loop (gunicorn's arbiter is the model): signal handlers
only queue the signal, the watcher and HTTP threads only queue work or read a
snapshot, and every decision is taken on this thread. The loop waits on every
worker's pipe and process sentinel plus a wake-up pipe, so a result, a death
or a new file is acted on at once, and deadlines are checked on every turn.

The loop applies policies that live in rooms of their own: FileFlow (one
file's way from arrival to its outcome), Workforce (which workers run, and
what their lifecycle means), Recovery (what a fault means, which model
serves), the Ledger (the one writer of the journal), Health (readiness and
systemd), LoopSignals (signals and wake-ups). This process never imports
torch: engines live in spawned workers.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from daemon.journal.interface import FileKey, Journal
from daemon.observing.health import Health, Notifier
from daemon.observing.metrics import Metrics
from daemon.outputs.writing import writer_tag
from daemon.protocol import (
    FromWorker,
    JobDone,
    JobFailed,
    Loaded,
    LoadFailed,
    Progress,
    ServerRequest,
)
from daemon.settings import OpenAiModel, Settings, SettingsError
from daemon.supervising.file_flow import FileFlow
from daemon.supervising.file_queue import FileQueue
from daemon.supervising.inbox_chains import inboxes_by_chain, serving_chains
from daemon.supervising.ledger import Ledger
from daemon.supervising.pool import StartWorker, WorkerPool
from daemon.supervising.recovery import Recovery
from daemon.supervising.reloading import apply_settings
from daemon.supervising.server_probe import ServerProbe, remote_models_above
from daemon.supervising.signals import LoopSignals
from daemon.supervising.worker_handles import WorkerHandle
from daemon.supervising.workforce import Workforce
from daemon.watching.candidates import Candidate
from daemon.watching.intake import Intake
from daemon.webhooks.sender import WebhookSender
from daemon.webhooks.urls import webhook_url_for

if TYPE_CHECKING:
    from daemon.watching.watcher import Watcher  # imported when watching starts

log = structlog.get_logger(__name__)

# Exit codes of the daemon (the CLI returns them).
EXIT_OK = 0
EXIT_FAILED = 1  # `once`: a file failed
EXIT_NO_MODEL = 3  # no model of the chain can run: systemd should restart us

LOOP_TICK_SECONDS = 0.5
# How long a stop waits for a webhook in flight, so its delivery can be noted
# (one not noted is sent again after the restart: at least once either way).
WEBHOOK_STOP_WAIT_SECONDS = 1.0


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
        start_worker: StartWorker = WorkerHandle.spawn,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.metrics = metrics
        self.health = Health(notifier, clock)
        self.reload_settings = reload_settings
        self.clock = clock
        self.queue = FileQueue()
        self.pool = WorkerPool(
            backoff_cap=settings.recovery.backoff_cap_seconds,
            grace=settings.recovery.stop_grace_seconds,
            clock=clock,
            start=start_worker,
        )
        # `once` sends no webhooks: its journal lives in memory, so nothing
        # undelivered could outlive its exit.
        self.webhooks = WebhookSender.for_settings(metrics, settings.outputs) if watch else None
        self.ledger = Ledger(
            journal,
            metrics,
            clock,
            settings.outputs.json_indent,
            retry_seconds=settings.outputs.retry_seconds,
            keep_final=not watch,
            webhooks=self.webhooks,
            webhook_url=lambda inbox: webhook_url_for(self.settings, inbox),
        )
        primary, resident = serving_chains(settings, watch=watch)
        self.recovery = Recovery(
            primary,
            settings.recovery,
            metrics=metrics,
            clock=clock,
            held=lambda: self.queue.held,
            resident=resident,
            inboxes=inboxes_by_chain(settings, watch=watch),
        )
        self.signals = LoopSignals()
        self.intake = Intake(settings.limits.max_file_bytes, self.signals.wake)
        self.probe = ServerProbe(self.signals.wake)
        self.flow = FileFlow(
            settings,
            queue=self.queue,
            ledger=self.ledger,
            recovery=self.recovery,
            intake=self.intake,
            metrics=metrics,
            clock=clock,
            watch=watch,
        )
        self.workforce = Workforce(
            settings,
            pool=self.pool,
            recovery=self.recovery,
            queue=self.queue,
            metrics=metrics,
            clock=clock,
        )
        if watch:
            metrics.declare_inboxes(profile.name for profile in self.flow.profiles.values())
        self.exit_code = EXIT_OK
        self.stopping = False
        self.stop_now = False
        self.watching = watch
        self.watcher: Watcher | None = None
        self._next_takeover_look = 0.0

    # --- public ------------------------------------------------------------

    def add_files(self, paths: list[Path]) -> None:
        """`once`: admit these files now (processed even if outputs exist)."""
        self.flow.add_files(paths)

    def run(self) -> int:
        """Serve until stopped (or, without watching, until every file is finished)."""
        self.signals.install()
        try:
            self._start()
            while not self._finished():
                self.turn()
        finally:
            self.shutdown()
            self.signals.restore()
        if not self.watching:
            # `once` answers one question: did every file get its outputs? (A
            # chain that could not load counts as failure; the log says why.)
            failed = any(outcome != "done" for outcome in self.ledger.final.values())
            return EXIT_FAILED if failed or self.exit_code != EXIT_OK else EXIT_OK
        return self.exit_code

    def ready_state(self) -> tuple[bool, str]:
        """For /readyz (called from the HTTP thread: reads one tuple, and the journal's problem)."""
        problem = self.journal.problem()
        if problem is not None:
            return (False, problem)
        return self.health.readiness

    # --- the loop --------------------------------------------------------------

    def turn(self) -> None:
        """One turn of the loop (run() turns it; tests may turn it by hand)."""
        self._handle_signals()
        for arrival in self.intake.drain():
            self.flow.admit(arrival)
        for worker, message in self.pool.messages():
            self._on_message(worker, message)
        for worker, code, last_words in self.pool.exited():
            for message in last_words:
                self._on_message(worker, message)
            self._on_exit(worker, code)
        now = self.clock()
        self.workforce.enforce_deadlines(now)
        self.flow.retry_due(now)
        if self.watching and not self.stopping and now >= self._next_takeover_look:
            self.flow.look_for_takeovers()
            self._next_takeover_look = now + self.settings.state.lease_seconds / 2
        self.recovery.maintain(self.stopping)
        self._fail_back()
        self.ledger.announcer.delivered()
        if not self.stopping and not self.recovery.exhausted:
            self.workforce.ensure(now)
            self.flow.dispatch(self.workforce.idle(), now)
        self._report(now)
        wait = LOOP_TICK_SECONDS
        due = self.health.seconds_to_next_message(self.clock())
        if due is not None:
            wait = min(wait, due)
        self.pool.wait(wait, self.signals.wake_fd)

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

    def _fail_back(self) -> None:
        """Servers of models above each chain's active one are probed; one that answers takes
        over again in the chains it is above."""
        above: dict[str, OpenAiModel] = {}
        for _, chain in self.recovery.chains:
            above.update(remote_models_above(self.settings, chain.names, chain.position))
        self.probe.watch({} if self.stopping else above)
        for model in sorted(self.probe.answering() & above.keys()):
            if self.recovery.fail_back(model):
                self.metrics.server_up.labels(model=model).set(1)

    def _on_message(self, worker: WorkerHandle, message: FromWorker) -> None:
        if isinstance(message, JobDone | JobFailed):
            task = self.workforce.job_finished(worker, message)
            if task is not None:
                self.flow.answered(task, message, worker.model_name)
        elif isinstance(message, Progress):
            self.workforce.progressed(worker, message.job_id)
        elif isinstance(message, ServerRequest):
            self.metrics.record_server_request(worker.model_name, message)
        elif isinstance(message, Loaded):
            self.workforce.loaded(worker, message)
        elif isinstance(message, LoadFailed):
            decision = self.workforce.load_failed(worker, message)
            self.flow.carry_out(decision, fault=message.fault)

    def _on_exit(self, worker: WorkerHandle, code: int | None) -> None:
        end = self.workforce.exited(worker, code)
        if end.load_fault is not None:
            self.flow.carry_out(end.decision, fault=end.load_fault)
        if end.fault is not None:
            for task in end.lost:
                self.flow.worker_lost(task, worker.model_name, end.reason, end.fault)

    def _report(self, now: float) -> None:
        leases = self.journal.leases()
        self.metrics.record_leases(
            self.journal.node,
            held=leases.claims_held,
            taken_over=leases.taken_over,
            lost=leases.lost,
            heartbeat_age=leases.heartbeat_age_seconds,
        )
        self.metrics.queue_depth.set(len(self.queue))
        if self.watcher is not None:
            self.metrics.files_settling.set(self.watcher.tracking)
        self.health.update(
            now,
            stopping=self.stopping,
            exhausted=self.recovery.exhausted,
            active=self.recovery.active,
            serving=self.workforce.serving(),
            loading=self.workforce.loading(),
            position=self.recovery.chain.position or 0,
            waiting=len(self.queue),
            fallen_because=self.recovery.fallen_because,
            inboxes_without_model=self.recovery.chains.waiting_inboxes(),
        )

    # --- start and stop ----------------------------------------------------

    def _start(self) -> None:
        # Every log line of this daemon names its node: several daemons' logs
        # can be read side by side.
        structlog.contextvars.bind_contextvars(node=self.journal.node)
        # With a shared journal other daemons write into these folders now:
        # only the leftovers of this node (restarted under its name, the
        # default, after a crash) and of nodes the journal knows are gone are
        # removed, never a live node's write in progress.
        writers = None
        if self.settings.state.url:
            departed = self.journal.departed()
            writers = [self.ledger.writer, *(writer_tag(node) for node in departed)]
        removed = self.flow.remove_stale_temp_files(writers)
        if removed:
            log.info("outputs.stale_temp_removed", count=removed)
        if self.watching:
            self.flow.archivist.resume()  # before the watcher: a half-moved input is not new
            self._forget_vanished()
        if self.webhooks is not None:
            self.ledger.announcer.resume()
            self.webhooks.start()
        self.health.starting(self.recovery.active)
        if self.watching:
            from daemon.watching.watcher import Watcher

            watcher = Watcher(
                self.settings.watch,
                self.intake.on_stable,
                already_final=self._already_final,
                profiles=self.flow.profiles.values(),
            )
            watcher.start()
            self.watcher = watcher
        log.info(
            "daemon.started",
            inboxes={p.name: str(p.root) for p in self.flow.profiles.values()}
            if self.watching
            else {},
            chain=self.recovery.chain.names,
            resident=self.recovery.resident_models(),
            pid=os.getpid(),
        )

    def _forget_vanished(self) -> None:
        """Pending files gone while the daemon was down leave the journal."""
        roots = {profile.name: profile.root for profile in self.flow.profiles.values()}
        for entry in self.journal.pending():
            root = roots.get(entry.key.inbox)
            if root is None:
                continue  # an inbox no longer watched: its files wait for it
            path = root / entry.key.relative
            if not os.path.lexists(path):
                self.ledger.vanished(path, entry.key, "while the daemon was down")

    def _already_final(self, candidate: Candidate) -> bool:
        """For the watcher's thread: the journal has this exact file's outcome."""
        profile = self.flow.profiles.get(candidate.inbox)
        key = FileKey.of(candidate.path, candidate.inbox, profile.name if profile else None)
        return self.journal.is_final(key, candidate.size, candidate.mtime_ns)

    def _finished(self) -> bool:
        if self.recovery.exhausted:
            self.exit_code = EXIT_NO_MODEL
            return True
        if self.stopping:
            return self.stop_now or not self.pool.busy()
        if not self.watching:
            return len(self.queue) == 0 and not self.pool.in_flight() and not self.intake.busy()
        return False

    def shutdown(self) -> None:
        self.health.stopping()
        self._stop_watcher()
        self.workforce.shutdown(immediately=self.stop_now)
        self.intake.close()  # before the wake pipe it writes to is closed
        self.probe.close()
        if self.webhooks is not None:
            self.webhooks.stop(WEBHOOK_STOP_WAIT_SECONDS)
            self.ledger.announcer.delivered()
        self.recovery.chains.clear()
        self.signals.close()
        log.info("daemon.stopped", exit_code=self.exit_code, pending=len(self.journal.pending()))

    def _stop_watcher(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None

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
        primary = apply_settings(self, new)
        log.info("settings.reloaded", generation=self.workforce.generation, chain=primary)
        self.health.reloaded()
