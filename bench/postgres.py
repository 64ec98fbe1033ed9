"""(h) The shared journal: a backlog admitted through PostgreSQL by one and by three daemons, beside SQLite.

    python -m bench.postgres [--files 10000] [--settle 2] [--poll 1] [--latency-ms MS] [--quick]

The same drop as the backlog part (c), done three times on a fresh inbox:
one daemon on the SQLite journal, one daemon on a PostgreSQL journal, and
three daemons sharing one PostgreSQL journal (each its own state folder and
node name, as three hosts on one share would be). Every daemon watches in
polling mode, as on a network share, so the three runs see the files the same
way. The engine is the fault-injection engine with no rules (`faulty`), so
what is measured is the daemon and its journal, not OCR.

Figures per run: the time from the first drop until every file has a row in
the journal (read from the journal itself every 0.2 s: SQLite read-only,
PostgreSQL over its own connection), the admission rate that gives, the time
to the last output and the rate of finished files, and how many files were
done twice (a `file.done` for one file in two logs) or failed. PostgreSQL is a
throwaway cluster on this machine (harness/postgres_cluster.py, fsync off), so
the figures are the journal's protocol cost, not a network's. `--latency-ms MS`
adds the two PostgreSQL runs again with the daemons reaching the database
through a proxy that delays every byte MS milliseconds each way
(harness/latency_proxy.py), as a database across a network would.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import report
from bench.backlog import FAKE, tiny_png
from bench.live import BenchDaemon, drop, settings_for, start
from daemon.cpus import load_average
from daemon.journal.sqlite import SqliteJournal
from harness.driver import record_time
from harness.latency_proxy import LatencyProxy
from harness.postgres_cluster import Cluster, ClusterUnavailable, start_cluster

SAMPLE_SECONDS = 0.2


@dataclass(frozen=True)
class Run:
    label: str
    backend: str  # "sqlite" or "postgresql"
    daemons: int
    latency_ms: float = 0.0  # added each way between the daemons and the database


RUNS = (
    Run("SQLite", "sqlite", 1),
    Run("PostgreSQL", "postgresql", 1),
    Run("PostgreSQL", "postgresql", 3),
)


@dataclass(frozen=True)
class Figures:
    run: Run
    count: int
    first_admitted: float  # seconds from the first drop
    all_admitted: float
    last_done: float
    done_twice: int
    failed: int
    load: str  # the load average when the run began: other work on the machine

    @property
    def admitted_per_second(self) -> float:
        return self.count / max(self.all_admitted, 1e-9)

    @property
    def done_per_second(self) -> float:
        return self.count / max(self.last_done, 1e-9)


def sqlite_rows(state: Path) -> Callable[[], int]:
    """Counts the SQLite journal's rows, read-only beside the running daemon."""

    def count() -> int:
        database = state / SqliteJournal.FILENAME
        if not database.exists():
            return 0
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as db:
            row = db.execute("SELECT COUNT(*) FROM files").fetchone()
        return int(row[0])

    return count


def postgres_rows(url: str) -> tuple[Callable[[], int], Callable[[], None]]:
    """Counts the shared journal's rows over a connection of its own; and how to close it."""
    import psycopg

    connection = psycopg.connect(url, autocommit=True)

    def count() -> int:
        row = connection.execute("SELECT COUNT(*) FROM ocr_inbox_files").fetchone()
        return int(row[0]) if row is not None else 0

    return count, connection.close


def node_settings(
    inbox: Path, root: Path, url: str | None, node: str, settle: float, poll: float
) -> dict[str, Any]:
    settings = settings_for(
        inbox,
        root / "state",
        chain=["fake"],
        models=FAKE,
        settle_seconds=settle,
        watch={"mode": "polling", "poll_interval_seconds": poll},
    )
    if url is not None:
        settings["state"].update({"url": url, "node": node})
    return settings


def measure(
    root: Path,
    run: Run,
    images: Sequence[bytes],
    url: str | None,
    settle: float,
    poll: float,
    proxy: LatencyProxy | None = None,
) -> Figures:
    """Start the run's daemons, drop every file, follow the journal and the logs to the end.

    With `proxy` the daemons reach the database through it; the journal's rows
    are counted over a direct connection.
    """
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    load = load_average()
    daemons: list[BenchDaemon] = []
    close: Callable[[], None] = lambda: None  # noqa: E731
    daemon_url = proxy.url(url) if proxy is not None and url is not None else url
    try:
        for index in range(run.daemons):
            name = f"node{index + 1}"
            settings = node_settings(inbox, root / name, daemon_url, name, settle, poll)
            daemons.append(start(root / name, settings))
        for daemon in daemons:
            daemon.wait("daemon.ready", timeout=300)
        if url is None:
            rows = sqlite_rows(root / "node1" / "state")
        else:
            rows, close = postgres_rows(url)
        count = len(images)
        began = time.time()
        for index, data in enumerate(images):
            drop(inbox / f"scan-{index:05d}.png", data)
        first_admitted: float | None = None
        deadline = time.monotonic() + max(600.0, count * 0.3)
        while True:
            admitted = rows()
            now = time.time()
            if first_admitted is None and admitted > 0:
                first_admitted = now - began
            if admitted >= count:
                all_admitted = now - began
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {admitted} of {count} files admitted in time")
            time.sleep(SAMPLE_SECONDS)
        done_files: set[str] = set()
        while True:
            done_records = []
            for daemon in daemons:
                daemon.log.poll()
                done_records.extend(daemon.log.by_event.get("file.done", []))
            done_files = {str(record["file"]) for record in done_records}
            failed = sum(daemon.log.count("file.failed") for daemon in daemons)
            if len(done_files) + failed >= count:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(done_files)} of {count} files done in time")
            time.sleep(SAMPLE_SECONDS * 5)
        last_done = max(record_time(record) for record in done_records) - began
        return Figures(
            run=run,
            count=count,
            first_admitted=first_admitted if first_admitted is not None else all_admitted,
            all_admitted=all_admitted,
            last_done=last_done,
            done_twice=len(done_records) - len(done_files),
            failed=failed,
            load=load,
        )
    finally:
        close()
        for daemon in daemons:
            daemon.stop()


def round_trip_ms(url: str, queries: int = 200) -> float:
    """The median time of a `SELECT 1` over one connection to `url`, in ms."""
    import psycopg

    times = []
    with psycopg.connect(url, autocommit=True) as db:
        for _ in range(queries):
            started = time.perf_counter()
            db.execute("SELECT 1").fetchone()
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def rows_of(results: Sequence[Figures]) -> list[list[object]]:
    base = results[0]
    return [
        [
            figures.run.label,
            figures.run.daemons,
            f"{figures.first_admitted:.2f} s",
            f"{figures.all_admitted:.1f} s",
            f"{figures.admitted_per_second:.0f}",
            report.ratio(figures.admitted_per_second, base.admitted_per_second),
            f"{figures.last_done:.1f} s",
            f"{figures.done_per_second:.0f}",
            report.ratio(figures.done_per_second, base.done_per_second),
            figures.done_twice,
            figures.failed,
            figures.load,
        ]
        for figures in results
    ]


HEADER = [
    "journal",
    "daemons",
    "first row",
    "all rows",
    "admitted files/s",
    "vs SQLite x1",
    "last output",
    "done files/s",
    "vs SQLite x1",
    "done twice",
    "failed",
    "load at start",
]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000, help="files dropped at once")
    parser.add_argument("--settle", type=float, default=2.0, help="watch.settle_seconds")
    parser.add_argument("--poll", type=float, default=1.0, help="watch.poll_interval_seconds")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="also run PostgreSQL through a proxy adding this many ms each way",
    )
    parser.add_argument("--quick", action="store_true", help="20 files: check the harness")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report.quiet_logs()
    if args.quick:
        args.files, args.settle, args.poll = 20, 0.3, 0.3
    title = "(h) Shared journal: a backlog admitted through PostgreSQL"
    try:
        cluster: Cluster = start_cluster()
    except ClusterUnavailable as error:
        print(report.heading(title, ["", f"Skipped: {error}.", ""]))
        return 0
    notes = [
        "",
        f"{args.files:,} files dropped at once into one inbox, three times: SQLite with one "
        "daemon, PostgreSQL with one, PostgreSQL shared by three daemons on this one machine. "
        "Engine: `faulty` with no rules (answers at once). Every daemon polls "
        f'(`mode = "polling"`, every {args.poll:g} s), settle window {args.settle:g} s, '
        "lease 30 s. Times are from the first drop; rates are files over that time. "
        "PostgreSQL: a local throwaway cluster (fsync off)."
        + (
            f" Rows marked '{args.latency_ms:g} ms each way' reach the database through a proxy "
            "that delays every byte that long in each direction (harness/latency_proxy.py)."
            if args.latency_ms
            else ""
        )
        + (" QUICK RUN: checks the harness only." if args.quick else ""),
        "",
    ]
    heading = report.heading(title, notes)  # the load average now, at the start
    images = [tiny_png(seed) for seed in range(args.files)]
    results: list[Figures] = []
    runs = list(RUNS)
    if args.latency_ms:
        label = f"PostgreSQL, {args.latency_ms:g} ms each way"
        runs += [Run(label, "postgresql", n, args.latency_ms) for n in (1, 3)]
    round_trips = ""
    try:
        if args.latency_ms:
            # What the proxy really adds on this machine now (a loaded one adds more).
            probe = cluster.new_database("round_trips")
            with LatencyProxy(cluster.port, args.latency_ms / 1000) as through_proxy:
                through = round_trip_ms(through_proxy.url(probe))
            round_trips = (
                f"A `SELECT 1` took {round_trip_ms(probe):.2f} ms directly and {through:.2f} ms"
                f" through the proxy (medians of 200)."
            )
        with tempfile.TemporaryDirectory(prefix="ocr-bench-postgres-") as scratch:
            for number, run in enumerate(runs):
                root = Path(scratch) / f"run{number}"
                url = None if run.backend == "sqlite" else cluster.new_database(f"bench{number}")
                proxy = None
                if run.latency_ms:
                    proxy = LatencyProxy(cluster.port, run.latency_ms / 1000).start()
                try:
                    results.append(measure(root, run, images, url, args.settle, args.poll, proxy))
                finally:
                    if proxy is not None:
                        proxy.stop()
                subprocess.run(["rm", "-rf", str(root)], check=False)
    finally:
        cluster.stop()
    print(heading)
    if round_trips:
        print(round_trips + "\n")
    print(report.table(HEADER, rows_of(results), "lr" + "r" * (len(HEADER) - 3) + "l"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
