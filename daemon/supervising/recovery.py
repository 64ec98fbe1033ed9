"""The recovery policy: what a fault means for the file, for the model, for the daemon.

- A fatal fault (crash, hang, sticky CUDA error) counts against the file and
  the model. A file that killed the worker `attempts_per_model` times moves to
  the next model; a model that failed `max_fatal_failures` times within the
  window is demoted for the whole daemon; a cool-down brings the first back.
  When a fault demotes the model, the demotion is the whole answer: the file
  in hand simply waits for the next active model (no per-file fallback).
- A file that comes back pending after a restart resumes after the last model
  of its trail; its per-model attempt counts live in the journal.
- Empty or degenerate output (and OOM or an engine error that survived the
  worker's own retries) moves only that file to the next model.
- A file with no model left is quarantined (its error sidecar), never a loop.
- A chain with no model left ends the daemon (exit 3, systemd restarts it),
  leaving every pending file pending.

This module decides and does nothing else: it owns the chain and answers with
a Decision, which daemon.supervising.file_flow carries out (the queue, the
journal through the ledger, the outputs). Its clock is injected, so tests
prove the policy without processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from daemon.observing.metrics import Metrics
from daemon.protocol import Fault
from daemon.settings import RecoverySettings
from daemon.supervising.chain import ModelChain
from daemon.supervising.inbox_chains import Chain, first_usable, resident_heads, usable_after
from daemon.tasks import FileTask

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Requeue:
    """Queue the file again, at the front, for `model` (None: whichever model is active)."""

    model: str | None


@dataclass(frozen=True, slots=True)
class Quarantine:
    """No model is left for this file: its error sidecar, and never again for this content."""

    summary: str


Verdict = Requeue | Quarantine


@dataclass(frozen=True, slots=True)
class Decision:
    file: Verdict | None = None  # what becomes of the file in hand, if there is one
    left: dict[str, Any] | None = None  # the step the file's trail gains (model, outcome, message)
    demoted: str | None = None  # out of service: the active model takes its queued files
    unloadable: str | None = None  # a per-file model that cannot load: its files move on


class Recovery:
    def __init__(
        self,
        chain_names: list[str],
        settings: RecoverySettings,
        *,
        metrics: Metrics,
        clock: Callable[[], float],
        held: Callable[[], int] = lambda: 0,
        resident: Sequence[Chain] = (),
    ) -> None:
        self.settings = settings
        # Inboxes' chains other than this one (daemon.supervising.inbox_chains).
        self.resident = list(resident)
        self.metrics = metrics
        self.clock = clock
        self.held = held  # how many files the daemon holds, for the log when the chain ends
        self.chain = ModelChain(chain_names, settings, clock)
        self.unloadable: set[str] = set()  # per-file fallback models that failed to load
        self.fallen_because = ""  # why the chain last moved down, for /readyz

    def reset(
        self, chain_names: list[str], settings: RecoverySettings, resident: Sequence[Chain] = ()
    ) -> None:
        """New settings (SIGHUP): a fresh chain from its first model."""
        self.settings = settings
        self.resident = list(resident)
        self.chain = ModelChain(chain_names, settings, self.clock)
        self.unloadable.clear()
        self.metrics.set_active_model(None, 0)

    @property
    def active(self) -> str | None:
        return self.chain.active

    @property
    def exhausted(self) -> bool:
        return self.chain.exhausted

    def usable(self, model: str) -> bool:
        return model not in self.unloadable

    def resident_models(self) -> list[str]:
        """The models kept loaded for the inboxes' own chains (their first usable ones)."""
        return resident_heads(self.resident, self.usable)

    def resume_model(self, trail: list[dict[str, Any]], chain: Chain = ()) -> str | None:
        """The model for a file that comes back pending with a trail (after a restart).

        The trail lists the models the file already left; it goes on after the
        last of them instead of starting again at the top of the chain. A file
        of an inbox with a chain of its own (`chain`) always names its model.
        """
        if chain:
            after = usable_after(chain, str(trail[-1].get("model")), self.usable) if trail else None
            return after or first_usable(chain, self.usable) or chain[0]
        if not trail:
            return None
        following = self._usable_after(str(trail[-1].get("model")))
        position = self.chain.position
        if following is None or position is None or self.chain.names.index(following) <= position:
            return None  # the active model is that one, or already further down
        return following

    # --- faults --------------------------------------------------------------

    def worker_lost(self, model: str, task: FileTask, reason: str, attempts: int) -> Decision:
        """A worker died (or must die) on this file, for the `attempts`-th time on this model."""
        demote = self.chain.record_fatal(model)
        limit = self.settings.attempts_per_model
        log.error(
            "file.attempt_failed",
            file=str(task.path),
            model=model,
            reason=reason,
            attempt=attempts,
            of=limit,
        )
        if demote:
            # The model goes out of service for the whole daemon: that, not this
            # file, is what gave way. The file waits for the next active model
            # like every queued file, with no per-file fallback or trail entry
            # (and with no model left it stays pending for the next start,
            # rather than being quarantined for a broken GPU).
            override = None if task.model_override == model else task.model_override
            if task.chain:
                override = task.model_override  # its own chain keeps the model resident
            return Decision(Requeue(override), demoted=self._demote(reason))
        if attempts >= limit:
            message = f"the worker was lost {attempts} times on this file"
            left = {"model": model, "outcome": reason, "message": message}
            return Decision(self.next_model_for(task, model, reason), left=left)
        return Decision(Requeue(task.model_override))

    def model_failed_file(self, model: str, task: FileTask, fault: Fault) -> Decision:
        """The model could not do this one file (empty, degenerate, OOM, engine error)."""
        if fault.kind == "unavailable":
            return self.model_unavailable(model, task, fault)
        if fault.kind == "oom":
            self.metrics.cuda_errors.labels(kind="oom").inc()
        left = {"model": model, "outcome": fault.kind, "message": fault.message[:500]}
        return Decision(self.next_model_for(task, model, fault.kind), left=left)

    def model_unavailable(self, model: str, task: FileTask, fault: Fault) -> Decision:
        """The model's server cannot serve now (down, overloaded, refusing the key or name).

        Not the file's fault: no attempt is counted and no trail entry is made.
        The chain moves on and the file waits for the next active model, like
        every queued file, so a dead server never turns a backlog into error
        sidecars. The server's probe brings the model back (fail_back).
        """
        log.warning("model.unavailable", model=model, file=str(task.path), error=fault.message)
        override = None if task.model_override == model else task.model_override
        if model == self.chain.active:
            return Decision(Requeue(override), demoted=self._demote("unavailable"))
        if task.model_override != model:
            return Decision(Requeue(override))  # out of service already: the file waits
        # A per-file fallback whose server is gone: its files move on down the chain.
        self.unloadable.add(model)
        left = {"model": model, "outcome": "unavailable", "message": fault.message[:500]}
        return Decision(
            self.next_model_for(task, model, "unavailable"), left=left, unloadable=model
        )

    def fail_back(self, model: str) -> bool:
        """`model`'s server answers again: the chain goes back up to it if it is above."""
        position = self.chain.position
        if model not in self.chain.names:
            return False
        index = self.chain.names.index(model)
        self.unloadable.discard(model)
        if position is None or index >= position:
            return False
        old = self.chain.active
        self.chain.promote(index)
        self.metrics.fallbacks.labels(
            from_model=old or "", to_model=model, reason="server_back", scope="daemon"
        ).inc()
        self.metrics.set_active_model(None, index)
        log.info("chain.fail_back", from_model=old, to_model=model, reason="its server answers")
        return True

    def load_failed(self, model: str, fault: Fault) -> Decision:
        log.error("model.load_failed", model=model, error=fault.message)
        if model == self.chain.active:
            return Decision(demoted=self._demote("load_error"))
        self.unloadable.add(model)
        return Decision(unloadable=model)

    def died_loading(self, model: str, reason: str, fault: Fault) -> Decision:
        """A worker ended while loading `model` without reporting why.

        A load that hung past load_deadline_seconds cannot load. A crash
        counts as one fatal failure of the model: the kernel's OOM killer
        strikes hardest while a model loads, and one such kill should not take
        a good model out of service (or exit the daemon when it is the last);
        max_fatal_failures crashes in the window do.
        """
        if reason == "hang":
            return self.load_failed(model, fault)
        demote = self.chain.record_fatal(model)
        failures = self.chain.recent_failures(model)
        if demote or (model != self.chain.active and failures >= self.settings.max_fatal_failures):
            return self.load_failed(model, fault)
        log.warning(
            "model.load_interrupted",
            model=model,
            reason=reason,
            failures=failures,
            of=self.settings.max_fatal_failures,
        )
        return Decision()

    def maintain(self, stopping: bool) -> None:
        """After the cool-down on a fallback, try the first model again."""
        if self.chain.cooldown_due() and not stopping:
            first = self.chain.promote()
            self.unloadable.clear()
            log.info("chain.retry_first", model=first, after_seconds=self.settings.cooldown_seconds)
            self.metrics.set_active_model(None, 0)

    def next_model_for(self, task: FileTask, model: str, reason: str) -> Verdict:
        """One file moves to the model after `model`; with none left, it is quarantined."""
        following = self._usable_after(model, task.chain)
        if following is None:
            return Quarantine("every model of the chain failed on this file")
        self.metrics.fallbacks.labels(
            from_model=model, to_model=following, reason=reason, scope="file"
        ).inc()
        log.warning(
            "file.fallback",
            file=str(task.path),
            from_model=model,
            to_model=following,
            reason=reason,
        )
        return Requeue(following)

    # --- moving down -----------------------------------------------------------

    def _demote(self, reason: str) -> str | None:
        """The active model goes out of service; returns it."""
        old = self.chain.active
        new = self.chain.demote()
        self.fallen_because = f"{old}: {reason}"
        while new is not None and new in self.unloadable:
            new = self.chain.demote()
        self.metrics.fallbacks.labels(
            from_model=old or "", to_model=new or "none", reason=reason, scope="daemon"
        ).inc()
        self.metrics.set_active_model(None, self.chain.position or 0)
        if new is None:
            # A daemon that stays up with no usable model is worse than one that
            # exits: systemd restarts us. Pending files stay pending in the journal.
            log.critical("chain.exhausted", last=old, reason=reason, held=self.held())
        else:
            log.warning("chain.fallback", from_model=old, to_model=new, reason=reason)
        return old

    def _usable_after(self, model: str, chain: Chain = ()) -> str | None:
        """The first model below `model` in the chain (the file's own, if it has one) that has
        not failed to load."""
        if chain:
            return usable_after(chain, model, self.usable)
        following = self.chain.after(model)
        while following is not None and following in self.unloadable:
            following = self.chain.after(following)
        return following
