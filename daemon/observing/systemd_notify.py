"""The sd_notify protocol, spoken directly: READY, STATUS, WATCHDOG, RELOADING, STOPPING.

systemd hands a Type=notify service the address of a datagram socket in
$NOTIFY_SOCKET; each message is one datagram of newline-separated KEY=value
assignments. Speaking it here (a dozen lines) avoids a dependency on libsystemd
or the `systemd` Python package, which do not install cleanly everywhere the
daemon runs. Without $NOTIFY_SOCKET (a terminal, a container, tests) every
call is a no-op, so callers never need to ask whether they run under systemd.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger(__name__)

# A full notification queue on systemd's side must not stall the supervisor's
# main loop for long: a lost watchdog ping is repaid by the next one.
SEND_TIMEOUT_SECONDS = 1.0

_FIELD_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def socket_address(notify_socket: str) -> bytes | None:
    """The sendto() address for a $NOTIFY_SOCKET value, or None when it is not AF_UNIX.

    A leading "@" names a socket in the abstract namespace, which the kernel
    spells with a leading NUL byte. systemd 254 and later may also hand out
    "vsock:" addresses (for virtual machines); those are not supported here.
    """
    if notify_socket.startswith("@"):
        return b"\0" + os.fsencode(notify_socket[1:])
    if notify_socket.startswith("/"):
        return os.fsencode(notify_socket)
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between watchdog pings for this process, or None when it has no watchdog.

    systemd sets WATCHDOG_USEC to the timeout; pinging at half of it (as
    sd_watchdog_enabled(3) advises) leaves room for one late ping. When
    WATCHDOG_PID is set it names the process the watchdog is meant for: a
    child that inherited the environment must not ping on its parent's behalf.
    """
    usec_text = environ.get("WATCHDOG_USEC", "")
    try:
        usec = int(usec_text)
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid_text = environ.get("WATCHDOG_PID")
    if pid_text:
        try:
            if int(pid_text) != pid:
                return None
        except ValueError:
            return None
    return usec / 1_000_000 / 2


class Notifier:
    """Sends service-state notifications to systemd; silent when not run by systemd."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        notify_socket = environ.get("NOTIFY_SOCKET", "")
        self._address = socket_address(notify_socket) if notify_socket else None
        if notify_socket and self._address is None:
            log.warning("notify_socket_unsupported", notify_socket=notify_socket)
        self.enabled: bool = self._address is not None
        self.watchdog_interval: float | None = (
            watchdog_interval(environ, os.getpid()) if self.enabled else None
        )
        self._lock = threading.Lock()
        # One warning per outage: a broken socket would otherwise log on every ping.
        self._failure_logged = False

    def ready(self, status: str | None = None) -> None:
        """Startup is finished: the watcher runs and the first model is loaded."""
        if status is None:
            self.send(READY="1")
        else:
            self.send(READY="1", STATUS=status)

    def status(self, text: str) -> None:
        """A one-line description of what the daemon is doing, shown by `systemctl status`."""
        self.send(STATUS=text)

    def extend_timeout(self, seconds: float) -> None:
        """Ask for `seconds` more from now before the start (or stop) timeout fires."""
        self.send(EXTEND_TIMEOUT_USEC=str(max(0, round(seconds * 1_000_000))))

    def watchdog(self) -> None:
        """The main loop is making progress; resets the WatchdogSec= timer."""
        self.send(WATCHDOG="1")

    def reloading(self) -> None:
        """Settings are being reloaded; READY=1 (via ready()) ends the reload.

        MONOTONIC_USEC lets systemd (Type=notify-reload, v253+) tell this
        reload apart from an earlier one; older versions ignore it.
        """
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send(RELOADING="1", MONOTONIC_USEC=str(now_usec))

    def stopping(self, status: str | None = None) -> None:
        """Shutdown has begun."""
        if status is None:
            self.send(STOPPING="1")
        else:
            self.send(STOPPING="1", STATUS=status)

    def send(self, **fields: str) -> bool:
        """Send one datagram of KEY=value lines; True when it was handed to the socket.

        Socket errors are logged (once until a send succeeds again) and never
        raised: losing a notification must not take the daemon down. Field
        names must be upper case, as systemd expects; newlines in values are
        flattened because each line of a message is a separate assignment.
        """
        if self._address is None:
            return False
        for name in fields:
            if not _FIELD_NAME.match(name):
                raise ValueError(f"not a notification field name: {name!r}")
        message = "".join(
            f"{name}={' '.join(value.splitlines())}\n" for name, value in fields.items()
        ).encode("utf-8", errors="replace")
        with self._lock:
            try:
                with socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                ) as notify:
                    notify.settimeout(SEND_TIMEOUT_SECONDS)
                    notify.sendto(message, self._address)
            except OSError as error:
                if not self._failure_logged:
                    log.warning(
                        "notify_failed",
                        fields=sorted(fields),
                        error=error.strerror or str(error),
                    )
                    self._failure_logged = True
                return False
            self._failure_logged = False
            return True
