"""The fallback chain of models: which one serves, and when to move down or back up.

Pure bookkeeping with an injectable clock: recovery asks, this module
answers, and tests drive it without processes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from daemon.settings import RecoverySettings


class ModelChain:
    """Which model of the chain serves now, and when to move down or back up.

    After `max_fatal_failures` fatal failures of the active model within
    `failure_window_seconds`, or one failure to load it, the chain moves to the
    next model. After `cooldown_seconds` on a fallback it tries the first model
    again. When no model is left, `active` is None: the daemon must exit.
    """

    def __init__(
        self,
        names: list[str],
        recovery: RecoverySettings,
        clock: Callable[[], float],
    ) -> None:
        if not names:
            raise ValueError("the chain needs at least one model")
        self.names = list(names)
        self.recovery = recovery
        self.clock = clock
        self.position: int | None = 0
        self.demoted_at: float | None = None
        self._failures: dict[str, deque[float]] = {name: deque() for name in names}

    @property
    def active(self) -> str | None:
        return None if self.position is None else self.names[self.position]

    @property
    def exhausted(self) -> bool:
        return self.position is None

    def after(self, name: str) -> str | None:
        """The model a single file moves to when `name` cannot do it."""
        try:
            index = self.names.index(name)
        except ValueError:
            return None
        return self.names[index + 1] if index + 1 < len(self.names) else None

    def record_fatal(self, name: str) -> bool:
        """Count a fatal failure (crash, hang, sticky CUDA error) of `name`.

        Returns True when that was one too many for the active model: the
        caller should demote().
        """
        now = self.clock()
        window = self._failures.setdefault(name, deque())
        window.append(now)
        while window and now - window[0] > self.recovery.failure_window_seconds:
            window.popleft()
        return name == self.active and len(window) >= self.recovery.max_fatal_failures

    def recent_failures(self, name: str) -> int:
        now = self.clock()
        window = self._failures.get(name, deque())
        return sum(1 for moment in window if now - moment <= self.recovery.failure_window_seconds)

    def demote(self) -> str | None:
        """Move to the next model; None when the chain is exhausted."""
        if self.position is None:
            return None
        self.position = self.position + 1 if self.position + 1 < len(self.names) else None
        self.demoted_at = self.clock()
        if self.position is not None:
            self._failures[self.names[self.position]].clear()
        return self.active

    def cooldown_due(self) -> bool:
        """True when running on a fallback long enough to try the first model again."""
        return (
            self.position is not None
            and self.position > 0
            and self.demoted_at is not None
            and self.clock() - self.demoted_at >= self.recovery.cooldown_seconds
        )

    def retry_due(self) -> bool:
        """True when exhausted for the cool-down: an inbox's chain tries its first model again
        (the daemon's chain never waits: the daemon ends instead)."""
        return (
            self.position is None
            and self.demoted_at is not None
            and self.clock() - self.demoted_at >= self.recovery.cooldown_seconds
        )

    def promote(self, to: int = 0) -> str:
        """Go back up to the model at `to` (the first, after the cool-down)."""
        self.position = to
        # Still on a fallback: the cool-down to the first model starts afresh.
        self.demoted_at = None if to == 0 else self.clock()
        self._failures[self.names[to]].clear()
        return self.names[to]
