"""What becomes of an input once its outcome is durable: archived, deleted, or moved aside as failed.

An inbox profile may ask for it (daemon.settings.inboxes): `archive_dir` takes
a done input (and, when its outputs are beside it, those too, so they end
beside the archived input), `delete_after_success` removes it (only when set,
never by default), `failed_dir` takes a failed input and its error sidecar.
Everything else stays where it is.

A move is recorded in the journal (through the ledger) before the first byte
moves and dropped once the input has left the inbox, so the input is never
taken for a vanished file, and a restart finishes a move that a kill
interrupted, to the same destination: nothing is lost and nothing is copied
twice (daemon.outputs.archive). A move that fails (a full archive disk) is
logged, leaves the input where it was, and is tried again at the next start.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import structlog

from daemon.journal.interface import FileKey
from daemon.outputs import archive
from daemon.outputs.paths import OUTPUT_SUFFIXES
from daemon.settings import InboxProfile
from daemon.supervising.ledger import Ledger
from daemon.tasks import FileTask

log = structlog.get_logger(__name__)


class Archivist:
    def __init__(self, ledger: Ledger, profiles: Callable[[], dict[Path, InboxProfile]]) -> None:
        self.ledger = ledger
        self.profiles = profiles  # by inbox root; read at each use, so a reload applies

    def plan(self, task: FileTask, outcome: str) -> None:
        """Choose where the input will move for this outcome (task.archive_target; None: it stays)."""
        profile = task.profile
        root = None
        if profile is not None:
            root = profile.archive_dir if outcome == "done" else profile.failed_dir
        task.archive_target = None
        if profile is None or root is None:
            return
        try:
            task.archive_target = archive.destination(task.path, profile.root, root)
        except OSError as error:
            log.error("file.archive_failed", file=str(task.path), to=str(root), error=str(error))

    def after_success(self, task: FileTask) -> None:
        profile = task.profile
        if profile is None:
            return
        if profile.archive_dir is not None:
            self._move(task, profile, profile.archive_dir, "done")
        elif profile.delete_after_success:
            with contextlib.suppress(FileNotFoundError):
                task.path.unlink()
            self.ledger.moved(task.key, task.path, None, "delete_after_success")

    def after_failure(self, task: FileTask) -> None:
        profile = task.profile
        if profile is not None and profile.failed_dir is not None:
            self._move(task, profile, profile.failed_dir, "failed")

    def resume(self) -> None:
        """Finish the moves a stop (or a kill) interrupted, to their recorded destinations."""
        by_name = {profile.name: profile for profile in self.profiles().values()}
        for key, destination in self.ledger.unfinished_moves():
            profile = by_name.get(key.inbox)
            if profile is None:
                continue  # an inbox no longer configured: its move waits for it
            source = profile.root / key.relative
            self._finish(key, source, profile, Path(destination), "resumed")

    def _move(self, task: FileTask, profile: InboxProfile, root: Path, why: str) -> None:
        target = task.archive_target
        if target is None:
            try:
                target = archive.destination(task.path, profile.root, root)
            except OSError as error:
                log.error(
                    "file.archive_failed", file=str(task.path), to=str(root), error=str(error)
                )
                return
        self.ledger.begin_move(task.key, target)
        self._finish(task.key, task.path, profile, target, why)

    def _finish(
        self, key: FileKey, source: Path, profile: InboxProfile, target: Path, why: str
    ) -> None:
        # Outputs beside the input travel with it (with output_dir they are elsewhere).
        companions = []
        if profile.output_dir is None:
            companions = [
                (source.with_name(source.name + suffix), target.with_name(target.name + suffix))
                for suffix in OUTPUT_SUFFIXES
            ]
        try:
            archive.move(source, target, companions)
        except OSError as error:
            log.error(
                "file.archive_failed",
                file=str(source),
                to=str(target),
                error=error.strerror or str(error),
                retry="at the next start",
            )
            return
        self.ledger.moved(key, source, target, why)
