"""A real AF_UNIX datagram socket held by a test, receiving on a thread of its own.

What systemd holds for a service: the notify socket and journald's native
socket are both of this kind. Subclasses say what a datagram means.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path
from typing import Self

import pytest


def socket_path(folder: Path, name: str) -> Path:
    """folder / name, or skip: AF_UNIX paths are limited to 107 bytes and tmp_path can be long."""
    path = folder / name
    if len(os.fsencode(path)) > 100:
        pytest.skip("temporary directory path too long for an AF_UNIX socket")
    return path


class DatagramListener:
    """Binds `path` and passes every datagram (and any file descriptors with it) to handle()."""

    def __init__(self, path: Path, *, size: int = 65536, max_fds: int = 0) -> None:
        self.path = path
        self._size = size
        self._max_fds = max_fds
        self._lock = threading.Lock()
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        self._socket.settimeout(0.2)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def handle(self, data: bytes, fds: list[int]) -> None:
        raise NotImplementedError

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                if self._max_fds:
                    data, fds, _flags, _address = socket.recv_fds(
                        self._socket, self._size, self._max_fds
                    )
                else:
                    data, fds = self._socket.recv(self._size), []
            except TimeoutError:
                continue
            except OSError:
                return
            self.handle(data, fds)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._socket.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
