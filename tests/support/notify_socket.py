"""What systemd holds for a Type=notify service: a datagram socket collecting notifications."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Message:
    received: float  # time.time() when the datagram arrived
    fields: dict[str, str]


class NotifySocket:
    """What systemd holds: a datagram socket collecting notifications on a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        self._socket.settimeout(0.2)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._socket.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
            with self._lock:
                self.messages.append(Message(time.time(), fields))

    def snapshot(self) -> list[Message]:
        with self._lock:
            return list(self.messages)

    def with_field(self, name: str) -> list[Message]:
        return [message for message in self.snapshot() if name in message.fields]

    def wait_for(self, name: str, value: str | None = None, timeout: float = 90) -> Message:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.with_field(name):
                if value is None or message.fields[name] == value:
                    return message
            time.sleep(0.05)
        raise AssertionError(f"no {name}={value} notification; got {self.snapshot()}")

    def pings_between(self, start: float, end: float) -> list[float]:
        return [m.received for m in self.with_field("WATCHDOG") if start <= m.received <= end]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._socket.close()
