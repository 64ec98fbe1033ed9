"""A stand-in for journald's native socket: a real AF_UNIX datagram socket held by a test.

It decodes the native protocol independently of daemon.observing.systemd_journal (NAME=value
lines, the length-prefixed binary form, and entries passed as a memfd), so a
test compares what the daemon sent against the protocol, not against itself.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.datagram import DatagramListener

Entry = dict[str, str]
RECEIVE_BYTES = 8 * 1024 * 1024


def decode(data: bytes) -> Entry:
    """One native-protocol datagram as {FIELD: value}; raises ValueError when malformed."""
    entry: Entry = {}
    position = 0
    while position < len(data):
        end = data.index(b"\n", position)
        line = data[position:end]
        if b"=" in line:
            name, _, value = line.partition(b"=")
            position = end + 1
        else:
            name = line
            (size,) = struct.unpack_from("<Q", data, end + 1)
            start = end + 1 + 8
            value = data[start : start + size]
            if len(value) != size or data[start + size : start + size + 1] != b"\n":
                raise ValueError(f"bad binary field {name!r}")
            position = start + size + 1
        entry[name.decode("ascii")] = value.decode("utf-8")
    return entry


class JournalSocket(DatagramListener):
    """Binds `path`, collects every entry sent to it on a thread, until closed."""

    def __init__(self, path: Path) -> None:
        self.entries: list[Entry] = []
        self.passed_fds = 0  # entries that arrived as a memfd (too big for a datagram)
        self.errors: list[str] = []
        super().__init__(path, size=RECEIVE_BYTES, max_fds=4)

    def handle(self, data: bytes, fds: list[int]) -> None:
        try:
            for fd in fds:
                # The sender's writes left the shared file offset at the end.
                with os.fdopen(fd, "rb") as passed:
                    passed.seek(0)
                    data += passed.read()
            entry = decode(data)
        except ValueError as error:
            with self._lock:
                self.errors.append(f"{error}: {data[:200]!r}")
            return
        with self._lock:
            self.passed_fds += len(fds)
            self.entries.append(entry)

    def snapshot(self) -> list[Entry]:
        with self._lock:
            return list(self.entries)

    def wait_for(
        self, where: Callable[[Entry], bool], *, count: int = 1, timeout: float = 90.0
    ) -> list[Entry]:
        deadline = time.monotonic() + timeout
        while True:
            found = [entry for entry in self.snapshot() if where(entry)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                events = [entry.get("EVENT") for entry in self.snapshot()]
                raise AssertionError(f"no {count} matching journal entries; saw {events}")
            time.sleep(0.1)
