"""A small OpenAI-compatible HTTP server that answers as it is told: for the faults a
real inference server cannot be made to produce on command.

Each chat-completions request takes the next step of `plan` (a list of
`Reply`), or `default` when the plan is used up: an answer after a fixed
delay, a status with a Retry-After, a garbled or truncated body, an empty or
looping answer, a hang. `GET /v1/models` lists the served model; `stop()`
closes the port (connection refused) and `start()` opens the same port again.
It counts requests and the most it had in flight at once, which the remote
benchmark and the concurrency tests read. Threads, stdlib only: it runs in the
test's (or the benchmark's) process while the daemon's worker connects to it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """What to do with one request."""

    kind: str = "ok"  # ok | status | garbled | truncated | empty | loop | hang
    text: str = "Hello from the server."
    delay: float = 0.0  # seconds before answering
    status: int = 200  # for kind == "status"
    retry_after: str | None = None
    message: str = "injected failure"
    finish_reason: str = "stop"


@dataclass
class Seen:
    """What the server saw of one chat request."""

    payload: dict[str, Any]
    headers: dict[str, str]
    began: float  # wall time (time.time), comparable with log records
    ended: float = 0.0


class FakeServer:
    def __init__(self, served_model: str = "fake/Qwen2-VL-OCR", port: int = 0) -> None:
        self.served_model = served_model
        self.default = Reply()
        self.plan: list[Reply] = []
        self.models_status = 200
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._release = threading.Event()  # ends every "hang"
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = port or _free_port()

    # --- lifetime ----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeServer:
        handler = _handler(self)
        server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        server.daemon_threads = True
        server.request_queue_size = 256
        self._server = server
        self._release.clear()
        self._thread = threading.Thread(
            target=server.serve_forever, name="fake-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port: new connections are refused; hung requests end."""
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        # Kept-alive connections too: a server that went down answers nothing.
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what it does ---------------------------------------------------------------

    def then(self, *replies: Reply) -> FakeServer:
        """Answer the next requests like this, in order."""
        with self._lock:
            self.plan.extend(replies)
        return self

    def _next(self) -> Reply:
        with self._lock:
            return self.plan.pop(0) if self.plan else self.default

    @property
    def requests(self) -> int:
        return len(self.seen)

    def _enter(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self, seen: Seen) -> None:
        with self._lock:
            self.in_flight -= 1
            seen.ended = time.time()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def completion(reply: Reply, model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": max(1, len(text.split())),
            "total_tokens": 100 + max(1, len(text.split())),
        },
    }


def _handler(fake: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with fake._lock:
                fake._connections.add(self.connection)

        def finish(self) -> None:
            with fake._lock:
                fake._connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the tests read what they need from `seen`

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                body = {"object": "list", "data": [{"id": fake.served_model, "object": "model"}]}
                self._send(fake.models_status, body)
            elif self.path == "/health":
                self._send(200, {})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            raw = self.rfile.read(length)
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            seen = Seen(json.loads(raw), dict(self.headers.items()), time.time())
            fake._enter(seen)
            try:
                self._answer(fake._next(), seen)
            finally:
                fake._leave(seen)

        def _answer(self, reply: Reply, seen: Seen) -> None:
            if reply.delay:
                fake._release.wait(reply.delay)
            kind = reply.kind
            if kind == "hang":
                fake._release.wait(3600)
                self.close_connection = True
                return
            if kind == "status":
                headers = {"Retry-After": reply.retry_after} if reply.retry_after else {}
                self._send(reply.status, {"error": {"message": reply.message}}, headers)
                return
            if kind == "garbled":
                self._raw(200, b"<html>502 Bad Gateway</html>", "text/html")
                return
            if kind == "truncated":
                body = json.dumps(completion(reply, fake.served_model, reply.text)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            text = reply.text
            if kind == "empty":
                text = ""
            elif kind == "loop":
                text = "Total " + "the same line again " * 200
            self._send(200, completion(reply, fake.served_model, text))

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self._raw(status, data, "application/json", headers)

        def _raw(
            self, status: int, data: bytes, kind: str, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


__all__ = ["FakeServer", "Reply", "Seen", "completion"]
