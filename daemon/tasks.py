"""A file on its way through the daemon: what the supervisor remembers about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.journal.interface import FileKey
from daemon.outputs.paths import OutputPaths
from daemon.protocol import DocumentResult
from daemon.settings import InboxProfile


@dataclass(eq=False)
class FileTask:
    path: Path
    inbox: Path  # the inbox root it was found under ("/" for `once`)
    sha256: str  # content admitted (the worker reports what it actually read)
    size: int
    mtime_ns: int
    admitted_at: float  # monotonic: end-to-end latency starts here
    admitted_wall: float  # unix time, for the outputs
    settle_seconds: float | None = None  # from first sight to stable, when the watcher knows
    queued_at: float = 0.0
    dispatched_at: float | None = None
    job_id: int | None = None
    # The model this one file must go to, when an earlier model could not do it
    # (empty or degenerate output, or it killed that model's worker too often).
    model_override: str | None = None
    trail: list[dict[str, Any]] = field(default_factory=list)
    # A result whose outputs could not be written yet (disk full): retried
    # without running the model again.
    unwritten: DocumentResult | None = None
    last_model: str | None = None  # the model that produced `unwritten`
    not_before: float = 0.0  # monotonic; a delayed retry waits until then
    claimed: bool = False  # this daemon holds the file's claim in the journal
    # What is written for this file ([outputs] now; an inbox's profile may choose
    # its own): chosen at admission, so a result is written as it was asked for.
    formats: tuple[str, ...] = ("md", "json")
    pdf_over_existing_text: bool = False
    # The inbox's profile (None for `once`, which watches no inbox).
    profile: InboxProfile | None = None
    # Where the input moves once its outcome is durable (archive_dir or
    # failed_dir), chosen before the outcome is announced so a webhook names
    # the places the files end up in (daemon.supervising.archiving).
    archive_target: Path | None = None
    # The inbox's own chain when it is not the one recovery serves
    # (daemon.supervising.inbox_chains); empty: the daemon's chain.
    chain: tuple[str, ...] = ()

    @property
    def inbox_name(self) -> str:
        """The inbox's name: in the journal key, the JSON, the log and the metric label."""
        return self.profile.name if self.profile is not None else self.inbox.name or "/"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def outputs(self) -> OutputPaths:
        """Where this file's outputs go: its inbox's output_dir (mirrored), else beside it."""
        output_dir = self.profile.output_dir if self.profile is not None else None
        if output_dir is None:
            return OutputPaths.beside(self.path)
        return OutputPaths.mirrored(self.path, self.inbox, output_dir)

    @property
    def key(self) -> FileKey:
        """The file as the journal knows it."""
        return FileKey.of(self.path, self.inbox, self.inbox_name)
