"""(c) Backlog scale: 10,000 files dropped at once, and a start-up scan over 100,000 finished files.

    python -m bench.backlog [--files 10000] [--finished 100000] [--quick]

The engine is the fault-injection engine with no rules (`faulty`): it
"recognises" a page in microseconds, so what is measured is the daemon
itself: watcher, settling, hashing, journal, dispatch over the worker pipe,
output writes (two files, fsync, rename) and logging.

1. Drop: a running daemon (defaults but for the engine), every file written
   via a temp name and renamed into the inbox as fast as Python can. Figures:
   time to first output, throughput, peak RSS of the supervisor process
   (VmHWM from /proc, which the kernel keeps), the journal's size on disk.
2. Start-up scan: an inbox of N inputs, each with its two outputs, whose
   journal rows say done (written through SqliteJournal's admit, claim and
   mark_done, as the daemon does). Inputs are distinct tiny files; the outputs
   are hard links to one pair (the scan skips outputs by name without reading
   them, so only their directory entries matter). The daemon starts on it;
   figures: start to `daemon.started` (journal open, its in-memory index of
   final rows, the stale-temp sweep), start to `daemon.ready`, and the scan
   itself; and a check that no file was handed on or processed again.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from bench import report
from bench.live import drop, running, settings_for, start
from daemon.journal.interface import FileKey
from daemon.journal.sqlite import SqliteJournal
from daemon.settings import WatchSettings, inbox_root
from daemon.watching.candidates import Candidate
from daemon.watching.watcher import Watcher
from harness import pages
from harness.driver import record_time

FAKE = {"fake": {"engine": "faulty"}}
OVERFLOW = "Inotify queue overflowed"  # watchdog's warning, on stderr
SCAN_EVENT = "watch.scan_finished"
LINKS_PER_FILE = 50_000  # ext4 allows 65,000 hard links to one inode


def tiny_png(seed: int) -> bytes:
    """A small valid PNG, distinct per seed."""
    image = pages.render_page(("backlog",), width=96, height=32, font_px=14, margin=4)
    image.putpixel((0, 0), (seed % 256, (seed // 256) % 256, (seed // 65536) % 256))
    return pages.png_bytes(image)


def state_bytes(state: Path) -> int:
    """The journal's size on disk: the database, its write-ahead log and shared memory."""
    return sum(
        path.stat().st_size for path in state.glob(f"{SqliteJournal.FILENAME}*") if path.is_file()
    )


def drop_backlog(root: Path, count: int, settle: float, rescan: float) -> list[list[object]]:
    inbox = root / "inbox"
    state = root / "state"
    inbox.mkdir(parents=True)
    images = [tiny_png(seed) for seed in range(count)]
    settings = settings_for(
        inbox,
        state,
        chain=["fake"],
        models=FAKE,
        settle_seconds=settle,
        watch={"rescan_interval_seconds": rescan},
    )
    with running(root / "drop", settings) as daemon:
        attached = record_time(daemon.log.by_event["watch.inbox_attached"][0])
        rss_before = daemon.peak_rss_bytes() or 0
        began = time.time()
        for index, data in enumerate(images):
            drop(inbox / f"scan-{index:05d}.png", data)
        dropped = time.time()
        daemon.wait("file.done", count, timeout=max(300.0, rescan + count * 0.2), poll=1.0)
        done = daemon.log.by_event["file.done"]
        first = min(record_time(record) for record in done)
        last = max(record_time(record) for record in done)
        peak = daemon.peak_rss_bytes() or 0
        failed = daemon.log.count("file.failed")
        journal = state_bytes(state)
        first_rescan = attached + rescan
        by_events = sum(
            1
            for record in daemon.log.by_event["watch.stable"]
            if record_time(record) < first_rescan
        )
        overflows = daemon.daemon.log_text().count(OVERFLOW)
        lost_rescans = sum(
            1
            for record in daemon.log.by_event.get(SCAN_EVENT, [])
            if record.get("reason") == "events_lost"
        )
    return [
        ["files dropped (temp + rename)", f"{count:,}"],
        ["time to drop them all", f"{dropped - began:.1f} s"],
        ["time to first output (from the first drop)", f"{first - began:.2f} s"],
        ["time to last output (from the first drop)", f"{last - began:.1f} s"],
        ["throughput, first drop to last output", f"{count / (last - began):.0f} files/s"],
        [
            "throughput, first output to last output",
            f"{(count - 1) / max(last - first, 1e-9):.0f} files/s",
        ],
        ["files failed", failed],
        ["inotify queue overflows (watchdog: 'filesystem events were lost')", overflows],
        ["immediate rescans after lost events (watch.events_lost)", lost_rescans],
        [
            f"files found before the first periodic rescan ({rescan:g} s after start)",
            f"{by_events:,} of {count:,}",
        ],
        [
            "supervisor peak RSS (VmHWM), ready / after the backlog",
            f"{report.mebibytes(rss_before)} / {report.mebibytes(peak)}",
        ],
        ["journal on disk (sqlite3 + wal + shm)", report.mebibytes(journal)],
    ]


def finished_inbox(root: Path, count: int) -> tuple[Path, Path]:
    """An inbox of `count` inputs with outputs, and a journal whose rows say done."""
    inbox = root / "inbox"
    state = root / "state"
    inbox.mkdir(parents=True)
    data = tiny_png(0)
    sources = root / "outputs"
    sources.mkdir()
    sha = "0" * 64  # never compared: the scan trusts the journal's (size, mtime)
    journal = SqliteJournal.open(state)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        for index in range(count):
            path = inbox / f"done-{index:06d}.png"
            fd = os.open(path, flags, 0o644)
            os.write(fd, data)
            os.close(fd)
            if index % LINKS_PER_FILE == 0:
                markdown = sources / f"{index}.md"
                markdown.write_bytes(b"backlog\n")
                payload = sources / f"{index}.json"
                payload.write_bytes(b'{"generator": "ocr-inbox"}\n')
            os.link(markdown, inbox / f"{path.name}.ocr.md")
            os.link(payload, inbox / f"{path.name}.ocr.json")
            info = path.stat()
            key = FileKey.of(path, inbox_root(inbox))
            journal.admit(key, info.st_size, info.st_mtime_ns, sha)
            journal.claim(key)
            journal.mark_done(key, sha, info.st_size, info.st_mtime_ns)
    finally:
        journal.close()
    return inbox, state


def scan_in_process(inbox: Path, state: Path, count: int) -> tuple[float, int]:
    """The watcher's start-up scan, timed in this process with the daemon's journal index.

    The watcher logs no line when a scan ends, so the scan is timed here: a
    real Watcher whose `already_final` is the journal's own is_final, counted;
    the scan has finished when every input has been asked about. Returns the
    seconds from start() to that point and how many files were handed on.
    """
    journal = SqliteJournal.open(state)
    asked = 0
    finished = threading.Event()
    handed: list[Path] = []

    def already_final(candidate: Candidate) -> bool:
        nonlocal asked
        asked += 1
        if asked >= count:
            finished.set()
        key = FileKey.of(candidate.path, candidate.inbox)
        return journal.is_final(key, candidate.size, candidate.mtime_ns)

    watcher = Watcher(
        WatchSettings(inboxes=[inbox]),
        lambda candidate: handed.append(candidate.path),
        already_final=already_final,
    )
    began = time.perf_counter()
    watcher.start()
    try:
        if not finished.wait(timeout=600):
            raise RuntimeError(f"the scan asked about {asked} of {count} files in 600 s")
        seconds = time.perf_counter() - began
    finally:
        watcher.stop()
        journal.close()
    return seconds, len(handed)


def startup_over_finished(root: Path, count: int, settle: float) -> list[list[object]]:
    prepared = time.perf_counter()
    inbox, state = finished_inbox(root, count)
    build_seconds = time.perf_counter() - prepared
    scan_seconds, handed = scan_in_process(inbox, state, count)

    settings = settings_for(inbox, state, chain=["fake"], models=FAKE, settle_seconds=settle)
    began = time.time()
    daemon = start(root / "daemon", settings)
    try:
        daemon.wait("daemon.started", timeout=300)
        daemon.wait("daemon.ready", timeout=300)
        started = record_time(daemon.log.by_event["daemon.started"][0])
        ready = record_time(daemon.log.by_event["daemon.ready"][0])
        # The start-up scan runs on the watcher's thread: give it three times the
        # in-process scan's length, plus the settle window.
        try:
            daemon.wait(SCAN_EVENT, timeout=3 * scan_seconds + settle + 30.0)
            scan_line = f"{record_time(daemon.log.by_event[SCAN_EVENT][0]) - began:.2f} s"
        except RuntimeError:
            scan_line = f"not logged (no `{SCAN_EVENT}` line); in process: see below"
        time.sleep(settle + 1.0)  # anything the scan handed on would have settled by now
        daemon.log.poll()
        again = sum(
            daemon.log.count(event)
            for event in ("watch.stable", "file.done", "file.skipped", "file.failed", "file.redo")
        )
        peak = daemon.peak_rss_bytes() or 0
    finally:
        daemon.stop()
    return [
        [
            "finished inputs (each with .ocr.md and .ocr.json)",
            f"{count:,} ({3 * count:,} directory entries)",
        ],
        [
            "building that state (files + SqliteJournal admit/claim/mark_done)",
            f"{build_seconds:.1f} s",
        ],
        ["daemon start (process spawn) to `daemon.started`", f"{started - began:.2f} s"],
        ["daemon start to `daemon.ready` (model loaded)", f"{ready - began:.2f} s"],
        ["daemon start to the end of its start-up scan", scan_line],
        [
            "the watcher's full scan, in process (Watcher + the journal's index)",
            f"{scan_seconds:.2f} s ({count / scan_seconds:,.0f} files/s)",
        ],
        ["files handed on or processed again (in process + daemon)", handed + again],
        ["supervisor peak RSS (VmHWM)", report.mebibytes(peak)],
        ["journal on disk", report.mebibytes(state_bytes(state))],
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000, help="files dropped at once")
    parser.add_argument("--finished", type=int, default=100_000, help="finished files at start")
    parser.add_argument("--settle", type=float, default=2.0, help="watch.settle_seconds")
    parser.add_argument(
        "--rescan", type=float, default=300.0, help="watch.rescan_interval_seconds for the drop"
    )
    parser.add_argument("--quick", action="store_true", help="20 and 200 files: check the harness")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report.quiet_logs()
    if args.quick:
        args.files, args.finished, args.settle = 20, 200, 0.3
    with tempfile.TemporaryDirectory(prefix="ocr-bench-backlog-") as scratch:
        root = Path(scratch)
        dropped = drop_backlog(root / "drop", args.files, args.settle, args.rescan)
        subprocess.run(["rm", "-rf", str(root / "drop")], check=False)
        startup = startup_over_finished(root / "startup", args.finished, args.settle)
    notes = [
        "",
        "Engine: `faulty` with no rules (a fake that answers at once), so these figures are the "
        "daemon's own costs. Default settings except the engine"
        + (f", and a rescan every {args.rescan:g} s for the drop" if args.rescan != 300.0 else "")
        + f"; settle window {args.settle:g} s."
        + (" QUICK RUN: checks the harness only." if args.quick else ""),
        "",
    ]
    print(report.heading("(c) Backlog scale", notes))
    print(f"**{args.files:,} files dropped at once**\n")
    print(report.table(["figure", "value"], dropped, "lr"))
    print(f"**Start-up over {args.finished:,} finished files**\n")
    print(report.table(["figure", "value"], startup, "lr"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
