"""The recovery policy: what a fault means for the file, for the model, for the daemon.

- A fatal fault (crash, hang, sticky CUDA error) counts against the file and
  the model. A file that killed the worker `attempts_per_model` times moves to
  the next model; a model that failed `max_fatal_failures` times within the
  window is demoted in every chain it serves (the daemon's, or an inbox's
  own: daemon.supervising.chains); each chain's cool-down brings its first
  model back. When a fault demotes the model, the demotion is the whole
  answer: the file in hand simply waits for its chain's next active model
  (no per-file fallback).
- A file that comes back pending after a restart resumes after the last model
  of its trail; its per-model attempt counts live in the journal.
- Empty or degenerate output (and OOM or an engine error that survived the
  worker's own retries) moves only that file to the next model.
- A file with no model left is quarantined (its error sidecar), never a loop.
- The daemon's chain with no model left ends the daemon (exit 3, systemd
  restarts it), leaving every pending file pending. An inbox's own chain with
  no model left holds its files until its cool-down, and the others go on.

This module decides and does nothing else: it owns the chains and answers with
a Decision, which daemon.supervising.file_flow carries out (the queue, the
journal through the ledger, the outputs). Its clock is injected, so tests
prove the policy without processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog

from daemon.observing.metrics import Metrics
from daemon.protocol import Fault
from daemon.settings import RecoverySettings
from daemon.supervising.chain import ModelChain
from daemon.supervising.chains import DAEMONS, ChainSet
from daemon.supervising.inbox_chains import Chain, first_usable, usable_after
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
    # Out of service in `chains` (() is the daemon's): those chains' active models take its
    # queued files.
    demoted: str | None = None
    chains: tuple[Chain, ...] = ()
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
        inboxes: dict[Chain, list[str]] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.held = held  # how many files the daemon holds, for the log when a chain ends
        # The daemon's chain and the inboxes' chains that differ from it
        # (daemon.supervising.inbox_chains), each with its own fallback state.
        self.chains = ChainSet(chain_names, resident, inboxes or {}, settings, clock, metrics)
        self.chains.publish_all()
        self.unloadable: set[str] = set()  # per-file fallback models that failed to load
        self.fallen_because = ""  # why the daemon's chain last moved down, for /readyz

    def reset(
        self,
        chain_names: list[str],
        settings: RecoverySettings,
        resident: Sequence[Chain] = (),
        inboxes: dict[Chain, list[str]] | None = None,
    ) -> None:
        """New settings (SIGHUP): fresh chains from their first models."""
        self.settings = settings
        self.metrics.forget_chains()
        loaded = self.chains.loaded  # workers that stay keep serving: their info stays true
        self.chains = ChainSet(
            chain_names, resident, inboxes or {}, settings, self.clock, self.metrics
        )
        self.chains.loaded.update(loaded)
        self.chains.publish_all()
        self.unloadable.clear()

    @property
    def chain(self) -> ModelChain:
        """The daemon's chain: the one its numbered worker slots serve."""
        return self.chains.primary

    @property
    def resident(self) -> list[Chain]:
        return list(self.chains.others)

    @property
    def active(self) -> str | None:
        return self.chain.active

    @property
    def exhausted(self) -> bool:
        """The daemon's chain has no model left: the daemon ends (exit 3), its files stay pending."""
        return self.chain.exhausted

    def waits(self, chain: Chain) -> bool:
        """A file of this chain waits: its inbox's chain has no model left until its cool-down."""
        return bool(chain) and self.chains.waiting(chain)

    def usable(self, model: str) -> bool:
        return model not in self.unloadable

    def resident_models(self) -> list[str]:
        """The models kept loaded for the inboxes' own chains (their active ones)."""
        return [model for model in self.chains.active_models() if self.usable(model)]

    def resume_model(self, trail: list[dict[str, Any]], chain: Chain = ()) -> str | None:
        """The model for a file when it is admitted (after a restart, with a trail).

        The trail lists the models the file already left; it goes on after the
        last of them instead of starting again at the top of the chain, or at
        its chain's active model when that is further down. A file of an inbox
        with a chain of its own (`chain`) always names its model.
        """
        if chain:
            state = self.chains.others.get(chain)
            current = state.active if state is not None else first_usable(chain, self.usable)
            after = usable_after(chain, str(trail[-1].get("model")), self.usable) if trail else None
            if after is not None and (current is None or chain.index(after) > chain.index(current)):
                return after
            return current or first_usable(chain, self.usable) or chain[0]
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
        demoted = self._record_fatal(model)
        limit = self.settings.attempts_per_model
        log.error(
            "file.attempt_failed",
            file=str(task.path),
            model=model,
            reason=reason,
            attempt=attempts,
            of=limit,
        )
        if demoted:
            self._demote(demoted, reason)
        out_of_service = Decision(demoted=model if demoted else None, chains=tuple(demoted))
        if self.chains.key_of(task.chain) in demoted:
            # The model goes out of service for the file's whole chain: that, not
            # this file, is what gave way. The file waits for the chain's next
            # active model like every queued file, with no per-file fallback or
            # trail entry (and with no model left it stays pending for the next
            # start, rather than being quarantined for a broken GPU).
            return replace(out_of_service, file=Requeue(self._after_demotion(task, model)))
        if attempts >= limit:
            message = f"the worker was lost {attempts} times on this file"
            left = {"model": model, "outcome": reason, "message": message}
            return replace(out_of_service, file=self.next_model_for(task, model, reason), left=left)
        return replace(out_of_service, file=Requeue(task.model_override))

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
        Every chain the model serves moves on and the file waits for its chain's
        next active model, like every queued file, so a dead server never turns
        a backlog into error sidecars. The server's probe brings the model back
        (fail_back).
        """
        log.warning("model.unavailable", model=model, file=str(task.path), error=fault.message)
        demoted = self.chains.serving(model)
        if demoted:
            self._demote(demoted, "unavailable")
        out_of_service = Decision(demoted=model if demoted else None, chains=tuple(demoted))
        if self.chains.key_of(task.chain) in demoted:
            return replace(out_of_service, file=Requeue(self._after_demotion(task, model)))
        if task.model_override != model:
            # Out of service already: the file waits for its chain's active model.
            return replace(out_of_service, file=Requeue(self._after_demotion(task, model)))
        # A per-file fallback whose server is gone: its files move on down the chain.
        self.unloadable.add(model)
        left = {"model": model, "outcome": "unavailable", "message": fault.message[:500]}
        verdict = self.next_model_for(task, model, "unavailable")
        return replace(out_of_service, file=verdict, left=left, unloadable=model)

    def fail_back(self, model: str) -> bool:
        """`model`'s server answers again: each chain goes back up to it if it is above."""
        self.unloadable.discard(model)
        promoted = False
        for key, state in self.chains:
            position = state.position
            if position is None and key != DAEMONS:
                position = len(state.names)  # a waiting inbox chain: its server is back
            if model not in state.names or position is None:
                continue
            if (index := state.names.index(model)) >= position:
                continue
            old = self.chains.promote(key, index, "server_back")
            log.info(
                "chain.fail_back",
                from_model=old,
                to_model=model,
                reason="its server answers",
                inboxes=self.chains.inboxes[key],
            )
            promoted = True
        return promoted

    def load_failed(self, model: str, fault: Fault) -> Decision:
        log.error("model.load_failed", model=model, error=fault.message)
        demoted = self.chains.serving(model)
        if demoted != [DAEMONS]:
            # Not (only) the daemon's active model: per-file fallbacks and the
            # inboxes' chains pass it by until a cool-down tries it again.
            self.unloadable.add(model)
        if demoted:
            self._demote(demoted, "load_error")
        return Decision(
            demoted=model if demoted else None,
            chains=tuple(demoted),
            unloadable=model if model in self.unloadable else None,
        )

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
        demoted = self._record_fatal(model)
        failures = self._recent_failures(model)
        idle = not self.chains.serving(model)
        if demoted or (idle and failures >= self.settings.max_fatal_failures):
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
        """After its cool-down on a fallback, a chain tries its first model again."""
        if stopping:
            return
        for key, state in self.chains:
            if not (state.cooldown_due() or (key != DAEMONS and state.retry_due())):
                continue
            self.chains.promote(key, 0, None)
            if key == DAEMONS:
                self.unloadable.clear()
            else:
                self.unloadable.discard(state.names[0])
            log.info(
                "chain.retry_first",
                model=state.names[0],
                after_seconds=self.settings.cooldown_seconds,
                inboxes=self.chains.inboxes[key],
            )

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

    def model_for(self, chain: Chain) -> str | None:
        """The model a queued file of `chain` waits for after its chain moved (None: the daemon's active)."""
        key = self.chains.key_of(chain)
        if key == DAEMONS:
            return None
        state = self.chains.of(key)
        return state.active or state.names[0]  # waiting: its first, when the cool-down ends

    # --- moving down -----------------------------------------------------------

    def _record_fatal(self, model: str) -> list[Chain]:
        """Count a fatal failure of `model` in every chain that has it (its worker is shared);
        the chains for which that was one too many."""
        keys = self.chains.containing(model) or [DAEMONS]
        return [key for key in keys if self.chains.of(key).record_fatal(model)]

    def _recent_failures(self, model: str) -> int:
        keys = self.chains.containing(model) or [DAEMONS]
        return max(self.chains.of(key).recent_failures(model) for key in keys)

    def _after_demotion(self, task: FileTask, model: str) -> str | None:
        """The model a file sent to `model` waits for once `model` left its chain's service."""
        if task.model_override != model:
            return task.model_override
        return self.model_for(task.chain)

    def _demote(self, keys: list[Chain], reason: str) -> None:
        """The active model of each chain in `keys` goes out of service."""
        for key in keys:
            old, new = self.chains.demote(key, reason, self.unloadable)
            if key == DAEMONS:
                self.fallen_because = f"{old}: {reason}"
            inboxes = self.chains.inboxes[key]
            if new is None and key == DAEMONS:
                # A daemon that stays up with no usable model is worse than one that
                # exits: systemd restarts us. Pending files stay pending in the journal.
                log.critical(
                    "chain.exhausted", last=old, reason=reason, held=self.held(), inboxes=inboxes
                )
            elif new is None:
                # One inbox's models all gave way: its files wait for the cool-down,
                # the other inboxes go on.
                log.error(
                    "chain.exhausted",
                    last=old,
                    reason=reason,
                    inboxes=inboxes,
                    retry_in_seconds=self.settings.cooldown_seconds,
                )
            else:
                log.warning(
                    "chain.fallback", from_model=old, to_model=new, reason=reason, inboxes=inboxes
                )

    def _usable_after(self, model: str, chain: Chain = ()) -> str | None:
        """The first model below `model` in the chain (the file's own, if it has one) that has
        not failed to load."""
        if chain:
            return usable_after(chain, model, self.usable)
        following = self.chain.after(model)
        while following is not None and following in self.unloadable:
            following = self.chain.after(following)
        return following
