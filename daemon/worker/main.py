"""The worker process: spawned by the supervisor, it owns the engine and the GPU.

It loads one model, reports Loaded (or LoadFailed), then serves Jobs until
Shutdown or until its pipe closes. A sticky CUDA error poisons this process's
CUDA context, so after reporting it the worker exits with EXIT_CUDA_FATAL and
the supervisor starts a fresh one. Out of memory is handled here: free the
cache, then retry the page smaller, a bounded number of times.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import hashlib
import os
import signal
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from multiprocessing.connection import Connection

import structlog

from daemon import logs
from daemon.documents.opening import BadInputError, Page, open_document
from daemon.protocol import (
    EXIT_CUDA_FATAL,
    EXIT_LOAD_FAILED,
    EXIT_OK,
    EXIT_PROTOCOL,
    DocumentResult,
    EngineInfo,
    Fault,
    GpuMemory,
    Job,
    JobDone,
    JobFailed,
    Loaded,
    LoadFailed,
    PageResult,
    PageText,
    Progress,
    Shutdown,
    WorkerConfig,
)
from daemon.searchable_pdf.assemble import PdfBuilder
from daemon.worker import faults
from daemon.worker.engines import build_engine
from daemon.worker.engines.base import Engine, Runtime

log = structlog.get_logger("daemon.worker")

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class _FatalFault(Exception):
    """Internal: a sticky error was reported; the process must exit now."""


def worker_main(config: WorkerConfig, conn: Connection) -> None:
    """Entry point of the spawned process (multiprocessing target)."""
    _die_with_parent()
    # Only the supervisor speaks to systemd (NotifyAccess=main ignores us anyway).
    os.environ.pop("NOTIFY_SOCKET", None)
    logs.configure(config.log_level, config.log_format, role=f"worker-{config.worker_id}")
    # Ctrl-C reaches the whole process group; the supervisor decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    structlog.contextvars.bind_contextvars(model=config.model_name, pid=os.getpid())
    try:
        code = _serve(config, conn)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        code = EXIT_PROTOCOL  # the supervisor is gone: nothing left to serve
    conn.close()
    sys.stdout.flush()
    # os._exit: skip interpreter teardown, which can touch a broken CUDA
    # context and hang, and never run the parent's atexit handlers.
    os._exit(code)


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
    started = time.monotonic()
    log.info("worker.loading", engine=config.model.engine)
    try:
        engine = build_engine(config.model_name, config.model, runtime)
        info = engine.load()
    except Exception as exc:
        fault = faults.describe(exc)
        if fault.kind != "cuda_fatal":
            fault = dataclasses.replace(
                fault, kind="load_error", detail={**fault.detail, "cause": fault.kind}
            )
        log.error("worker.load_failed", fault=fault.kind, error=fault.message)
        conn.send(LoadFailed(fault))
        return EXIT_LOAD_FAILED
    load_seconds = time.monotonic() - started
    log.info(
        "worker.loaded",
        seconds=round(load_seconds, 3),
        device=info.device,
        dtype=info.dtype,
        attention=info.attention,
        family=info.family,
    )
    conn.send(Loaded(info=info, load_seconds=load_seconds, memory=engine.memory()))

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
            _run_job(config, engine, info, message, conn)
        except _FatalFault:
            return EXIT_CUDA_FATAL


def _run_job(
    config: WorkerConfig, engine: Engine, info: EngineInfo, job: Job, conn: Connection
) -> None:
    sha256: str | None = None
    page_index: int | None = None
    try:
        opened = time.monotonic()
        data = _read_input(job.path, config.limits.max_file_bytes)
        size = len(data)
        sha256 = hashlib.sha256(data).hexdigest()
        engine.reset_peak()
        name = os.path.basename(job.path)
        engine.begin_job(name, job.prompt)
        with open_document(data, config.limits, name=name) as document:
            # The searchable PDF is made from the input itself (its own pages,
            # or the image's bytes as they are), so only then are they kept.
            builder = (
                PdfBuilder(data, document.format, document.page_count, job.pdf)
                if job.pdf is not None
                else None
            )
            del data  # the document keeps what it needs; free the raw bytes early
            open_seconds = time.monotonic() - opened
            pages: list[PageResult] = []
            inference = 0.0
            for batch in _batches(document.pages(), engine.batch_size):
                page_index = batch[0].index
                conn.send(Progress(job.job_id, page_index, document.pages_to_process))
                started = time.monotonic()
                texts, scales, notes = _recognize_with_oom_retry(config, engine, batch)
                elapsed = time.monotonic() - started
                inference += elapsed
                if builder is not None and builder.needs_pages:
                    for page in batch:
                        builder.keep_page(page)
                for page, text, scale, note in zip(batch, texts, scales, notes, strict=True):
                    pages.append(
                        PageResult(
                            index=page.index,
                            width=page.image.width,
                            height=page.image.height,
                            text=text,
                            seconds=elapsed / len(batch),
                            scale=page.scale * scale,
                            notes=(*page.notes, *note),
                        )
                    )
            searchable = None
            if builder is not None:
                # Placing the text layer is work too: the deadline starts afresh.
                conn.send(Progress(job.job_id, len(pages), document.pages_to_process))
                searchable = builder.finish(pages)
            result = DocumentResult(
                sha256=sha256,
                size=size,
                format=document.format,
                page_count=document.page_count,
                pages=tuple(pages),
                open_seconds=open_seconds,
                inference_seconds=inference,
                engine=info,
                memory=engine.memory(),
                notes=document.notes,
                pdf=searchable,
            )
        conn.send(JobDone(job.job_id, result))
    except BadInputError as exc:
        fault = faults.describe(exc, page=page_index)
        log.warning("worker.bad_input", path=job.path, code=exc.code, error=str(exc))
        conn.send(JobFailed(job.job_id, fault, fatal=False, sha256=sha256))
    except _InputUnreadable as exc:
        conn.send(JobFailed(job.job_id, exc.fault, fatal=False, sha256=None))
    except Exception as exc:
        fault = faults.describe(exc, page=page_index)
        fatal = fault.kind == "cuda_fatal"
        log.error(
            "worker.job_failed",
            path=job.path,
            fault=fault.kind,
            error=fault.message,
            page=page_index,
            fatal=fatal,
        )
        # After a sticky CUDA error even reading memory statistics can fail.
        memory = () if fatal else _safe_memory(engine)
        conn.send(JobFailed(job.job_id, fault, fatal=fatal, sha256=sha256, memory=memory))
        if fatal:
            raise _FatalFault from exc


class _InputUnreadable(Exception):
    """The input could not be opened for reading (gone, or no permission)."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.message)
        self.fault = fault


def _read_input(path: str, max_bytes: int) -> bytes:
    """Read the whole input once: the hash and the pages come from the same bytes."""
    try:
        # O_NOFOLLOW: the supervisor checked the path; a link swapped in since is refused.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError as error:
        fault = Fault(
            kind="bad_input",
            message="the file vanished before it was read",
            detail={"code": "vanished"},
        )
        raise _InputUnreadable(fault) from error
    except OSError as error:
        code = "permission_denied" if error.errno in (errno.EACCES, errno.EPERM) else "unreadable"
        fault = Fault(
            kind="bad_input",
            message=f"cannot read the file: {error.strerror}",
            detail={"code": code},
        )
        raise _InputUnreadable(fault) from error
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise BadInputError(
            "too_large", f"the file is larger than limits.max_file_bytes ({max_bytes} bytes)"
        )
    return data


def _batches(pages: Iterable[Page], size: int) -> Iterator[list[Page]]:
    batch: list[Page] = []
    for page in pages:
        batch.append(page)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _recognize_with_oom_retry(
    config: WorkerConfig, engine: Engine, batch: Sequence[Page]
) -> tuple[list[PageText], list[float], list[tuple[str, ...]]]:
    """Recognise a batch; on out-of-memory, split the batch, then shrink each page."""
    try:
        texts = engine.recognize([page.image for page in batch])
        return texts, [1.0] * len(batch), [()] * len(batch)
    except Exception as exc:
        if not faults.is_oom(exc) or (len(batch) == 1 and config.oom_retries == 0):
            raise
        log.warning("worker.oom", pages=len(batch), error=str(exc)[:300])
        engine.free_memory()
    texts = []
    scales: list[float] = []
    notes: list[tuple[str, ...]] = []
    for page in batch:
        text, scale = _recognize_shrinking(config, engine, page, first_try_done=len(batch) == 1)
        texts.append(text)
        scales.append(scale)
        notes.append(
            (f"out of memory: recognised at {scale:.2f} of the page size",) if scale < 1 else ()
        )
    return texts, scales, notes


def _recognize_shrinking(
    config: WorkerConfig, engine: Engine, page: Page, *, first_try_done: bool
) -> tuple[PageText, float]:
    """One page, smaller by oom_scale after each out-of-memory error, oom_retries times."""
    scale = config.oom_scale if first_try_done else 1.0
    attempt = 1 if first_try_done else 0
    while True:
        image = page.image
        if scale < 1.0:
            size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
            log.warning("worker.oom_retry", page=page.index, attempt=attempt, size=size)
            image = image.resize(size)
        try:
            return engine.recognize([image])[0], scale
        except Exception as exc:
            if not faults.is_oom(exc) or attempt >= config.oom_retries:
                raise
            engine.free_memory()
            attempt += 1
            scale *= config.oom_scale


def _safe_memory(engine: Engine) -> tuple[GpuMemory, ...]:
    try:
        return engine.memory()
    except Exception:
        return ()
