"""A stand-in for journald's native socket: a real AF_UNIX datagram socket held by a test.

It decodes the native protocol independently of daemon.journald (NAME=value
lines, the length-prefixed binary form, and entries passed as a memfd), so a
test compares what the daemon sent against the protocol, not against itself.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

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


class JournalSocket:
    """Binds `path`, collects every entry sent to it on a thread, until closed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[Entry] = []
        self.passed_fds = 0  # entries that arrived as a memfd (too big for a datagram)
        self.errors: list[str] = []
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
                data, fds, _flags, _address = socket.recv_fds(self._socket, RECEIVE_BYTES, 4)
            except TimeoutError:
                continue
            except OSError:
                return
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
                continue
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

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._socket.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def __enter__(self) -> JournalSocket:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
