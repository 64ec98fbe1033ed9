"""Where the time goes on one dense A4 page: the embedded engine's stages, timed.

    python -m bench.page_profile [--rounds N] [--threads N] [--page PATH]

The page is bench/layouts.py's "dense two columns, 8 pt" (112 lines of 8 pt
prose at 200 DPI), or any image given with --page. RapidEngine reads it as
the daemon does; each stage is timed where the engine calls it, exclusive of
the stages inside it:

- detect: RapidOCR's preprocessing, the text detector and the line crops;
- orientation: the 0/180 classifier on every crop, and the reading check of
  a close or upside-down vote (recognition of up to 6 crops both ways);
- gutters: cutting lines at column gutters, boxes tight around their ink;
- recognise: the text recogniser on every line crop;
- layout: RapidOCR's output assembly, the reading order and the page text.

Each round reads the page once; the table gives the median of the rounds
(the first round, which sizes ONNX Runtime's memory arena for the page, is
not counted) and the CPU seconds of the process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from bench import layouts, report
from bench.engine import rapid_engine
from daemon.worker.engines import rapid
from daemon.worker.engines.rapid import RapidEngine

DENSE = "dense two columns, 8 pt"
STAGES = ("detect", "orientation", "gutters", "recognise", "layout")


class StageClock:
    """Exclusive seconds per stage: entering a stage pauses the one it was called from."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[tuple[str, float]] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        now = time.perf_counter()
        if self._stack:
            outer, began = self._stack[-1]
            self.seconds[outer] += now - began
        self._stack.append((name, now))
        try:
            yield
        finally:
            now = time.perf_counter()
            _, began = self._stack.pop()
            self.seconds[name] += now - began
            if self._stack:
                outer, _ = self._stack[-1]
                self._stack[-1] = (outer, now)


def timed(clock: StageClock, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with clock.stage(name):
            return function(*args, **kwargs)

    return wrapper


def instrument(engine: RapidEngine, clock: StageClock) -> None:
    """Time the engine's stages where it calls them (the engine's code is unchanged)."""
    ocr = engine._ocr
    for method, stage in (
        ("preprocess_img", "detect"),
        ("detect_and_crop", "detect"),
        ("cls_and_rotate", "orientation"),
        ("recognize_txt", "recognise"),
        ("build_final_output", "layout"),
    ):
        setattr(ocr, method, timed(clock, stage, getattr(ocr, method)))
    engine._reads_better_turned = timed(  # type: ignore[method-assign]
        clock, "orientation", engine._reads_better_turned
    )
    for function, stage in (("cut_at_gutters", "gutters"), ("assemble_page", "layout")):
        if hasattr(rapid, function):  # an older engine may lack a stage
            setattr(rapid, function, timed(clock, stage, getattr(rapid, function)))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed reads of the page")
    parser.add_argument("--threads", type=int, default=0, help="[worker] threads (0: all cores)")
    parser.add_argument("--page", type=Path, help="an image to read instead of the dense page")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.page is not None:
        image = Image.open(args.page).convert("RGB")
        what = f"{args.page.name} ({image.width} x {image.height} px)"
    else:
        image = layouts.page(DENSE).image
        what = f"bench/layouts.py '{DENSE}' (A4 at 200 DPI, 112 lines)"
    rounds: list[dict[str, float]] = []
    with rapid_engine(threads=args.threads) as engine:
        clock = StageClock()
        instrument(engine, clock)
        lines = 0
        for number in range(args.rounds + 1):
            clock.seconds.clear()
            wall, cpu = time.perf_counter(), time.process_time()
            page = engine.recognize([image])[0]
            figures = dict(clock.seconds)
            figures["wall"] = time.perf_counter() - wall
            figures["cpu"] = time.process_time() - cpu
            figures["other"] = figures["wall"] - sum(figures.get(stage, 0.0) for stage in STAGES)
            lines = len(page.lines)
            if number > 0:
                rounds.append(figures)
        threads = engine.threads
    median = {key: statistics.median(r.get(key, 0.0) for r in rounds) for key in rounds[0]}
    rows: list[list[object]] = []
    for stage in STAGES:
        seconds = median.get(stage, 0.0)
        rows.append([stage, f"{seconds:.3f}", f"{100 * seconds / median['wall']:.1f}%"])
    rows.append(["other (image conversions, bookkeeping)", f"{median['other']:.3f}", ""])
    rows.append(["**page, wall**", f"{median['wall']:.3f}", "100%"])
    rows.append(["page, CPU seconds of the process", f"{median['cpu']:.3f}", ""])
    notes = [
        "",
        f"Page: {what}; {lines} lines read. RapidEngine with the daemon's defaults, "
        f"{threads} ONNX Runtime threads. Median of {args.rounds} rounds after one warm-up round.",
        "",
    ]
    print(
        report.heading("Where the time goes on one page", notes)
        + "\n"
        + report.table(["stage", "seconds", "share of the page"], rows, "lrr")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
