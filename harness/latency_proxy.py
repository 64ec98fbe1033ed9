"""A TCP proxy that delays every byte by a fixed time each way: a network's latency on one machine.

The postgres benchmark part puts it between the daemons and a local
PostgreSQL, so the shared journal's cost can be seen "across a network"
without a second machine. Each direction of each connection has a reader that
stamps every chunk with the moment it arrived and a sender that passes it on
once that moment plus the delay has come: every chunk is late by the delay
(a round trip by twice it), chunks in flight overlap as on a real link, so the
proxy adds latency without limiting throughput, and order is kept. It runs an
asyncio loop on a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType
from typing import Any


class LatencyProxy:
    """Listens on 127.0.0.1:`port` (a free one) and forwards to `target_port`, `delay_seconds` late each way."""

    def __init__(
        self, target_port: int, delay_seconds: float, target_host: str = "127.0.0.1"
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.delay = delay_seconds
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    def start(self) -> LatencyProxy:
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="latency-proxy", daemon=True
        )
        self._thread.start()
        if not ready.wait(10) or not self.port:
            raise RuntimeError("the latency proxy did not start listening")
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._thread = None

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def url(self, url: str) -> str:
        """`url` (to the target's port) made to go through the proxy."""
        direct = f"{self.target_host}:{self.target_port}"
        if direct not in url:
            raise ValueError(f"{url!r} does not name {direct}")
        return url.replace(direct, f"127.0.0.1:{self.port}", 1)

    # --- on the proxy's thread ------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accepted, "127.0.0.1", 0)
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        ready.set()
        self._loop.run_forever()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(
                    self.target_host, self.target_port
                )
            except OSError:
                return
            try:
                await asyncio.gather(
                    self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
                )
            except asyncio.CancelledError:
                # The proxy stops: asyncio's stream callback would log a
                # cancelled handler as an error, where this is the plan.
                return
            finally:
                upstream_writer.close()
        finally:
            writer.close()
            self._connections.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Pass one direction's bytes on, each chunk `delay` after it arrived; then its end."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    with contextlib.suppress(OSError, RuntimeError):
                        writer.write_eof()  # the other side closed: say so, as late
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(send())
        try:
            while True:
                try:
                    data = await reader.read(65536)
                except OSError:
                    data = b""
                queue.put_nowait((loop.time() + self.delay, data))
                if not data:
                    break
            with contextlib.suppress(OSError):
                await sender
        finally:
            sender.cancel()
