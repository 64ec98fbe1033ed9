"""(b) Latency per file: where a file's time goes, one at a time and in a burst.

    python -m bench.latency [--singles 6] [--burst 8] [--lines 8] [--settle 2.0] [--quick]

A running daemon with the embedded `rapid` engine and default settings (the
settle window included: it is most of what a single file waits). Files are
written under a temp name and renamed into the inbox, so the drop time is
exact. Per file:

- settle wait: the drop to the watcher's `watch.stable` line;
- queue wait, inference, output write: the `file.done` line's
  `queue_seconds`, `inference_seconds` and `write_seconds`;
- rest: drop to `file.done` minus those four (hashing, admission, reading
  and decoding the file in the worker, the pipe, logging);
- end to end: the drop to the `file.done` line.

Singles: each file is dropped after the previous one's output, so nothing
queues. Burst: all files at once.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import pageset, report
from bench.live import BenchDaemon, drop, running, settings_for
from harness.driver import record_time

STAGES = ("settle wait", "queue wait", "inference", "output write", "rest", "end to end")


def breakdown(daemon: BenchDaemon, path: Path, dropped: float) -> dict[str, float]:
    stable = daemon.log.first("watch.stable", path)
    done = daemon.log.first("file.done", path)
    if stable is None or done is None:
        raise RuntimeError(f"{path.name}: no watch.stable or file.done line")
    figures: dict[str, float] = {
        "settle wait": record_time(stable) - dropped,
        "queue wait": float(done["queue_seconds"]),
        "inference": float(done["inference_seconds"]),
        "output write": float(done["write_seconds"]),
        "end to end": record_time(done) - dropped,
    }
    measured = sum(figures[stage] for stage in STAGES[:4])
    figures["rest"] = figures["end to end"] - measured
    return figures


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--singles", type=int, default=6, help="files dropped one at a time")
    parser.add_argument("--burst", type=int, default=8, help="files dropped at once")
    parser.add_argument("--lines", type=int, default=8, help="lines of 12 pt text per page")
    parser.add_argument("--settle", type=float, default=2.0, help="watch.settle_seconds")
    parser.add_argument("--quick", action="store_true", help="2 + 2 short pages: check the harness")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.singles, args.burst, args.lines, args.settle = 2, 2, 2, 0.3
    report.quiet_logs()
    count = args.singles + args.burst
    size = pageset.QUICK_PAGE if args.quick else pageset.A4
    files = [pageset.letter_png(500 + index, args.lines, size) for index in range(count)]
    singles: list[dict[str, float]] = []
    burst: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="ocr-bench-latency-") as scratch:
        root = Path(scratch)
        inbox = root / "inbox"
        settings = settings_for(inbox, root / "state", chain=["rapid"], settle_seconds=args.settle)
        with running(root / "daemon", settings) as daemon:
            for index in range(args.singles):
                path = inbox / f"single-{index:03d}.png"
                dropped = drop(path, files[index])
                daemon.wait("file.done", subject=path, timeout=300, poll=0.05)
                singles.append(breakdown(daemon, path, dropped))
                time.sleep(0.2)
            drops: dict[Path, float] = {}
            for index in range(args.burst):
                path = inbox / f"burst-{index:03d}.png"
                drops[path] = drop(path, files[args.singles + index])
            daemon.wait("file.done", count, timeout=120 + 60 * args.burst)
            burst = [breakdown(daemon, path, dropped) for path, dropped in drops.items()]

    def cells(samples: list[dict[str, Any]], stage: str) -> list[str]:
        values = [sample[stage] for sample in samples]
        return [
            report.seconds(report.percentile(values, 0.5)),
            report.seconds(report.percentile(values, 0.95)),
        ]

    rows = [[stage, *cells(singles, stage), *cells(burst, stage)] for stage in STAGES]
    notes = [
        "",
        f"Engine `rapid` with default settings; settle window {args.settle:g} s; A4 pages with "
        f"{args.lines} lines of 12 pt text. Singles: {args.singles} files, each dropped after "
        f"the previous one's output. Burst: {args.burst} files dropped at once. Seconds; p95 by "
        "linear interpolation (with few files it is close to the maximum)."
        + (" QUICK RUN: checks the harness only." if args.quick else ""),
        "",
    ]
    print(report.heading("(b) Latency per file", notes))
    header = ["stage", "single p50", "single p95", "burst p50", "burst p95"]
    print(report.table(header, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
