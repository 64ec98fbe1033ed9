"""(f) What the searchable PDF costs on top of OCR: a 10-page scanned PDF and a phone photo.

    python -m bench.searchable_pdf [--rounds 3] [--quick]

In this process, as the worker does it: the file's bytes opened with
daemon.documents.opening.open_document, each page recognised by the embedded
engine (RapidEngine.recognize), then daemon.searchable_pdf.assemble.PdfBuilder
run over the input and the results (for the PDF: its pages kept and a text
layer laid over each; for the JPEG: img2pdf embeds its bytes, then the layer).
OCR is timed twice: with RapidOCR's word boxes (the default since the PDF
places words) and without, so both costs of the PDF show: building the file,
and the word boxes it is built from. Each step is timed in CPU seconds of this
process (all its threads) as well as wall seconds: on a shared machine the
CPU seconds are the steadier measure. The least of `--rounds` rounds counts.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import pageset, report
from bench.engine import rapid_engine
from daemon.documents.opening import open_document
from daemon.protocol import PageResult, PdfRequest
from daemon.searchable_pdf.assemble import PdfBuilder
from daemon.settings import LimitsSettings
from daemon.worker.engines.rapid import RapidEngine
from harness import pages

PHOTO = (3024, 4032)  # a 12-megapixel phone photo, portrait


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the fastest counts")
    parser.add_argument("--pages", type=int, default=10, help="pages of the PDF")
    parser.add_argument("--quick", action="store_true", help="2 small pages: check the harness")
    return parser.parse_args(argv)


INF = float("inf")


@dataclass
class Timing:
    """Least wall and CPU seconds per step over the rounds."""

    ocr_words: tuple[float, float] = (INF, INF)
    ocr_plain: tuple[float, float] = (INF, INF)
    pdf: tuple[float, float] = (INF, INF)
    pdf_bytes: int = 0
    input_bytes: int = 0
    pages: int = 0


def least(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return (min(a[0], b[0]), min(a[1], b[1]))


class Clock:
    """Wall and process CPU seconds of a step."""

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        self.spent = (time.perf_counter() - self._wall, time.process_time() - self._cpu)


def make_inputs(folder: Path, page_count: int, quick: bool) -> dict[str, Path]:
    size = pageset.QUICK_PAGE if quick else pageset.A4
    scans = []
    for index in range(page_count):
        lines = pageset.prose_lines(100 + index, 8 if quick else 40, pageset.PT12_PX, size[0] - 260)
        scans.append(
            pages.render_page(
                lines, width=size[0], height=size[1], font_px=pageset.PT12_PX, margin=130
            )
        )
    pdf = pages.save_pdf(scans, folder / "scan.pdf", dpi=pageset.DPI)
    photo_size = pageset.QUICK_PAGE if quick else PHOTO
    photo_lines = pageset.prose_lines(7, 8 if quick else 30, 64, photo_size[0] - 400)
    photo = pages.render_page(
        photo_lines, width=photo_size[0], height=photo_size[1], font_px=64, margin=200
    )
    jpeg = folder / "photo.jpg"
    jpeg.write_bytes(pageset.scan_like(photo, seed=7))
    return {f"{page_count}-page scanned PDF": pdf, "phone photo (JPEG)": jpeg}


def recognise(
    engine: RapidEngine, data: bytes, name: str
) -> tuple[list[PageResult], tuple[float, float]]:
    limits = LimitsSettings()
    results = []
    with Clock() as clock, open_document(data, limits, name=name) as document:
        for page in document.pages():
            text = engine.recognize([page.image])[0]
            results.append(PageResult(page.index, page.image.width, page.image.height, text, 0.0))
    return results, clock.spent


def build_pdf(data: bytes, name: str, results: list[PageResult]) -> tuple[int, tuple[float, float]]:
    limits = LimitsSettings()
    with Clock() as clock, open_document(data, limits, name=name) as document:
        builder = PdfBuilder(data, document.format, document.page_count, PdfRequest())
        if builder.needs_pages:
            for page in document.pages():
                builder.keep_page(page)
        built = builder.finish(results)
    return len(built.data), clock.spent


def measure(inputs: dict[str, Path], rounds: int) -> dict[str, Timing]:
    timings = {label: Timing() for label in inputs}
    with rapid_engine() as engine:
        for _ in range(rounds):
            for label, path in inputs.items():
                data = path.read_bytes()
                timing = timings[label]
                timing.input_bytes = len(data)
                engine._ocr.return_word_box = False  # the engine as it was before word boxes
                _, plain = recognise(engine, data, path.name)
                engine._ocr.return_word_box = True
                results, with_words = recognise(engine, data, path.name)
                size, pdf = build_pdf(data, path.name, results)
                timing.ocr_plain = least(timing.ocr_plain, plain)
                timing.ocr_words = least(timing.ocr_words, with_words)
                timing.pdf = least(timing.pdf, pdf)
                timing.pdf_bytes = size
                timing.pages = len(results)
    return timings


def percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f} %"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report.quiet_logs()
    page_count = 2 if args.quick else args.pages
    rounds = 1 if args.quick else args.rounds
    with tempfile.TemporaryDirectory(prefix="ocr-inbox-pdf-bench-") as folder:
        inputs = make_inputs(Path(folder), page_count, args.quick)
        timings = measure(inputs, rounds)
    print(
        report.heading(
            "(f) searchable PDF on top of OCR",
            [
                "",
                f"The embedded engine in this process, best of {rounds} round(s); PDF pages"
                " at 200 DPI, the photo 12 MP. The PDF step includes opening the input again;"
                " percentages are of CPU seconds.",
                "",
            ],
        )
    )
    rows = []
    for label, timing in timings.items():
        plain, words, pdf = timing.ocr_plain[1], timing.ocr_words[1], timing.pdf[1]
        rows.append(
            (
                label,
                timing.pages,
                report.seconds(plain, 2),
                report.seconds(words, 2),
                report.seconds(pdf, 3),
                percent(pdf, words),
                percent(words + pdf - plain, plain),
                f"{report.seconds(timing.ocr_words[0], 2)} / {report.seconds(timing.pdf[0], 3)}",
                f"{timing.input_bytes / 2**20:.2f} -> {timing.pdf_bytes / 2**20:.2f} MiB",
            )
        )
    print(
        report.table(
            (
                "input",
                "pages",
                "OCR CPU s, no word boxes",
                "OCR CPU s, word boxes",
                "PDF CPU s",
                "PDF on top of OCR",
                "word boxes + PDF on top of OCR before",
                "wall s: OCR / PDF",
                "size in -> out",
            ),
            rows,
            align="lrrrrrrrr",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
