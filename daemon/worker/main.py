"""The worker process: spawned by the supervisor, it owns the engine and the GPU.

It loads one model, reports Loaded (or LoadFailed), then serves Jobs until
Shutdown or until its pipe closes. A sticky CUDA error poisons this process's
CUDA context, so after reporting it the worker exits with EXIT_CUDA_FATAL and
the supervisor starts a fresh one. Out of memory is handled in `jobs.py`:
free the cache, then retry the page smaller, a bounded number of times.

An engine that sends its pages to a server (concurrent_jobs > 1) is served
differently: the main thread only reads the pipe, and each Job runs on a
thread of its own, up to concurrent_jobs at once; the answers go back through
one locked end of the pipe. Shutdown lets the running jobs finish.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection

import structlog

from daemon import logs
from daemon.protocol import (
    EXIT_CUDA_FATAL,
    EXIT_LOAD_FAILED,
    EXIT_OK,
    EXIT_PROTOCOL,
    PINNING_VARIABLES,
    EngineInfo,
    Job,
    Loaded,
    LoadFailed,
    ServerRequest,
    Shutdown,
    WorkerConfig,
)
from daemon.worker import faults
from daemon.worker.engines import build_engine
from daemon.worker.engines.base import Engine, Runtime
from daemon.worker.jobs import FatalFault, Replies, run_job

log = structlog.get_logger("daemon.worker")

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def worker_main(config: WorkerConfig, conn: Connection) -> None:
    """Entry point of the spawned process (multiprocessing target)."""
    # First: CUDA reads CUDA_VISIBLE_DEVICES once, when torch initialises it.
    torch_was_loaded = _pin_to_device(config.environment)
    _die_with_parent()
    # Only the supervisor speaks to systemd (NotifyAccess=main ignores us anyway).
    os.environ.pop("NOTIFY_SOCKET", None)
    logs.configure(config.log_level, config.log_format, role=f"worker-{config.worker_id}")
    # Ctrl-C reaches the whole process group; the supervisor decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    structlog.contextvars.bind_contextvars(model=config.model_name, pid=os.getpid())
    if torch_was_loaded:
        log.error("worker.pinned_too_late", environment=config.environment)
    try:
        code = _serve(config, conn)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        code = EXIT_PROTOCOL  # the supervisor is gone: nothing left to serve
    conn.close()
    sys.stdout.flush()
    # os._exit: skip interpreter teardown, which can touch a broken CUDA
    # context and hang, and never run the parent's atexit handlers.
    os._exit(code)


def _pin_to_device(environment: dict[str, str]) -> bool:
    """Set the pinning variables the supervisor chose; True if torch was imported already
    (then CUDA may have read the old ones: a bug, logged once logging is set up)."""
    os.environ.update(environment)
    return bool(environment) and "torch" in sys.modules


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL us when the supervisor dies (even by kill -9).

    An orphaned worker would keep holding GPU memory and race a restarted
    daemon's fresh worker for it.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return  # not Linux: the pipe's EOF still ends an idle worker
    if os.getppid() == 1:
        os._exit(EXIT_PROTOCOL)  # the supervisor died before we got here


def _serve(config: WorkerConfig, conn: Connection) -> int:
    runtime = Runtime(
        device=config.device, threads=config.threads, allow_download=config.allow_download
    )
    replies = Replies(conn)
    started = time.monotonic()
    log.info("worker.loading", engine=config.model.engine)
    try:
        engine = build_engine(config.model_name, config.model, runtime)
        _report_requests(engine, replies)
        info = engine.load()
    except Exception as exc:
        fault = faults.describe(exc)
        if fault.kind not in ("cuda_fatal", "unavailable"):
            fault = dataclasses.replace(
                fault, kind="load_error", detail={**fault.detail, "cause": fault.kind}
            )
        log.error("worker.load_failed", fault=fault.kind, error=fault.message)
        replies.send(LoadFailed(fault))
        return EXIT_LOAD_FAILED
    load_seconds = time.monotonic() - started
    pinning = {name: os.environ[name] for name in PINNING_VARIABLES if name in os.environ}
    log.info(
        "worker.loaded",
        seconds=round(load_seconds, 3),
        placement=config.placement or config.device,
        **{name.lower(): value for name, value in pinning.items()},
        device=info.device,
        dtype=info.dtype,
        attention=info.attention,
        family=info.family,
    )
    capacity = engine.concurrent_jobs
    replies.send(
        Loaded(
            info=info,
            load_seconds=load_seconds,
            memory=engine.memory(),
            capacity=capacity,
            environment=pinning,
        )
    )
    if capacity > 1:
        return _serve_concurrently(config, engine, info, conn, replies)
    while True:
        message = conn.recv()
        if isinstance(message, Shutdown):
            log.info("worker.stopping", reason=message.reason)
            engine.close()
            return EXIT_OK
        if not isinstance(message, Job):
            log.error("worker.protocol_error", received=type(message).__name__)
            return EXIT_PROTOCOL
        try:
            run_job(config, engine, info, message, replies)
        except FatalFault:
            return EXIT_CUDA_FATAL


def _serve_concurrently(
    config: WorkerConfig, engine: Engine, info: EngineInfo, conn: Connection, replies: Replies
) -> int:
    """Up to concurrent_jobs files at once, each on its own thread; the pipe read here."""
    jobs = ThreadPoolExecutor(engine.concurrent_jobs, thread_name_prefix="job")
    try:
        while True:
            message = conn.recv()
            if isinstance(message, Shutdown):
                log.info("worker.stopping", reason=message.reason)
                jobs.shutdown(wait=True)  # the files in hand are finished first
                return EXIT_OK
            if not isinstance(message, Job):
                log.error("worker.protocol_error", received=type(message).__name__)
                return EXIT_PROTOCOL
            # No sticky device state here: a FatalFault cannot come from a server.
            jobs.submit(run_job, config, engine, info, message, replies)
    finally:
        jobs.shutdown(wait=False, cancel_futures=True)
        engine.close()


def _report_requests(engine: Engine, replies: Replies) -> None:
    """An engine that talks to a server reports each request's end, for the metrics."""

    def report(request: ServerRequest) -> None:
        # The supervisor gone: the job's own answer will fail too.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, EOFError, OSError):
            replies.send(request)

    engine.on_request = report
