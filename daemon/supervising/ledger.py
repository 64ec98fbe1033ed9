"""The ledger: every change in what the daemon knows of a file, recorded everywhere it must be.

This is the one module that writes the journal (daemon.journal.interface),
with daemon.supervising.announcing for the webhook outbox: admitted,
reopened, claimed, attempted, trail, done, failed, forgotten. Each
method records one step in the journal and, where the step has them, in the
outputs (daemon.outputs), the metrics and the log. The flow of files
(daemon.supervising.file_flow) decides which step applies; this module
records it and decides nothing about what happens next.

Writes made for a claimed file raise ClaimLost when the daemon no longer
holds the claim (a shared journal gave the file to another daemon); an output
is renamed into place only after the journal confirmed the claim (fence).
An outcome is marked with its webhook, in one transaction, by the announcer's `finish`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from daemon.journal.interface import Admission, FileKey, Journal, State
from daemon.observing.metrics import Metrics
from daemon.outputs import content
from daemon.outputs.writing import (
    OutputError,
    read_owned_json,
    write_failure,
    write_success,
    writer_tag,
)
from daemon.protocol import DocumentResult, Fault
from daemon.supervising.announcing import Announcer, where_they_end
from daemon.supervising.unwritten import Unwritten, UnwrittenSidecars
from daemon.tasks import FileTask
from daemon.webhooks.events import Outcome, outputs_on_disk
from daemon.webhooks.sender import WebhookSender

log = structlog.get_logger(__name__)


class Ledger:
    def __init__(
        self,
        journal: Journal,
        metrics: Metrics,
        clock: Callable[[], float],
        indent: int | None,
        retry_seconds: float = 30.0,
        *,
        keep_final: bool = False,
        webhooks: WebhookSender | None = None,
        webhook_url: Callable[[str], str | None] = lambda inbox: None,
    ) -> None:
        self.journal = journal
        # Temp files carry this mark, so daemons sharing a folder know whose they are.
        self.writer = writer_tag(journal.node)
        self.metrics = metrics
        self.clock = clock
        self.indent = indent
        self.retry_seconds = retry_seconds
        # path -> done | failed | vanished | skipped, for `once`'s exit code. A
        # daemon keeps none: it would grow by every file it ever finished.
        self.final: dict[Path, str] = {}
        self._keep_final = keep_final
        self._unwritten = UnwrittenSidecars()
        self.announcer = Announcer(journal, webhooks, webhook_url)

    # --- seeing a file --------------------------------------------------------

    def admit(self, key: FileKey, size: int, mtime_ns: int, sha256: str) -> Admission:
        return self.journal.admit(key, size, mtime_ns, sha256)

    def trail(self, key: FileKey) -> list[dict[str, Any]]:
        """The models this content already left (after a restart), from the journal."""
        entry = self.journal.get(key)
        return list(entry.trail) if entry is not None else []

    def redo(self, path: Path, key: FileKey) -> None:
        """The journal says final but our outputs are gone: do the file again."""
        log.info("file.redo", file=str(path), reason="its outputs were removed")
        self.journal.reopen(key)

    def found_on_disk(self, task: FileTask, outcome: Outcome, *, announce: bool = False) -> bool:
        """Our outputs already record this content (the journal missed it): note that, if ours to note.

        `announce` when the journal had the file pending: a crash came after its
        outputs, before its outcome and webhook were stored, so it is announced
        now (same key; model and seconds are not known any more).
        """
        key, sha256 = task.key, task.sha256
        if not self.journal.claim(key):
            return False
        event = None
        if announce:
            outputs = outputs_on_disk(task.outputs, outcome)
            event = self.announcer.event(task.path, key, outcome, sha256, outputs, None, None)
        note = "recorded in its error sidecar"
        self.announcer.finish(key, outcome, sha256, task.size, task.mtime_ns, event, note)
        return True

    def skipped(self, task: FileTask, outcome: str) -> None:
        log.info(
            "file.skipped",
            file=str(task.path),
            inbox=task.inbox_name,
            reason="outputs exist for this content",
        )
        self.metrics.files.labels(inbox=task.inbox_name, outcome="skipped").inc()
        self.record_final(task.path, outcome)

    # --- working on it -----------------------------------------------------------

    def claim(self, task: FileTask) -> bool:
        """Hold the file's claim before working on it; False when another daemon has it."""
        if not task.claimed:
            task.claimed = self.journal.claim(task.key)
            if not task.claimed:
                log.info("file.claimed_elsewhere", file=str(task.path))
        return task.claimed

    def let_go(self, task: FileTask) -> None:
        """The daemon lets go of the file: give up its claim if it still holds one."""
        if task.claimed:
            task.claimed = False
            self.journal.release(task.key)

    def attempt_failed(self, task: FileTask, model: str) -> int:
        """A worker died on this file: the count of such deaths on `model`, this one included."""
        return self.journal.record_attempt(task.key, model)

    def left_model(self, task: FileTask) -> None:
        """The file moved on from a model: keep its trail for a restart."""
        self.journal.record_trail(task.key, task.trail)

    def recognised(self, result: DocumentResult, model: str) -> None:
        """Count the work a worker did, whether or not its outputs can be written yet."""
        self.metrics.pages.labels(model=model).inc(len(result.pages))
        tokens = sum(page.text.tokens or 0 for page in result.pages)
        if tokens:
            self.metrics.generated_tokens.labels(model=model).inc(tokens)
        for page in result.pages:
            self.metrics.page_inference_seconds.labels(model=model).observe(page.seconds)
        if any("out of memory" in note for page in result.pages for note in page.notes):
            # Recovered in the worker by a smaller retry: still an OOM worth seeing.
            self.metrics.cuda_errors.labels(kind="oom").inc()
        self.metrics.record_memory(result.memory)

    # --- outcomes ------------------------------------------------------------------

    def done(self, task: FileTask, result: DocumentResult, model: str) -> OutputError | None:
        """Write the pair of outputs and record the file done; the error if they cannot be written."""
        now = self.clock()
        queue_seconds = (task.dispatched_at or now) - task.queued_at
        timings = {
            "queue_seconds": queue_seconds,
            "open_seconds": result.open_seconds,
            "inference_seconds": result.inference_seconds,
            "total_seconds": now - task.admitted_at,
        }
        if task.settle_seconds is not None:
            timings["settle_seconds"] = task.settle_seconds
        key = task.key
        entry = self.journal.get(key)
        known = entry.output_hashes if entry is not None else ()
        started = time.monotonic()
        files = content.output_files(task, result)
        try:
            paths = write_success(
                task.path,
                files,
                content.success(task, result, model, timings, node=self.journal.node),
                known_hashes=known,
                before_commit=lambda hashes: self.journal.note_outputs(key, hashes),
                indent=self.indent,
                paths=task.outputs,
                writer=self.writer,
            )
        except OutputError as error:
            self.output_error(error)
            return error
        write_seconds = time.monotonic() - started
        # A file that changed under us is recorded for what was read; an
        # impossible size keeps its new content from looking finished.
        changed = result.sha256 != task.sha256
        size, mtime = (-1, -1) if changed else (task.size, task.mtime_ns)
        total = self.clock() - task.admitted_at
        outputs = {format: paths.of(format) for format in ("json", *files)}
        path, outputs = where_they_end(task, outputs)
        event = self.announcer.event(path, key, "done", result.sha256, outputs, model, total)
        self.announcer.finish(key, "done", result.sha256, size, mtime, event)
        self.metrics.files.labels(inbox=task.inbox_name, outcome="done").inc()
        self.metrics.file_seconds.labels(outcome="done").observe(total)
        self.metrics.last_success.set(time.time())
        self.record_final(task.path, "done")
        log.info(
            "file.done",
            file=str(task.path),
            inbox=task.inbox_name,
            outcome="done",
            model=model,
            engine=result.engine.engine,
            pages=len(result.pages),
            formats=list(task.formats),
            seconds=round(total, 3),
            queue_seconds=round(queue_seconds, 3),
            inference_seconds=round(result.inference_seconds, 3),
            write_seconds=round(write_seconds, 4),
            settle_seconds=None if task.settle_seconds is None else round(task.settle_seconds, 3),
            fallbacks=len(task.trail),
        )
        return None

    def failed(
        self, task: FileTask, fault: Fault, sha256: str | None, model: str | None, summary: str
    ) -> None:
        """Write the error sidecar and quarantine this content (not retried until it changes)."""
        sha = sha256 or task.sha256
        key = task.key
        payload = content.failure(
            task, fault, sha256=sha, model_name=model, summary=summary, node=self.journal.node
        )
        entry = self.journal.get(key)
        try:
            write_failure(
                task.path,
                payload,
                known_hashes=entry.output_hashes if entry is not None else (),
                before_commit=lambda: self.journal.fence(key),
                indent=self.indent,
                paths=task.outputs,
                writer=self.writer,
            )
        except OutputError as error:
            self.output_error(error)
            if error.reason != "not_ours":
                later = Unwritten(task.path, key, sha, payload, task.outputs)
                self._unwritten.hold(later, self.clock() + self.retry_seconds)
        total = self.clock() - task.admitted_at
        path, sidecar = where_they_end(task, outputs_on_disk(task.outputs, "failed"))
        event = self.announcer.event(
            path, key, "failed", sha, sidecar, model, total, payload["error"]
        )
        self.announcer.finish(
            key, "failed", sha, task.size, task.mtime_ns, event, fault.message[:1000]
        )
        self.metrics.files.labels(inbox=task.inbox_name, outcome="failed").inc()
        self.metrics.file_seconds.labels(outcome="failed").observe(total)
        self.record_final(task.path, "failed")
        log.error(
            "file.failed",
            file=str(task.path),
            inbox=task.inbox_name,
            outcome="failed",
            reason=fault.kind,
            code=fault.detail.get("code"),
            error=fault.message[:500],
            model=model,
            seconds=round(total, 3),
            tried=[step["model"] for step in task.trail],
        )

    def retry_sidecars(self, now: float) -> None:
        """Write the error sidecars that failed for want of space or permission, if still due.

        The journal already says failed (the file is not processed again); only
        the sidecar is missing. One whose file has changed or gone since is dropped.
        """
        for sidecar in self._unwritten.take_due(now):
            path, payload = sidecar.path, sidecar.payload
            entry = self.journal.get(sidecar.key)
            if entry is None or entry.state != State.FAILED or entry.sha256 != sidecar.sha256:
                continue
            try:
                write_failure(
                    path, payload, indent=self.indent, paths=sidecar.paths, writer=self.writer
                )
            except OutputError as error:
                self.output_error(error)
                if error.reason != "not_ours":
                    self._unwritten.hold(sidecar, now + self.retry_seconds)
                continue
            log.info("file.error_written", file=str(path), code=payload["error"]["code"])

    def blocked(self, task: FileTask, error: OutputError) -> None:
        """An output path is taken by a file we did not write: give up on this content."""
        log.error(
            "file.failed",
            file=str(task.path),
            inbox=task.inbox_name,
            outcome="failed",
            reason="output_in_the_way",
            error=str(error),
        )
        problem = {"kind": "output_in_the_way", "code": "output_in_the_way", "message": str(error)}
        seconds = self.clock() - task.admitted_at
        key, sha256 = task.key, task.sha256
        event = self.announcer.event(task.path, key, "failed", sha256, {}, None, seconds, problem)
        self.announcer.finish(key, "failed", sha256, task.size, task.mtime_ns, event, str(error))
        self.metrics.files.labels(inbox=task.inbox_name, outcome="failed").inc()
        self.record_final(task.path, "failed")

    def refused_name(self, path: Path, inbox: str, code: str, message: str) -> None:
        """No output can be named after this file (too long, not UTF-8): say so, write nothing.

        Not journaled (a name that is not UTF-8 cannot be stored): the watcher
        hands the file on once per daemon start, so this is logged once per start.
        """
        log.error(
            "file.failed",
            file=str(path),
            inbox=inbox,
            outcome="failed",
            reason=code,
            code=code,
            error=message,
        )
        self.metrics.output_errors.labels(reason=code).inc()
        self.metrics.files.labels(inbox=inbox, outcome="failed").inc()
        self.record_final(path, "failed")

    def vanished(self, path: Path, key: FileKey, when: str) -> None:
        """The file is gone before it had an outcome: it leaves the journal."""
        log.info("file.vanished", file=str(path), inbox=key.inbox, when=when)
        self.journal.forget(key)
        self.metrics.files.labels(inbox=key.inbox, outcome="vanished").inc()
        self.record_final(path, "vanished")

    def dropped(self, task: FileTask, reason: str) -> None:
        """The path is no longer a file we can read as one: forget it without an outcome."""
        log.warning("file.dropped", file=str(task.path), reason=reason)
        self.journal.forget(task.key)

    def unreadable(self, task: FileTask, message: str) -> None:
        """No permission to read (or an I/O error): a sidecar once; rescans try again."""
        existing = read_owned_json(task.outputs.error)
        if existing is not None and existing.get("error", {}).get("code") == "unreadable":
            return
        fault = Fault(
            kind="bad_input",
            message=f"cannot read the file: {message}",
            detail={"code": "unreadable"},
        )
        summary = "the file could not be read; it is tried again on the next rescan"
        try:
            write_failure(
                task.path,
                content.failure(task, fault, sha256="", model_name=None, summary=summary),
                indent=self.indent,
                paths=task.outputs,
                writer=self.writer,
            )
        except OutputError as error:
            self.output_error(error)
        # After the sidecar, as for every outcome: whoever reads the line finds the file.
        log.error(
            "file.failed",
            file=str(task.path),
            inbox=task.inbox_name,
            outcome="failed",
            reason="unreadable",
            code="unreadable",
            error=message,
        )
        self.metrics.files.labels(inbox=task.inbox_name, outcome="failed").inc()
        self.record_final(task.path, "failed")

    # --- moving inputs out of the inbox (daemon.supervising.archiving) ------------

    def begin_move(self, key: FileKey, destination: Path) -> None:
        self.journal.note_move(key, str(destination))

    def unfinished_moves(self) -> list[tuple[FileKey, str]]:
        return self.journal.moves()

    def moved(self, key: FileKey, source: Path, destination: Path | None, why: str) -> None:
        """The input left its inbox (to `destination`, or deleted when None)."""
        self.journal.finish_move(key)
        event = "file.deleted" if destination is None else "file.archived"
        log.info(event, file=str(source), inbox=key.inbox, to=str(destination), why=why)

    def claim_lost(self, task: FileTask) -> None:
        """Another daemon took the file over: this one writes nothing more for it."""
        task.claimed = False
        log.warning("file.claim_lost", file=str(task.path), key=str(task.key))

    def record_final(self, path: Path, outcome: str) -> None:
        """Note what became of a file, where `once` will ask."""
        if self._keep_final:
            self.final[path] = outcome

    def output_error(self, error: OutputError) -> None:
        self.metrics.output_errors.labels(reason=error.reason).inc()
        log.error("output.error", path=str(error.path), reason=error.reason, error=str(error))
