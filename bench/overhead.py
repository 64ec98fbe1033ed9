"""(a) Overhead: pages per second through the daemon against the bare engine on the same pages.

    python -m bench.overhead [--files 8] [--lines 12] [--rounds 2] [--settle 2.0] [--quick]

The pages: distinct A4 PNGs (200 DPI) of 12 pt prose. The bare engine: the
daemon's RapidEngine built and loaded once in this process, then, for each
file, what the worker does: daemon.documents.opening.open_document on its bytes and
RapidEngine.recognize on each page; with the daemon's default settings and
thread count ([worker] threads = 0: every core the process may use). The
daemon: `ocr-inbox run` with the embedded `rapid` engine (the default chain)
and the same defaults, model loaded before the drop; all files dropped at
once (temp name + rename), timed until the last output's `file.done` line.
The settle window is part of what a user waits for, so it is shown both in
and out. Rounds alternate (bare, daemon, bare, daemon...) and the fastest
round of each way counts: other work on a shared machine only ever slows a
round down.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench import pageset, report
from bench.engine import rapid_engine
from bench.live import BenchDaemon, drop, running, settings_for
from daemon.documents.opening import open_document
from daemon.settings import LimitsSettings
from daemon.worker.engines.rapid import RapidEngine
from harness.driver import record_time


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=8, help="files (one page each) per round")
    parser.add_argument("--lines", type=int, default=12, help="lines of text per page")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; best one counts")
    parser.add_argument("--settle", type=float, default=2.0, help="watch.settle_seconds")
    parser.add_argument("--quick", action="store_true", help="2 short pages: check the harness")
    return parser.parse_args(argv)


@dataclass
class Best:
    """The fastest round of one way: wall seconds and the CPU seconds of that round."""

    wall: float = math.inf
    cpu: float = math.nan

    def offer(self, wall: float, cpu: float) -> None:
        if wall < self.wall:
            self.wall, self.cpu = wall, cpu


def daemon_cpu_seconds(daemon: BenchDaemon) -> float:
    """CPU seconds (user + system) of the supervisor and its workers so far."""
    process = psutil.Process(daemon.pid)
    total = 0.0
    for member in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = member.cpu_times()
            total += times.user + times.system
    return total


def bare_round(
    engine: RapidEngine, files: dict[str, bytes], limits: LimitsSettings
) -> tuple[float, float]:
    """What the worker does per file, in a loop: open the document, recognise each page."""
    cpu = time.process_time()
    began = time.perf_counter()
    for name, data in files.items():
        with open_document(data, limits, name=name) as document:
            for page in document.pages():
                engine.recognize([page.image])
    return time.perf_counter() - began, time.process_time() - cpu


def daemon_round(
    daemon: BenchDaemon, files: dict[str, bytes], round_number: int
) -> tuple[float, float, float, float]:
    """Drop the files at once; (drop to last output, stable to last output, inference sum, CPU)."""
    inbox = daemon.inbox
    cpu = daemon_cpu_seconds(daemon)
    dropped = {
        inbox / f"r{round_number}-{name}": drop(inbox / f"r{round_number}-{name}", data)
        for name, data in files.items()
    }
    for path in dropped:
        daemon.wait("file.done", subject=path, timeout=120 + 60 * len(files))
    cpu = daemon_cpu_seconds(daemon) - cpu
    done = [daemon.log.first("file.done", path) for path in dropped]
    stable = [daemon.log.first("watch.stable", path) for path in dropped]
    if any(record is None for record in done + stable):
        raise RuntimeError("a file has no watch.stable or file.done line")
    last_done = max(record_time(record) for record in done if record)
    first_stable = min(record_time(record) for record in stable if record)
    inference = sum(float(record["inference_seconds"]) for record in done if record)
    return last_done - min(dropped.values()), last_done - first_stable, inference, cpu


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.files, args.lines, args.settle, args.rounds = 2, 2, 0.3, 1
    report.quiet_logs()
    limits = LimitsSettings()
    size = pageset.QUICK_PAGE if args.quick else pageset.A4
    files = {
        f"letter-{index:03d}.png": pageset.letter_png(index, args.lines, size)
        for index in range(args.files)
    }
    pages = args.files
    decode_began = time.perf_counter()
    for name, data in files.items():
        with open_document(data, limits, name=name) as document:
            for _ in document.pages():
                pass
    decode_seconds = time.perf_counter() - decode_began

    bare, through, after_settle, inference = Best(), Best(), Best(), Best()
    with tempfile.TemporaryDirectory(prefix="ocr-bench-overhead-") as scratch:
        root = Path(scratch)
        inbox = root / "inbox"
        settings = settings_for(inbox, root / "state", chain=["rapid"], settle_seconds=args.settle)
        with rapid_engine() as engine, running(root / "daemon", settings) as daemon:
            threads = engine.threads
            # Alternating rounds, so a burst of other work on the machine hits both ways alike.
            for round_number in range(args.rounds):
                bare.offer(*bare_round(engine, files, limits))
                wall, stable_wall, inference_sum, cpu = daemon_round(daemon, files, round_number)
                through.offer(wall, cpu)
                after_settle.offer(stable_wall, cpu)
                inference.offer(inference_sum, math.nan)

    def row(way: str, best: Best) -> list[object]:
        return [
            way,
            pages,
            f"{best.wall:.2f}",
            "-" if math.isnan(best.cpu) else f"{best.cpu:.1f}",
            f"{pages / best.wall:.3f}",
            report.ratio(pages / best.wall, pages / bare.wall),
        ]

    rows = [
        row("bare engine: open_document + RapidEngine.recognize in a loop, one process", bare),
        row(
            f"daemon: first drop to last output (settle window {args.settle:g} s included)", through
        ),
        row("daemon: first `watch.stable` to last output (settle window excluded)", after_settle),
        row(
            "daemon's worker: sum of `inference_seconds` (engine time inside the worker)", inference
        ),
    ]
    notes = [
        "",
        f"{pages} distinct A4 pages (200 DPI, {args.lines} lines of 12 pt prose, PNG), one file "
        f"each; engine `rapid` with the daemon's defaults and {threads} ONNX Runtime threads both "
        f"ways (the daemon's [worker] threads = 0). Best of {args.rounds} alternating rounds "
        "(wall time); CPU s: user + system of this process (bare) or of the supervisor and "
        f"worker (daemon) in that round. Decoding alone took {decode_seconds:.2f} s for all "
        "pages. 'vs bare': pages/s of the row / pages/s of the bare loop (1.00: no overhead)."
        + (" QUICK RUN: checks the harness only." if args.quick else ""),
        "",
    ]
    print(report.heading("(a) Overhead: the daemon against the bare engine", notes))
    header = ["way", "pages", "wall s", "CPU s", "pages/s", "vs bare"]
    print(report.table(header, rows, "lrrrrr"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
