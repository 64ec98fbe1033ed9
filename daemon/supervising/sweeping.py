"""Temp files that dead writers left in inboxes and output folders: removed at start, and while running.

A daemon killed between writing its temp files and renaming them into place
leaves them behind. One daemon alone owns its folders: at start it removes
every temp file of ours. With a shared journal other daemons write into the
same folders, so a daemon removes only temp files whose name carries the mark
of a writer known to be gone: its own at start (it is starting, so none of
its writes are in progress), and those of the nodes `Journal.departed` names.
A node that dies while the others run is found gone by the next look (every
`lease_seconds / 2`, with the takeover look), and its temp files are removed
once, by every node that sees it gone; a folder is walked only then, not on
every look.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import structlog

from daemon.journal.interface import Journal
from daemon.observing.metrics import Metrics
from daemon.outputs.writing import remove_stale_temp_files, writer_tag
from daemon.settings import InboxProfile

log = structlog.get_logger(__name__)


class TempSweeper:
    def __init__(
        self,
        journal: Journal,
        metrics: Metrics,
        *,
        profiles: Callable[[], Iterable[InboxProfile]],
        shared: bool,
    ) -> None:
        self.journal = journal
        self.metrics = metrics
        self.profiles = profiles  # read at each sweep: a reload may change the inboxes
        self.shared = shared
        self.writer = writer_tag(journal.node)
        self._swept: set[str] = set()  # departed nodes whose temp files were removed

    def at_start(self) -> None:
        """Remove our own leftovers and (shared journal) those of the nodes known gone."""
        if not self.shared:
            self._sweep(None, None)
            return
        departed = self._newly_departed()
        self._sweep([self.writer, *(writer_tag(node) for node in departed)], departed)

    def look(self) -> None:
        """Remove the temp files of nodes newly known gone (asked every so often while running)."""
        if not self.shared:
            return  # one node: nobody else writes here
        departed = self._newly_departed()
        if departed:
            self._sweep([writer_tag(node) for node in departed], departed)

    def _newly_departed(self) -> list[str]:
        gone = self.journal.departed()
        # A node that came back (it is no longer departed) is forgotten, so its
        # next death is swept again.
        self._swept &= set(gone)
        fresh = [node for node in gone if node not in self._swept]
        self._swept.update(fresh)
        # Never our own mark: while running, our writes are in progress.
        return [node for node in fresh if writer_tag(node) != self.writer]

    def _sweep(self, writers: list[str] | None, departed: list[str] | None) -> None:
        """Remove temp files of `writers` (None: every temp file of ours) in inboxes and output folders."""
        profiles = list(self.profiles())
        removed = sum(
            remove_stale_temp_files([profile.root], recursive=profile.recursive, writers=writers)
            for profile in profiles
        ) + remove_stale_temp_files(
            [p.output_dir for p in profiles if p.output_dir is not None],
            recursive=True,
            writers=writers,
        )
        if removed:
            self.metrics.stale_temp_removed.labels(node=self.journal.node).inc(removed)
            log.info("outputs.stale_temp_removed", count=removed, departed=departed or [])
