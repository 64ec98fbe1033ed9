"""Every chain the daemon serves, each with its own fallback state, and the inboxes it serves.

The daemon's chain (daemon.supervising.inbox_chains.serving_chains) and each
inbox chain that differs from it are a ModelChain of their own: each moves
down when its active model keeps failing or cannot load, and comes back up
after its own cool-down, without moving the others. A model two chains share
runs in one worker, so a fault of that worker counts against the model in
every chain that has it.

The daemon's chain with no model left ends the daemon (exit 3): its numbered
workers serve nothing. An inbox's own chain with no model left waits instead:
its files stay queued (pending in the journal) while the other inboxes' files
flow, and after the cool-down it tries its first model again.

The metrics say where each chain stands, one series per inbox
(`ocr_inbox_chain_position{inbox}`, `ocr_inbox_active_model_info{inbox,...}`):
an operator sees which inbox runs on a fallback, on each node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from daemon.observing.metrics import Metrics
from daemon.protocol import EngineInfo
from daemon.settings import RecoverySettings
from daemon.supervising.chain import ModelChain
from daemon.supervising.inbox_chains import Chain

# A task's chain is () when it follows the daemon's chain.
DAEMONS: Chain = ()
# The chain position shown for a chain with no model left (its inboxes' files wait).
NO_MODEL_LEFT = -1


class ChainSet:
    def __init__(
        self,
        primary: Sequence[str],
        others: Sequence[Chain],
        inboxes: dict[Chain, list[str]],
        settings: RecoverySettings,
        clock: Callable[[], float],
        metrics: Metrics,
    ) -> None:
        self.primary = ModelChain(list(primary), settings, clock)
        self.others = {chain: ModelChain(list(chain), settings, clock) for chain in others}
        # Inbox names per chain, for the metrics' `inbox` label.
        self.inboxes = {
            DAEMONS: list(inboxes.get(tuple(primary), [])),
            **{chain: list(inboxes.get(chain, [])) for chain in others},
        }
        self.metrics = metrics
        # How each model runs (what its worker reported when it loaded), for the info series.
        self.loaded: dict[str, EngineInfo] = {}

    def __iter__(self) -> Iterator[tuple[Chain, ModelChain]]:
        yield DAEMONS, self.primary
        yield from self.others.items()

    def of(self, chain: Chain) -> ModelChain:
        """The state of a task's chain (() or a chain no inbox uses any more: the daemon's)."""
        return self.others.get(chain, self.primary)

    def key_of(self, chain: Chain) -> Chain:
        return chain if chain in self.others else DAEMONS

    def serving(self, model: str) -> list[Chain]:
        """The chains whose active model is `model`."""
        return [key for key, state in self if state.active == model]

    def containing(self, model: str) -> list[Chain]:
        return [key for key, state in self if model in state.names]

    def waiting(self, chain: Chain) -> bool:
        """An inbox's own chain with no model left: its files wait for its cool-down."""
        state = self.others.get(chain)
        return state is not None and state.exhausted

    def waiting_inboxes(self) -> tuple[str, ...]:
        """The inboxes whose own chain has no model left (for readiness)."""
        return tuple(
            name
            for key, state in self.others.items()
            if state.exhausted
            for name in self.inboxes[key]
        )

    def benched(self) -> set[str]:
        """Models of waiting chains that no chain serves now: no worker is started for them."""
        models = {m for state in self.others.values() if state.exhausted for m in state.names}
        return models - {state.active for _, state in self if state.active is not None}

    def active_models(self) -> list[str]:
        """The active model of each inbox chain (not the daemon's), once each."""
        models: list[str] = []
        for state in self.others.values():
            if state.active is not None and state.active not in models:
                models.append(state.active)
        return models

    # --- moving -----------------------------------------------------------------

    def demote(self, key: Chain, reason: str, skip: set[str]) -> tuple[str | None, str | None]:
        """The chain's active model goes out of service; returns it and the next (None: none
        left). Models in `skip` (they cannot load) are passed by."""
        state = self.of(key)
        old, new = state.active, state.demote()
        while new is not None and new in skip:
            new = state.demote()
        self.metrics.fallbacks.labels(
            from_model=old or "", to_model=new or "none", reason=reason, scope=scope(key)
        ).inc()
        self.publish(key)
        return old, new

    def promote(self, key: Chain, to: int, reason: str | None) -> str | None:
        """The chain goes back up to its model at `to`; returns the model it leaves.

        `reason` is counted as a fallback (a server back); None for the cool-down's try.
        """
        state = self.of(key)
        old = state.active
        state.promote(to)
        if reason is not None:
            self.metrics.fallbacks.labels(
                from_model=old or "", to_model=state.names[to], reason=reason, scope=scope(key)
            ).inc()
        self.publish(key)
        return old

    # --- the metrics -----------------------------------------------------------

    def model_loaded(self, model: str, info: EngineInfo) -> None:
        """A worker of `model` loaded: the chains it serves show how it runs."""
        self.loaded[model] = info
        for key in self.serving(model):
            self.publish(key)

    def publish(self, key: Chain) -> None:
        """The chain's position and active model, on each of its inboxes' series."""
        state = self.of(key)
        info = self.loaded.get(state.active) if state.active is not None else None
        position = NO_MODEL_LEFT if state.position is None else state.position
        self.metrics.set_active_model(info, position, inboxes=self.inboxes[key])

    def publish_all(self) -> None:
        for key, _ in self:
            self.publish(key)

    def clear(self) -> None:
        """Stopped: no model serves any more; the positions stay."""
        self.loaded.clear()
        self.publish_all()


def scope(key: Chain) -> str:
    """The fallbacks counter's scope: the daemon's chain, or an inbox's own."""
    return "daemon" if key == DAEMONS else "inbox"
