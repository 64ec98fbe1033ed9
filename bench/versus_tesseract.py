"""(d) The embedded engine against Tesseract on a generated page set with known text.

    python -m bench.versus_tesseract [--quick] [--jobs N] [--psm 1] [--only pages|layouts]

Two page sets, one table each: the page types a scanner inbox receives
(bench/pageset.py) and multi-column layouts (bench/layouts.py: two and three
columns, a title, a figure or a table between column blocks, a running header
and footer, a narrow gutter, and a two-column page skewed 2 and 4 degrees and
turned 90), where reading order decides the CER.

Both engines read the same pixels: each file is opened with the daemon's
daemon.documents.open_document (PDF pages rendered at limits.pdf_dpi) and the
pages go to RapidEngine in this process and, saved as lossless PNG, to the
`tesseract` command line.

How each runs, on all cores of the machine:
- ours: the daemon's default, one page at a time, ONNX Runtime using every core;
- Tesseract: as OCRmyPDF (and so paperless-ngx) runs it: one process per page,
  OMP_THREAD_LIMIT=1, as many pages at once as there are cores (`--jobs`),
  `--psm 1` (automatic page segmentation with orientation and script
  detection, which turns pages scanned sideways or upside down), `-l eng`,
  `--dpi` the page's resolution. Its per-page seconds are measured while the
  other job runs, and include starting the process and loading its model.

Tesseract comes from Debian's tesseract-ocr package (which pulls in the eng
and osd data). When it is missing and we are root, setup runs
`apt-get install -y --no-install-recommends tesseract-ocr`; otherwise the
table has our columns only and says how to install it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from bench import layouts, pageset, report
from bench.engine import page_images, rapid_engine, recognise
from bench.textmetrics import levenshtein, normalise, word_recall, words
from daemon.cpus import usable_cpus
from daemon.settings import LimitsSettings, RapidModel

TESSERACT_PACKAGE = "tesseract-ocr"
# Differences smaller than these are ties, not losses.
CER_TIE = 0.005
RECALL_TIE = 0.005


def ensure_tesseract(install: bool = True) -> tuple[str | None, str]:
    """The tesseract executable (installing Debian's package when root), and what was done."""
    found = shutil.which("tesseract")
    if found is not None:
        return found, "already installed"
    apt = shutil.which("apt-get")
    if not install or apt is None or os.geteuid() != 0:
        return None, (
            f"not installed; install Debian's {TESSERACT_PACKAGE} "
            f"(sudo apt-get install -y {TESSERACT_PACKAGE}) to compare"
        )
    print(f"setup: installing {TESSERACT_PACKAGE} with apt-get", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        [apt, "-qq", "update"],
        [apt, "-qq", "install", "-y", "--no-install-recommends", TESSERACT_PACKAGE],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return None, f"apt-get failed ({done.returncode}): {done.stderr.strip()[-300:]}"
    found = shutil.which("tesseract")
    return found, "installed by this run's setup" if found else "apt-get ran but no tesseract"


def tesseract_version(executable: str) -> str:
    done = subprocess.run([executable, "--version"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0] if first else "tesseract"


@dataclass(frozen=True)
class Reading:
    """One engine's reading of one sample: text (pages joined) and seconds per page."""

    text: str
    page_seconds: list[float]


def run_tesseract(executable: str, image: Path, dpi: int, psm: int) -> tuple[str, float]:
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    command = [executable, str(image), "stdout", "--psm", str(psm), "-l", "eng", "--dpi", str(dpi)]
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"tesseract failed on {image.name}: {done.stderr.strip()[-300:]}")
    return done.stdout, seconds


@dataclass(frozen=True)
class Score:
    distance: int
    reference_chars: int
    found_words: float
    reference_words: int

    @property
    def cer(self) -> float:
        return self.distance / self.reference_chars if self.reference_chars else 0.0

    @property
    def recall(self) -> float:
        return self.found_words / self.reference_words if self.reference_words else 1.0


def score(reference: str, hypothesis: str) -> Score:
    ref, hyp = normalise(reference), normalise(hypothesis)
    count = len(words(reference))
    return Score(levenshtein(ref, hyp), len(ref), word_recall(reference, hypothesis) * count, count)


def total(scores: Sequence[Score]) -> Score:
    return Score(
        sum(s.distance for s in scores),
        sum(s.reference_chars for s in scores),
        sum(s.found_words for s in scores),
        sum(s.reference_words for s in scores),
    )


def verdict(ours: Score, theirs: Score, our_rate: float, their_rate: float) -> str:
    """Where we lose to Tesseract on this row (empty when we do not)."""
    lost = []
    if ours.cer > theirs.cer + CER_TIE:
        lost.append("CER")
    if ours.recall < theirs.recall - RECALL_TIE:
        lost.append("recall")
    if our_rate < their_rate:
        lost.append("speed")
    return "we lose: " + ", ".join(lost) if lost else "-"


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a few lines per page: check the harness"
    )
    parser.add_argument("--jobs", type=int, default=usable_cpus(), help="tesseract pages at once")
    parser.add_argument("--psm", type=int, default=1, help="tesseract page segmentation mode")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install tesseract")
    parser.add_argument("--keep", type=Path, help="write the page set here and keep it")
    parser.add_argument(
        "--only", choices=("pages", "layouts"), help="one page set: page types or layouts"
    )
    return parser.parse_args(argv)


# A quick run checks the harness on a few of each set: a plain page, a turned
# one, a PDF; a layout with a figure and a skewed one. Every kind through both
# engines took 60-130 s of the test suite on two cores.
QUICK_PAGE_KINDS = ("clean 12 pt", "rotated 90 degrees", "multi-page PDF")
QUICK_LAYOUTS = ("figure between column blocks", "two columns, skewed 4 degrees")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    executable, setup = ensure_tesseract(install=not args.no_install)
    limits = LimitsSettings()
    model = RapidModel()
    sizes = pageset.Sizes.quick() if args.quick else pageset.Sizes()
    with tempfile.TemporaryDirectory(prefix="ocr-bench-pages-") as scratch:
        folder = args.keep or Path(scratch)
        sets: dict[str, list[pageset.Sample]] = {}
        if args.only in (None, "pages"):
            kinds = QUICK_PAGE_KINDS if args.quick else pageset.KINDS
            sets["page type"] = pageset.build(folder / "pages", sizes, kinds)
        if args.only in (None, "layouts"):
            shapes = QUICK_LAYOUTS if args.quick else layouts.KINDS
            sets["layout"] = layouts.build(folder / "layouts", quick_run=args.quick, kinds=shapes)
        samples = [sample for group in sets.values() for sample in group]
        page_sets = {sample.path: page_images(sample.path, limits) for sample in samples}

        ours: dict[Path, Reading] = {}
        walls: dict[str, tuple[float, float]] = {}  # per set: our wall s, Tesseract's wall s
        with rapid_engine(model) as engine:
            threads = engine.threads
            for label, group in sets.items():
                began = time.perf_counter()
                for sample in group:
                    read = recognise(engine, page_sets[sample.path])
                    per_page = read.seconds / len(read.pages)
                    ours[sample.path] = Reading(read.text, [per_page] * len(read.pages))
                walls[label] = (time.perf_counter() - began, 0.0)

        theirs: dict[Path, Reading] = {}
        if executable is not None:
            for label, group in sets.items():
                readings, wall = read_with_tesseract(
                    executable, group, page_sets, folder / "tesseract", limits, args
                )
                theirs.update(readings)
                walls[label] = (walls[label][0], wall)

    print(render(sets, ours, theirs, walls, threads, executable, setup, args))
    return 0


def read_with_tesseract(
    executable: str,
    samples: Sequence[pageset.Sample],
    page_sets: dict[Path, list[Image.Image]],
    folder: Path,
    limits: LimitsSettings,
    args: argparse.Namespace,
) -> tuple[dict[Path, Reading], float]:
    """Tesseract's reading of each sample, `args.jobs` pages at once, and the wall seconds."""
    jobs: list[tuple[Path, Path, int]] = []
    for sample in samples:
        dpi = limits.pdf_dpi if sample.path.suffix == ".pdf" else pageset.DPI
        for index, image in enumerate(page_sets[sample.path]):
            png = folder / f"{sample.path.stem}-{index}.png"
            png.parent.mkdir(parents=True, exist_ok=True)
            image.save(png, format="PNG", dpi=(dpi, dpi))
            jobs.append((sample.path, png, dpi))
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(
            pool.map(lambda job: run_tesseract(executable, job[1], job[2], args.psm), jobs)
        )
    wall = time.perf_counter() - began
    readings = {}
    for sample in samples:
        mine = [r for job, r in zip(jobs, results, strict=True) if job[0] == sample.path]
        readings[sample.path] = Reading("\n\n".join(text for text, _ in mine), [s for _, s in mine])
    return readings, wall


def render(
    sets: dict[str, list[pageset.Sample]],
    ours: dict[Path, Reading],
    theirs: dict[Path, Reading],
    walls: dict[str, tuple[float, float]],
    threads: int,
    executable: str | None,
    setup: str,
    args: argparse.Namespace,
) -> str:
    version = tesseract_version(executable) if executable else "tesseract: " + setup
    notes = [
        "",
        f"Ours: RapidEngine with the daemon's defaults (rapid {RapidModel().det_limit_side_len} px "
        f"detector side, {threads} ONNX Runtime threads), one page at a time. "
        f"Tesseract: {version} ({setup}), `--psm {args.psm} -l eng`, OMP_THREAD_LIMIT=1, "
        f"{args.jobs} pages at once (OCRmyPDF's way). "
        "CER: Levenshtein over normalised text / reference characters (lower is better); "
        "word recall: reference words found, any order (higher is better). "
        "s/page: each page's own wall time. Speed verdict per row: our pages/s (1 / s/page) "
        f"against Tesseract's ({args.jobs} / s/page, as it reads {args.jobs} pages at once); "
        "in the last row, pages over the set's wall time for each engine. "
        + (
            "QUICK RUN (a few lines per page, a few page types and layouts): checks the"
            " harness, not the engines."
            if args.quick
            else ""
        ),
        "",
    ]
    tables = [
        table(label, samples, ours, theirs, walls[label], args.jobs)
        for label, samples in sets.items()
    ]
    return (
        report.heading("(d) Against Tesseract: accuracy and speed per page type and layout", notes)
        + "\n"
        + "\n\n".join(tables)
    )


def table(
    label: str,
    samples: Sequence[pageset.Sample],
    ours: dict[Path, Reading],
    theirs: dict[Path, Reading],
    walls: tuple[float, float],
    jobs: int,
) -> str:
    """One Markdown table: a row per sample, and a row for all of them."""
    has_theirs = bool(theirs)
    header = [label, "pages", "CER ours"]
    if has_theirs:
        header += ["CER tesseract"]
    header += ["word recall ours"]
    if has_theirs:
        header += ["word recall tesseract"]
    header += ["s/page ours"]
    if has_theirs:
        header += ["s/page tesseract", "where we lose"]
    rows: list[list[object]] = []
    our_scores: list[Score] = []
    their_scores: list[Score] = []
    for sample in samples:
        mine = score(sample.text, ours[sample.path].text)
        our_scores.append(mine)
        our_seconds = sum(ours[sample.path].page_seconds)
        row: list[object] = [sample.kind, sample.pages, percent(mine.cer)]
        if has_theirs:
            other = score(sample.text, theirs[sample.path].text)
            their_scores.append(other)
            their_seconds = sum(theirs[sample.path].page_seconds)
            row += [percent(other.cer), percent(mine.recall), percent(other.recall)]
            row += [f"{our_seconds / sample.pages:.2f}", f"{their_seconds / sample.pages:.2f}"]
            # Tesseract reads `jobs` pages at once: its pages/s is `jobs` over its s/page.
            row += [
                verdict(
                    mine, other, sample.pages / our_seconds, jobs * sample.pages / their_seconds
                )
            ]
        else:
            row += [percent(mine.recall), f"{our_seconds / sample.pages:.2f}"]
        rows.append(row)
    pages = sum(sample.pages for sample in samples)
    everything = total(our_scores)
    our_rate = pages / walls[0]
    last: list[object] = [f"**all ({pages} pages)**", pages, percent(everything.cer)]
    if has_theirs:
        theirs_all = total(their_scores)
        their_rate = pages / walls[1]
        last += [percent(theirs_all.cer), percent(everything.recall), percent(theirs_all.recall)]
        last += [
            f"{our_rate:.3f} pages/s",
            f"{their_rate:.3f} pages/s",
            verdict(everything, theirs_all, our_rate, their_rate),
        ]
    else:
        last += [percent(everything.recall), f"{our_rate:.3f} pages/s"]
    rows.append(last)
    align = "lr" + "r" * (len(header) - 3) + ("l" if has_theirs else "r")
    return report.table(header, rows, align)


if __name__ == "__main__":
    sys.exit(main())
