"""What the daemon tells the outside about its health: /readyz, and systemd.

Readiness is one tuple the HTTP thread reads. Notifications go to systemd
(daemon.observing.systemd_notify.Notifier) from the main loop only: READY once a worker has
its model loaded, EXTEND_TIMEOUT while a large model loads, WATCHDOG while
the loop turns (a stuck loop stops pinging and systemd acts), STATUS when it
changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import structlog

log = structlog.get_logger("daemon.observing.health")

STATUS_EVERY_SECONDS = 2.0
EXTEND_TIMEOUT_EVERY_SECONDS = 10.0


class Notifier(Protocol):
    """What the daemon needs of daemon.observing.systemd_notify.Notifier."""

    @property
    def watchdog_interval(self) -> float | None: ...
    def ready(self, status: str | None = None) -> None: ...
    def status(self, text: str) -> None: ...
    def extend_timeout(self, seconds: float) -> None: ...
    def watchdog(self) -> None: ...
    def reloading(self) -> None: ...
    def stopping(self, status: str | None = None) -> None: ...


class SilentNotifier:
    """Used when not under systemd (and by `once`)."""

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


class Health:
    def __init__(self, notifier: Notifier | None, clock: Callable[[], float]) -> None:
        self.notifier: Notifier = notifier if notifier is not None else SilentNotifier()
        self.clock = clock
        self.readiness: tuple[bool, str] = (False, "starting")
        self.ready_sent = False
        self._last_ping = 0.0
        self._last_extend = 0.0
        self._last_status = ("", 0.0)  # (text, when) of the last STATUS sent
        self._status_text = ""  # what STATUS should say now

    def update(
        self,
        now: float,
        *,
        stopping: bool,
        exhausted: bool,
        active: str | None,
        serving: bool,
        loading: bool,
        position: int,
        waiting: int,
        fallen_because: str = "",
        inboxes_without_model: tuple[str, ...] = (),
    ) -> None:
        """Called once per turn of the main loop.

        `fallen_because`: on a fallback, why the chain left the model above
        (for example "remote: unavailable", a server that does not answer).
        """
        fallback = ""
        if position and not exhausted:
            why = f", {fallen_because}" if fallen_because else ""
            fallback = f" (fallback: model {position + 1} of the chain{why})"
        if stopping:
            self.readiness = (False, "stopping")
        elif exhausted:
            self.readiness = (False, "no model of the chain can run")
        elif serving:
            self.readiness = (True, f"serving with {active}{fallback}")
        elif loading:
            self.readiness = (False, f"loading model {active}{fallback}")
        else:
            self.readiness = (False, f"worker for {active} is restarting{fallback}")
        if inboxes_without_model:
            # Ready still: the other inboxes flow. The text says which wait.
            names = ", ".join(inboxes_without_model)
            ready, said = self.readiness
            self.readiness = (
                ready,
                f"{said}; no model left for inbox(es) {names} until the cool-down",
            )
        text = self.readiness[1]
        text += f"; {waiting} file(s) waiting"
        if serving and not self.ready_sent:
            self.ready_sent = True
            self.notifier.ready(text)
            log.info("daemon.ready", model=active)
        if not self.ready_sent and now - self._last_extend >= EXTEND_TIMEOUT_EVERY_SECONDS:
            self._last_extend = now
            self.notifier.extend_timeout(EXTEND_TIMEOUT_EVERY_SECONDS * 3)
        interval = self.notifier.watchdog_interval
        if interval is not None and now - self._last_ping >= interval:
            self._last_ping = now
            self.notifier.watchdog()
        self._status_text = text
        if self._status_unsent() and now - self._last_status[1] >= STATUS_EVERY_SECONDS:
            self._last_status = (text, now)
            self.notifier.status(text)

    def _status_unsent(self) -> bool:
        return self._status_text != self._last_status[0]

    def seconds_to_next_message(self, now: float) -> float | None:
        """How long the loop may wait before update() has something due to send.

        The next watchdog ping, or a STATUS held back by the throttle; None
        when nothing is due. The loop waits no longer than this, so pings keep
        their interval and the last state of a burst is told (later, not never).
        """
        due: list[float] = []
        interval = self.notifier.watchdog_interval
        if interval is not None:
            due.append(self._last_ping + interval - now)
        if self._status_unsent():
            due.append(self._last_status[1] + STATUS_EVERY_SECONDS - now)
        return max(0.0, min(due)) if due else None

    def starting(self, model: str | None) -> None:
        self.notifier.status(f"loading {model}")

    def reloading(self) -> None:
        # Before the first READY=1 the daemon is still starting: a reload then
        # must not send READY (systemd would count start-up as done before the
        # model is loaded); update() sends it once a worker serves.
        if self.ready_sent:
            self.notifier.reloading()

    def reloaded(self) -> None:
        if self.ready_sent:
            self.notifier.ready(self._last_status[0] or self.readiness[1])

    def stopping(self) -> None:
        self.readiness = (False, "stopping")
        self.notifier.stopping("stopping")
