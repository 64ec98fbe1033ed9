"""A real HTTP server that receives completion webhooks, and can be down, failing or slow on command.

`close()` stops listening, so connections are refused (the port is kept for
`listen()` again); `status` is what it answers; `hold()` makes it keep each
request unanswered until `release()`. Every request it read is recorded.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOLD_LIMIT_SECONDS = 120.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int  # what the receiver answered


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class WebhookReceiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.status = 200
        self.retry_after: str | None = None
        self.requests: list[Received] = []
        self.arrived = 0  # requests read, answered or not (a held one counts)
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._released.set()
        self._server: ThreadingHTTPServer | None = None

    def url(self, credentials: str = "", path: str = "/hook") -> str:
        at = f"{credentials}@" if credentials else ""
        return f"http://{at}127.0.0.1:{self.port}{path}"

    def listen(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with receiver._lock:
                    receiver.arrived += 1
                receiver._released.wait(HOLD_LIMIT_SECONDS)
                status, retry_after = receiver.status, receiver.retry_after
                with receiver._lock:
                    receiver.requests.append(
                        Received(self.path, dict(self.headers.items()), body, status)
                    )
                self.send_response(status)
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the test reads `requests`

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server

    def close(self) -> None:
        """Stop listening: from now on connections to the port are refused."""
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def wait_for(
        self, count: int, *, status: int | None = None, timeout: float = 90.0
    ) -> list[Received]:
        """Wait until `count` requests (answered `status`, if given) were recorded."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.received() if status is None or r.status == status]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"saw {len(found)} of {count} webhook requests: {found}")
            time.sleep(0.05)
