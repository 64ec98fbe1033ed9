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

A node may start again under its name (so with the same mark) between the
journal's answer and the walk. Only a departed node's temp files older than
the moment it was gone are removed, less a margin for clocks
(`leftovers_before`): what it writes after starting again is newer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import structlog

from daemon.journal.interface import Departure, Journal
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
        self._swept: dict[str, float] = {}  # departed nodes swept, and since when they are gone
        metrics.stale_temp_removed.labels(node=journal.node)  # scraped as 0 before any removal

    def at_start(self) -> None:
        """Remove our own leftovers and (shared journal) those of the nodes known gone."""
        if not self.shared:
            self._sweep(None, [])
            return
        departed = self._newly_departed()
        # Our own of any age: we are starting, none of our writes is in progress.
        writers: dict[str, float | None] = {self.writer: None}
        writers.update({writer_tag(gone.node): leftovers_before(gone) for gone in departed})
        self._sweep(writers, departed)

    def look(self) -> None:
        """Remove the temp files of nodes newly known gone (asked every so often while running)."""
        if not self.shared:
            return  # one node: nobody else writes here
        departed = self._newly_departed()
        if departed:
            writers: dict[str, float | None] = {
                writer_tag(gone.node): leftovers_before(gone) for gone in departed
            }
            self._sweep(writers, departed)

    def _newly_departed(self) -> list[Departure]:
        gone = self.journal.departed()
        # A node that came back is no longer departed and is forgotten; one that
        # came back and died again between two looks is gone since a later
        # moment. Either way its next death is swept again. A moment that moves
        # earlier is the same death: the lease that set it was taken over.
        fresh = [d for d in gone if d.node not in self._swept or d.since > self._swept[d.node]]
        self._swept = {d.node: max(d.since, self._swept.get(d.node, d.since)) for d in gone}
        # Never our own mark: while running, our writes are in progress.
        return [d for d in fresh if writer_tag(d.node) != self.writer]

    def _sweep(self, writers: dict[str, float | None] | None, departed: list[Departure]) -> None:
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
            log.info(
                "outputs.stale_temp_removed",
                count=removed,
                departed=[gone.node for gone in departed],
            )


def leftovers_before(departure: Departure) -> float:
    """The moment (seconds since the epoch) before which a departed node's temp files are leftovers.

    Its gone moment is the database's time; a temp file's mtime is the file
    server's (the host's, on a local disk). A node started again registers
    before it writes, so its new temp files are newer than the gone moment by
    the database's clock; the margin keeps them so while the file server's
    clock runs behind the database's by less than it. The dead node's own
    last writes came at most a heartbeat (lease / 3) after its last beat, so
    at least 2/3 of a lease before the moment; the margin of lease / 3 leaves
    the other third for the file server's clock to run ahead before a real
    leftover looks too new (it then waits for the node's own restart). So the
    clocks must agree within lease / 3: 10 s at the default lease; NTP keeps
    them within milliseconds.
    """
    return departure.since - departure.lease_seconds / 3
