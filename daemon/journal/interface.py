"""The journal interface: what the daemon knows of every file, and the only ways to change it.

A backend implements `Journal` (daemon.journal.sqlite today, one file in the
state folder; a PostgreSQL backend shared by several daemons later). In the
daemon exactly one module writes through it: daemon.supervising.ledger
(with daemon.supervising.announcing, its room for outcomes and webhooks).

A file is known by a FileKey: its inbox's name and its path relative to that
inbox, never by an absolute path, which differs between hosts that mount one
share at different places. A row holds the SHA-256 of the content it
describes and one of three states:

    (none) --admit--> pending --mark_done---> done
                         |    --mark_failed-> failed (quarantined: not retried
                         |                    until the content changes)
                         +----forget--------> (none): the file vanished
    done | failed --reopen--> pending: its outputs were removed by someone
    any state --admit with new content--> pending, attempts and trail afresh

Claims: a journal object speaks for one daemon (a node). Before it works on a
file the node claims it; what happens to the file from then on (attempts,
trail, the output hashes, done or failed with its webhook) is written under
that claim, and an output is renamed into place only after `fence` confirmed
the claim is still held. A backend shared by several nodes makes the claim a lease (renewed by
the backend while held) and refuses a claim another node holds; a node that
lost its lease gets ClaimLost at the next write and commits nothing. With one
node (SQLite) a claim is granted for every pending row and only ever lost by
the node's own doing (the row forgotten, or admitted afresh and claimed
again), but callers follow the same protocol, so the shared backend fits
without changing them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True, slots=True, order=True)
class FileKey:
    """A file as the journal knows it: its inbox's name and its '/'-separated path below it."""

    inbox: str
    relative: str

    @classmethod
    def of(cls, path: Path, inbox: Path, name: str | None = None) -> FileKey:
        """The key of `path`, which lies under the inbox root `inbox` (daemon.settings.inbox_root).

        `name` is the inbox's name when it is not its folder's (an
        `[inboxes.NAME]` table goes by NAME).

        `once` watches no inbox: its files are keyed below the filesystem root
        (inbox "/"), that is by their absolute path. Asked once per file of
        every scan, so it works on the strings (both paths are absolute and
        normalised) rather than through pathlib.
        """
        root, text = str(inbox), str(path)
        prefix = root if root.endswith(os.sep) else root + os.sep
        if not text.startswith(prefix):
            raise ValueError(f"{path} is not inside the inbox {inbox}")
        # inbox_name(inbox), without its abspath: a root is absolute and normalised already.
        return cls(name or inbox.name or "/", text[len(prefix) :].replace(os.sep, "/"))

    def __str__(self) -> str:
        return f"{self.inbox}:{self.relative}"


class State(StrEnum):
    PENDING = "pending"  # admitted, no final outcome yet
    DONE = "done"  # outputs written for this content
    FAILED = "failed"  # error sidecar written for this content (quarantined)


class Admission(StrEnum):
    NEW = "new"  # new path or new content: queue it
    PENDING = "pending"  # already pending (e.g. an event after a restart): keep its place
    UNCHANGED = "unchanged"  # final for the same content: nothing to do


@dataclass(slots=True)
class Entry:
    key: FileKey
    size: int
    mtime_ns: int
    sha256: str
    state: State
    attempts: dict[str, int] = field(default_factory=dict)  # worker deaths per model
    trail: list[dict[str, Any]] = field(default_factory=list)  # models the file left, and why
    error: str | None = None
    # The outputs (other than the JSON) of the set last about to be committed:
    # their hashes prove them ours if a crash came before the JSON that lists them.
    output_hashes: tuple[str, ...] = ()
    admitted_at: float = 0.0


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A completion webhook waiting for its receiver (daemon.webhooks): one per finished file.

    `key` is the idempotency key (stable for one file, content and outcome), so
    the same finish queued twice is one event; `body` is the JSON document
    exactly as it is POSTed; `queued_at` is Unix time (it outlives a restart).
    """

    key: str
    url: str
    body: str
    queued_at: float


@dataclass(frozen=True, slots=True)
class LeaseReport:
    """What a node's claims look like now, for metrics and `ocr-inbox status`."""

    claims_held: int = 0
    taken_over: int = 0  # leases of other nodes this node took over since it started
    lost: int = 0  # claims this node found taken from it since it started
    heartbeat_age_seconds: float | None = None  # None: the backend has no heartbeat


@dataclass(frozen=True, slots=True)
class Departure:
    """A node the journal knows is gone, and since when (for removing its temp files)."""

    node: str
    # The moment it counts as gone from, in seconds since the epoch by the
    # database's clock: when it closed, or when its last heartbeat plus its
    # lease and every lease it held had run out (it can pass no fence after).
    # Anything it wrote before is a leftover; a temp file newer than this is
    # the write of the node started again under its name.
    since: float
    lease_seconds: float


class JournalUnusable(Exception):
    """The journal cannot be used as configured (bad URL, wrong credentials, a newer schema): exit 2."""


class ClaimLost(Exception):
    """This node does not hold the file's claim (any more): write nothing for it."""

    def __init__(self, key: FileKey) -> None:
        super().__init__(f"{key}: this daemon does not hold the file's claim")
        self.key = key


class Journal(Protocol):
    """The daemon's durable memory of files, for one node.

    Every method is called from the supervisor's main loop, except is_final,
    which the watcher's thread calls and which must be cheap (no query), and
    problem and leases, which the HTTP thread may call.
    """

    @property
    def node(self) -> str:
        """The name this daemon goes by in the journal (state.node)."""
        ...

    # --- reading ---------------------------------------------------------

    def get(self, key: FileKey) -> Entry | None: ...

    def pending(self) -> list[Entry]:
        """Rows still waiting for an outcome, oldest first (read at start-up)."""
        ...

    def counts(self) -> dict[str, int]:
        """Rows per state."""
        ...

    def is_final(self, key: FileKey, size: int, mtime_ns: int) -> bool:
        """True when this exact file (key, size, mtime) already has its outcome."""
        ...

    def takeable(self) -> list[FileKey]:
        """Pending files no live claim holds and this node does not hold: a dead node's, or let go.

        Asked every so often, so a node looks again at files it left to another
        node that then died. One node (SQLite) queued every pending file at
        start and leaves none to others: none.
        """
        ...

    def departed(self) -> Sequence[Departure]:
        """Other nodes the journal knows are gone: stopped, or silent past their lease with none live.

        Their temp files written before they went (`Departure.since`) are
        leftovers nobody will finish, so a node removes them, at start and
        while running. One node (SQLite) knows of no other: none.
        """
        ...

    def problem(self) -> str | None:
        """Why the journal cannot be used right now (None when it can): for readiness."""
        ...

    def leases(self) -> LeaseReport: ...

    # --- seeing files (no claim: every node admits what it sees) ----------

    def admit(self, key: FileKey, size: int, mtime_ns: int, sha256: str) -> Admission:
        """Record a stable file. NEW means: queue it."""
        ...

    def reopen(self, key: FileKey) -> None:
        """Make a final row pending again (its outputs were removed by someone)."""
        ...

    def forget(self, key: FileKey) -> None:
        """Drop a row and any claim on it (the file vanished, or is no longer a file)."""
        ...

    # --- claims ------------------------------------------------------------

    def claim(self, key: FileKey) -> bool:
        """Take the file for this node; False when it is not pending or another node has it.

        Claiming a file this node holds already is granted again.
        """
        ...

    def release(self, key: FileKey) -> None:
        """Give this node's claim up, leaving a pending file to any node (no-op without one)."""
        ...

    def fence(self, key: FileKey) -> None:
        """Raise ClaimLost unless this node holds the claim: asked just before an output lands."""
        ...

    # --- working on a claimed file (each raises ClaimLost without the claim) --

    def record_attempt(self, key: FileKey, model: str) -> int:
        """Count one worker death for this content on this model; returns the new count."""
        ...

    def record_trail(self, key: FileKey, trail: list[dict[str, Any]]) -> None: ...

    def note_outputs(self, key: FileKey, hashes: list[str]) -> None:
        """Remember the hashes of the output set about to be renamed into place."""
        ...

    def mark_done(
        self,
        key: FileKey,
        sha256: str,
        size: int,
        mtime_ns: int,
        *,
        webhook: WebhookEvent | None = None,
        outbox_limit: int | None = None,
    ) -> list[WebhookEvent]:
        """Outputs written for this content; the claim ends.

        `webhook` (the file's completion event) is stored in the outbox in the
        same transaction and under the same claim check as the outcome: a node
        without the claim raises ClaimLost and stores neither. An event with
        the same key replaces the stored one and becomes the newest; when more
        than `outbox_limit` (if given) are stored, the oldest are removed and
        returned (the caller gives them up, logs and counts them). Without an
        event: [].

        A finish whose reply was lost (the connection broke after the commit)
        is made again by a backend that retries, and counts as made: the row
        is final, for this content, by this node.
        """
        ...

    def mark_failed(
        self,
        key: FileKey,
        sha256: str,
        size: int,
        mtime_ns: int,
        error: str,
        *,
        webhook: WebhookEvent | None = None,
        outbox_limit: int | None = None,
    ) -> list[WebhookEvent]:
        """Error sidecar written (or our outputs say failed) for this content; the claim ends.

        `webhook` and `outbox_limit` as for mark_done.
        """
        ...

    # --- the webhook outbox (events for the receivers of completion webhooks) --
    # Filled only by mark_done and mark_failed, atomically with the outcome and
    # under the file's claim: only the node that finished a file reports it.
    # A node delivers only its own events; a shared backend keeps each node's
    # outbox apart (events of a node that never comes back are that node's to
    # deliver, and `ocr-inbox status` shows them waiting).

    def webhooks(self) -> list[WebhookEvent]:
        """Every stored event, oldest first (read at start-up)."""
        ...

    def webhook_delivered(self, key: str) -> None:
        """The receiver accepted the event: remove it (no-op when it is gone already)."""
        ...

    def close(self) -> None:
        """Release this node's claims and close."""
        ...

    # --- moving a finished input out of its inbox (no claim: the outcome is in) --

    def note_move(self, key: FileKey, destination: str) -> None:
        """The input is about to move to `destination` (archive_dir or failed_dir)."""
        ...

    def moves(self) -> list[tuple[FileKey, str]]:
        """Moves noted and not finished (read at start-up, to finish them)."""
        ...

    def finish_move(self, key: FileKey) -> None:
        """The input has left the inbox: drop its move and its row (it is not a vanished file)."""
        ...
