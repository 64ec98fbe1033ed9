"""One file in the worker: read it, render its pages, recognise them, answer.

A worker whose engine runs in-process takes one file at a time and gives its
pages to the engine in batches (`run_job`, on the worker's only thread). A
worker whose engine is a server takes many files at once, each on a thread of
its own (`daemon.worker.serving`): pages are rendered one after another under
DOCUMENT_LOCK (pdfium and Pillow's decoder switches are not thread-safe) and
handed to the engine's submit() as soon as they exist, so rendering runs
beside the requests in flight.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from multiprocessing.connection import Connection

import structlog

from daemon.documents.opening import BadInputError, Document, Page, open_document
from daemon.protocol import (
    DocumentResult,
    EngineInfo,
    Fault,
    FromWorker,
    GpuMemory,
    Job,
    JobDone,
    JobFailed,
    PageResult,
    PageText,
    Progress,
    WorkerConfig,
)
from daemon.searchable_pdf.assemble import PdfBuilder
from daemon.worker import faults
from daemon.worker.engines.base import Engine

log = structlog.get_logger("daemon.worker")

# One document is opened, rendered or closed at a time in this process.
DOCUMENT_LOCK = threading.Lock()
# While a page waits for a server, the supervisor hears from the file this often
# (its page deadline must not run out on a request the engine still bounds).
HEARTBEAT_SECONDS = 30.0


class FatalFault(Exception):
    """A sticky error was reported; the process must exit now."""


class Replies:
    """The worker's end of the pipe, shared by the threads of a concurrent worker."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()

    def send(self, message: FromWorker) -> None:
        with self._lock:
            self.conn.send(message)


@dataclass(frozen=True, slots=True)
class _Sent:
    """A page handed to a concurrent engine: what its result needs besides the text."""

    index: int
    width: int
    height: int
    scale: float
    notes: tuple[str, ...]
    started: float
    future: Future[PageText]


def run_job(
    config: WorkerConfig, engine: Engine, info: EngineInfo, job: Job, conn: Replies
) -> None:
    """Do one file and answer JobDone or JobFailed (FatalFault after a sticky CUDA error)."""
    sha256: str | None = None
    where = _Where()
    concurrent = engine.concurrent_jobs > 1
    try:
        opened = time.monotonic()
        data = _read_input(job.path, config.limits.max_file_bytes)
        size = len(data)
        sha256 = hashlib.sha256(data).hexdigest()
        engine.reset_peak()
        name = os.path.basename(job.path)
        engine.begin_job(name, job.prompt)
        with DOCUMENT_LOCK if concurrent else _NO_LOCK:
            document = open_document(data, config.limits, name=name).__enter__()
        try:
            # The searchable PDF is made from the input itself (its own pages,
            # or the image's bytes as they are), so only then are they kept.
            builder = (
                PdfBuilder(data, document.format, document.page_count, job.pdf)
                if job.pdf is not None
                else None
            )
            del data  # the document keeps what it needs; free the raw bytes early
            open_seconds = time.monotonic() - opened
            recognise = _recognize_concurrently if concurrent else _recognize_in_batches
            pages, inference = recognise(config, engine, job, document, builder, conn, where)
            searchable = None
            if builder is not None:
                # Placing the text layer is work too: the deadline starts afresh.
                conn.send(Progress(job.job_id, len(pages), document.pages_to_process))
                with DOCUMENT_LOCK if concurrent else _NO_LOCK:
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
        finally:
            with DOCUMENT_LOCK if concurrent else _NO_LOCK:
                document.__exit__(None, None, None)
        conn.send(JobDone(job.job_id, result))
    except BadInputError as exc:
        fault = faults.describe(exc, page=where.page)
        log.warning("worker.bad_input", path=job.path, code=exc.code, error=str(exc))
        conn.send(JobFailed(job.job_id, fault, fatal=False, sha256=sha256))
    except _InputUnreadable as exc:
        conn.send(JobFailed(job.job_id, exc.fault, fatal=False, sha256=None))
    except Exception as exc:
        fault = faults.describe(exc, page=where.page)
        fatal = fault.kind == "cuda_fatal"
        log.error(
            "worker.job_failed",
            path=job.path,
            fault=fault.kind,
            error=fault.message,
            page=where.page,
            fatal=fatal,
        )
        # After a sticky CUDA error even reading memory statistics can fail.
        memory = () if fatal else _safe_memory(engine)
        conn.send(JobFailed(job.job_id, fault, fatal=fatal, sha256=sha256, memory=memory))
        if fatal:
            raise FatalFault from exc


class _Where:
    """The page a job is at, for the fault's report."""

    page: int | None = None


_NO_LOCK = contextlib.nullcontext()


def _recognize_in_batches(
    config: WorkerConfig,
    engine: Engine,
    job: Job,
    document: Document,
    builder: PdfBuilder | None,
    conn: Replies,
    where: _Where,
) -> tuple[list[PageResult], float]:
    """The in-process way: batches of batch_size pages, one recognize() call each."""
    pages: list[PageResult] = []
    inference = 0.0
    for batch in _batches(document.pages(), engine.batch_size):
        where.page = batch[0].index
        conn.send(Progress(job.job_id, batch[0].index, document.pages_to_process))
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
    return pages, inference


def _recognize_concurrently(
    config: WorkerConfig,
    engine: Engine,
    job: Job,
    document: Document,
    builder: PdfBuilder | None,
    conn: Replies,
    where: _Where,
) -> tuple[list[PageResult], float]:
    """The server's way: every page submitted as soon as it is rendered, answers collected after.

    `inference` is the wall time from the first page sent to the last answer:
    the pages overlap, so per-page seconds are each page's own request time.
    """
    sent: list[_Sent] = []
    iterator = document.pages()
    began = time.monotonic()
    try:
        while True:
            with DOCUMENT_LOCK:
                page = next(iterator, None)
            if page is None:
                break
            where.page = page.index
            conn.send(Progress(job.job_id, page.index, document.pages_to_process))
            if builder is not None and builder.needs_pages:
                builder.keep_page(page)
            future = engine.submit(page.image, job.prompt)
            sent.append(
                _Sent(
                    page.index,
                    page.image.width,
                    page.image.height,
                    page.scale,
                    page.notes,
                    time.monotonic(),
                    future,
                )
            )
            del page  # only the request holds the image now
        pages = []
        for item in sent:
            where.page = item.index
            text = _wait(item.future, job, item.index, document.pages_to_process, conn)
            pages.append(
                PageResult(
                    index=item.index,
                    width=item.width,
                    height=item.height,
                    text=text,
                    seconds=float(text.details.get("request_seconds", 0.0)),
                    scale=item.scale,
                    notes=item.notes,
                )
            )
    except BaseException:
        for item in sent:
            item.future.cancel()  # pages not yet sent are not worth sending
        raise
    return pages, time.monotonic() - began


def _wait(future: Future[PageText], job: Job, index: int, count: int, conn: Replies) -> PageText:
    """A page's answer; the supervisor hears from this file while it waits."""
    while True:
        try:
            return future.result(timeout=HEARTBEAT_SECONDS)
        except FutureTimeout:
            conn.send(Progress(job.job_id, index, count))


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
