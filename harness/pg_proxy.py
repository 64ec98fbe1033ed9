"""A TCP proxy in front of PostgreSQL that can lose one reply: a link that breaks after a COMMIT landed.

The stand-in for the one fault shape a real server cannot produce on command:
the client's COMMIT reaches the server and is carried out, and the
connection breaks before the answer gets back, so the client cannot tell
whether its transaction happened. Everything else is the real server.

The proxy forwards bytes both ways, one pair of threads per connection.
`lose_reply_after(marker)` arms it once: on the first connection whose client
then sends a message containing `marker`, the next COMMIT is forwarded, the
server's answer is read (the COMMIT is done by then) and thrown away, and
both sockets are closed. Connections before and after pass untouched. The
URL must not use SSL (the proxy reads the messages): `url` adds sslmode=disable.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit, urlunsplit

_COMMIT_QUERY = b"COMMIT"
_COMMIT_DONE = b"COMMIT\x00"  # the server's CommandComplete tag for it


class LossyProxy:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        netloc = parts.netloc.rsplit(":", 1)[0] + f":{self.port}"
        separator = "&" if parts.query else ""
        query = f"{parts.query}{separator}sslmode=disable"
        self.url = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
        self._lock = threading.Lock()
        self._marker: bytes | None = None
        self.replies_lost = 0  # answers to a COMMIT thrown away so far
        self._stopping = False
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="pg-proxy", daemon=True)
        self._thread.start()

    def lose_reply_after(self, marker: bytes) -> None:
        """Drop the answer to the COMMIT that follows the next statement containing `marker`."""
        with self._lock:
            self._marker = marker

    def stop(self) -> None:
        self._stopping = True
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            self._sockets += [client, server]
            link = _Link(self, client, server)
            threading.Thread(target=link.client_to_server, daemon=True).start()
            threading.Thread(target=link.server_to_client, daemon=True).start()

    def count_lost_reply(self) -> None:
        with self._lock:
            self.replies_lost += 1

    def armed_for(self, data: bytes) -> bool:
        """True (once) when `data` holds the marker: this connection's next COMMIT loses its reply."""
        with self._lock:
            if self._marker is None or self._marker not in data:
                return False
            self._marker = None
            return True


class _Link:
    def __init__(self, proxy: LossyProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.saw_marker = False
        self.cutting = threading.Event()

    def client_to_server(self) -> None:
        try:
            while data := self.client.recv(65536):
                if not self.saw_marker:
                    self.saw_marker = self.proxy.armed_for(data)
                elif _COMMIT_QUERY in data:
                    self.cutting.set()  # before the COMMIT leaves: its answer must not get back
                self.server.sendall(data)
        except OSError:
            pass
        self._close()

    def server_to_client(self) -> None:
        answer = b""
        try:
            while data := self.server.recv(65536):
                if not self.cutting.is_set():
                    self.client.sendall(data)
                    continue
                answer += data
                if _COMMIT_DONE in answer:  # committed on the server; the client never hears it
                    self.proxy.count_lost_reply()
                    break
        except OSError:
            pass
        self._close()

    def _close(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
