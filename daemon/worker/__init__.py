"""The worker side: everything here runs in a spawned child process."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from daemon.protocol import WorkerConfig


def run_worker(config: WorkerConfig, conn: Connection) -> None:
    """Spawn target. Kept in this light module so the supervisor can name it
    without importing the worker's heavy dependencies itself."""
    from daemon.worker.main import worker_main

    worker_main(config, conn)
