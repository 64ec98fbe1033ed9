"""What systemd holds for a Type=notify service: a datagram socket collecting notifications."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.datagram import DatagramListener


@dataclass(frozen=True)
class Message:
    received: float  # time.time() when the datagram arrived
    fields: dict[str, str]


class NotifySocket(DatagramListener):
    """What systemd holds: a datagram socket collecting notifications on a thread."""

    def __init__(self, path: Path) -> None:
        self.messages: list[Message] = []
        super().__init__(path)

    def handle(self, data: bytes, fds: list[int]) -> None:
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
