"""Follow-through: does a cheap change of the engine's settings pay on this machine?

    python -m bench.tuning [--quick] [--only LABEL ...] [--daemon-files 8]

Each configuration reads the page set of (d) (bench/pageset.py) in this
process, with RapidEngine exactly as the worker builds it, and reports CER,
word recall (over all pages, and on the small-type page, the first to suffer
from a smaller detector input) and pages/s. The levers:

- ONNX Runtime intra-op threads ([worker] threads / [models.rapid] threads);
- the detector's input size (`det_limit_side_len`), also on small print
  (6 pt clean; 8, 6 and 5 pt on scan-like pages), which it loses first;
- the PDF render resolution (`limits.pdf_dpi`), on the multi-page PDF only;
- workers: with `--daemon-files N`, N pages through the daemon with one
  worker using every core against two workers of one thread each.

It prints figures; docs/benchmarks.md says which change was taken and why.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import pageset, report
from bench.engine import page_images, rapid_engine, recognise
from bench.live import drop, running, settings_for
from bench.versus_tesseract import QUICK_PAGE_KINDS, Score, score, total
from daemon.settings import LimitsSettings, RapidModel
from harness.driver import record_time

PDF = "multi-page PDF"


@dataclass(frozen=True)
class Config:
    label: str
    model: dict[str, Any] = field(default_factory=dict)
    threads: int = 0
    pdf_dpi: int | None = None  # None: every page type at the default; else the PDF only


CONFIGS = (
    Config("defaults"),
    Config("det_limit_side_len 2000 (before)", {"det_limit_side_len": 2000}),
    Config("1 ONNX Runtime thread", threads=1),
    Config("det_limit_side_len 1600", {"det_limit_side_len": 1600}),
    Config("det_limit_side_len 1280", {"det_limit_side_len": 1280}),
    Config("det_limit_side_len 960", {"det_limit_side_len": 960}),
    Config("det_limit_side_len 736", {"det_limit_side_len": 736}),
    Config("pdf_dpi 200 (PDF only, the default)", pdf_dpi=200),
    Config("pdf_dpi 150 (PDF only)", pdf_dpi=150),
    Config("pdf_dpi 300 (PDF only)", pdf_dpi=300),
)


def measure(
    config: Config, samples: Sequence[pageset.Sample], small_print: Sequence[pageset.Sample]
) -> list[object]:
    limits = LimitsSettings(pdf_dpi=config.pdf_dpi) if config.pdf_dpi else LimitsSettings()
    chosen = [s for s in samples if config.pdf_dpi is None or s.kind == PDF]
    extra = small_print if config.pdf_dpi is None else []
    decoded = {sample.kind: page_images(sample.path, limits) for sample in [*chosen, *extra]}
    scores: dict[str, Score] = {}
    seconds = 0.0
    with rapid_engine(RapidModel(**config.model), threads=config.threads) as engine:
        threads = engine.threads
        cpu = time.process_time()
        for sample in chosen:
            read = recognise(engine, decoded[sample.kind])
            seconds += read.seconds
            scores[sample.kind] = score(sample.text, read.text)
        cpu = time.process_time() - cpu
        small = [score(s.text, recognise(engine, decoded[s.kind]).text).cer for s in extra]
    pages = sum(len(decoded[sample.kind]) for sample in chosen)
    everything = total([scores[sample.kind] for sample in chosen])
    return [
        config.label,
        threads,
        pages,
        f"{100 * everything.cer:.1f}%",
        f"{100 * everything.recall:.1f}%",
        " / ".join(f"{100 * value:.1f}%" for value in small) if small else "-",
        f"{pages / seconds:.3f}",
        f"{cpu / pages:.2f}",
    ]


def through_daemon(
    files: int, lines: int, settle: float, size: tuple[int, int] = pageset.A4
) -> list[list[object]]:
    """One worker with every core against two workers with one thread each."""
    data = {
        f"page-{index:03d}.png": pageset.letter_png(900 + index, lines, size)
        for index in range(files)
    }
    rows: list[list[object]] = []
    for label, worker in (
        ("1 worker x all cores (default)", {"count": 1, "threads": 0}),
        ("2 workers x 1 thread", {"count": 2, "threads": 1}),
    ):
        with tempfile.TemporaryDirectory(prefix="ocr-bench-tuning-") as scratch:
            root = Path(scratch)
            inbox = root / "inbox"
            settings = settings_for(
                inbox, root / "state", chain=["rapid"], settle_seconds=settle, worker=worker
            )
            with running(root / "daemon", settings) as daemon:
                daemon.wait("model.loaded", worker["count"], timeout=300)
                first = min(drop(inbox / name, page) for name, page in data.items())
                daemon.wait("file.done", files, timeout=120 + 60 * files)
                last = max(record_time(record) for record in daemon.log.by_event["file.done"])
        seconds = last - first
        rows.append([label, files, f"{seconds:.1f}", f"{files / seconds:.3f}"])
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny pages, one configuration")
    parser.add_argument("--only", nargs="*", help="labels (prefixes) of configurations to run")
    parser.add_argument("--daemon-files", type=int, default=0, help="pages for the workers test")
    parser.add_argument("--settle", type=float, default=2.0, help="watch.settle_seconds")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report.quiet_logs()
    configs = list(CONFIGS)
    if args.only:
        configs = [c for c in configs if any(c.label.startswith(prefix) for prefix in args.only)]
    if args.quick:
        configs = configs[:1]
    sizes = pageset.Sizes.quick() if args.quick else pageset.Sizes()
    with tempfile.TemporaryDirectory(prefix="ocr-bench-tuning-") as scratch:
        # A quick run checks the harness on the (d) part's quick page types.
        kinds = QUICK_PAGE_KINDS if args.quick else pageset.KINDS
        samples = pageset.build(Path(scratch), sizes, kinds)
        small_print = pageset.build_small_print(
            Path(scratch), 3 if args.quick else 30, quick=args.quick
        )
        rows = []
        for config in configs:
            began = time.monotonic()
            rows.append(measure(config, samples, small_print))
            print(f"  {config.label}: {time.monotonic() - began:.0f} s", file=sys.stderr)
    notes = [
        "",
        "The page set of (d), read in process by RapidEngine (one page at a time); each row "
        "changes one setting from the defaults. CER, word recall, pages/s and CPU s/page over "
        "the page set; small print: CER on four extra pages of 30 lines "
        f"({', '.join(kind for kind, *_ in pageset.SMALL_PRINT)}), where a smaller detector "
        "input fails first." + (" QUICK RUN: checks the harness only." if args.quick else ""),
        "",
    ]
    print(report.heading("Follow-through: engine settings", notes))
    header = [
        "configuration",
        "threads",
        "pages",
        "CER",
        "word recall",
        "small print CER",
        "pages/s",
        "CPU s/page",
    ]
    print(report.table(header, rows, "lrrrrrrr"))
    if args.daemon_files or args.quick:
        files = 1 if args.quick else args.daemon_files
        settle = 0.3 if args.quick else args.settle
        if args.quick:
            workers = through_daemon(files, 2, settle, pageset.QUICK_PAGE)
        else:
            workers = through_daemon(files, 12, settle)
        print(f"**Workers: {files} pages dropped at once into the daemon**\n")
        print(report.table(["workers", "pages", "seconds", "pages/s"], workers, "lrrr"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
