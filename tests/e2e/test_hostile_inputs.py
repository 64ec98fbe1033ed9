"""Hostile inputs through the running daemon: each gets its defined outcome, and nothing is lost.

tests/documents/test_opening*.py prove how each file is decoded; these prove what the
daemon makes of it: the error sidecar with its code (or the outputs), the log
line, the input left byte for byte as it was, a worker whose memory stays
bounded, and a daemon that goes on to process a normal file afterwards.

The cases cannot disturb each other, so one daemon per engine serves every
case of this module: the fast fault-injection engine (no faults) where only the
decoding matters, the embedded engine where the recognised text does (blank
pages, an image whose name lies, CMYK and 16-bit pages).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from harness import pages
from harness.driver import Daemon, base_settings, outputs_of, read_json, running_daemon
from harness.inbox import drop, peak_rss_bytes, sha256_of, wait_outcome
from harness.pages import recall
from tests.support import hostile
from tests.support.images import encoded

pytestmark = pytest.mark.slow

MAX_PAGES = 3  # the page limit of the fake-engine daemon, so a five-page PDF crosses it
MAX_FILE_BYTES = 200_000  # its size limit: every case but one is smaller
GIB = 1024**3
SMALL = pages.render_page(("Hostile 42",), width=240, height=100, font_px=24, margin=10)
FIVE_METRES_PT = 5 * hostile.POINTS_PER_METRE  # 39,370 px square at 200 DPI
PT_FOR_35000_PX = 35_000 * 72 / 200  # a page of 35,000 x 35,000 pixels at 200 DPI
NORMAL_LINES = ("Normal file after the hostile ones", "Ordinary invoice 7731")


def text_page(lines: tuple[str, ...]) -> Image.Image:
    # Small pages keep the CPU engine quick on a busy 2-core machine.
    return pages.render_page(lines, width=900, height=260, font_px=36, margin=30)


# --- the cases ---------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    """A file that must get an error sidecar with `code`, whose message says each of `says`."""

    data: bytes
    code: str
    says: tuple[str, ...]


@dataclass(frozen=True)
class Done:
    """A file that must get outputs: its format, page sizes, page count and notes."""

    data: bytes
    format: str
    sizes: tuple[tuple[int, int], ...] = ()  # of the pages processed (exact)
    max_pixels: int | None = None  # instead of exact sizes: a bound on each page
    pages: int = 1  # in the document (more than processed when over the limit)
    notes: tuple[str, ...] = ()  # each is in the document's notes or a page's


def refused_cases() -> dict[str, Refused]:
    secret = hostile.pdf_document([hostile.PdfPage(lines=["secret"])])
    return {
        "zero.png": Refused(b"", "empty_file", ("empty",)),
        "too-large.png": Refused(
            encoded(SMALL, "PNG") + bytes(MAX_FILE_BYTES), "too_large", ("limits.max_file_bytes",)
        ),
        "truncated.png": Refused(
            hostile.truncated(encoded(SMALL, "PNG"), 0.6), "corrupt", ("PNG", "truncated")
        ),
        "truncated.jpg": Refused(
            hostile.truncated(encoded(SMALL, "JPEG"), 0.5), "corrupt", ("JPEG", "truncated")
        ),
        "random.pdf": Refused(
            random.Random(7).randbytes(4096),
            "unsupported_format",
            ("'random.pdf' is named like a PDF file, but its content is not one",),
        ),
        "header-then-eof.pdf": Refused(hostile.pdf_header_then_eof(), "corrupt", ("damaged",)),
        "no-pages.pdf": Refused(hostile.pdf_document([]), "no_pages", ("no pages",)),
        "encrypted.pdf": Refused(
            hostile.encrypted_pdf(secret, user_password="s3cret"), "encrypted", ("password",)
        ),
        "claims-35000-squared.png": Refused(
            hostile.png_claiming_size(35_000, 35_000), "page_too_large", ("1225000000 pixels",)
        ),
        "bomb.png": Refused(
            hostile.png_bomb(20_000, 20_000), "page_too_large", ("decompression-bomb",)
        ),
    }


def done_cases() -> dict[str, Done]:
    gray16 = Image.fromarray(np.asarray(SMALL.convert("L"), np.uint16) * 257)
    palette = SMALL.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    navy = Image.new("RGB", SMALL.size, "navy")
    mixed = [SMALL.copy(), SMALL.convert("L").resize((100, 50))]
    return {
        "png-named.jpg": Done(
            encoded(SMALL, "PNG"),
            "png",
            ((240, 100),),
            notes=("the name says JPEG but the content is PNG",),
        ),
        "five-metres.pdf": Done(
            hostile.pdf_document(
                [hostile.PdfPage(FIVE_METRES_PT, FIVE_METRES_PT, lines=["poster"], font_pt=600)]
            ),
            "pdf",
            max_pixels=40_000_000,
            notes=("instead of 39370x39370", "limits.max_page_pixels"),
        ),
        "35000-pixels.pdf": Done(
            hostile.pdf_document(
                [hostile.PdfPage(PT_FOR_35000_PX, PT_FOR_35000_PX, lines=["huge"], font_pt=400)]
            ),
            "pdf",
            max_pixels=40_000_000,
            notes=("instead of 35000x35000",),
        ),
        "five-pages.pdf": Done(
            hostile.pdf_document([hostile.PdfPage(lines=[f"page {i}"]) for i in range(5)]),
            "pdf",
            ((1654, 2339),) * MAX_PAGES,
            pages=5,
            notes=(f"page limit: {MAX_PAGES} of 5 pages processed (limits.max_pages)",),
        ),
        "gray16.png": Done(encoded(gray16, "PNG"), "png", ((240, 100),)),
        "cmyk.jpg": Done(encoded(SMALL.convert("CMYK"), "JPEG"), "jpeg", ((240, 100),)),
        "palette-transparent.png": Done(
            encoded(palette, "PNG", transparency=0), "png", ((240, 100),)
        ),
        "animated.gif": Done(
            encoded(SMALL.copy(), "GIF", save_all=True, append_images=[navy]),
            "gif",
            ((240, 100),),
            notes=("animated GIF: only the first of 2 frames is read",),
        ),
        "mixed-modes.tiff": Done(
            encoded(SMALL.convert("1"), "TIFF", save_all=True, append_images=mixed),
            "tiff",
            ((240, 100), (240, 100), (100, 50)),
            pages=3,
        ),
        "one-pixel.png": Done(encoded(Image.new("RGB", (1, 1), "white"), "PNG"), "png", ((1, 1),)),
    }


REFUSED = refused_cases()
DONE = done_cases()


# --- one daemon per engine -----------------------------------------------------------


@dataclass
class Run:
    """What a module daemon was given and what it did with it."""

    daemon: Daemon
    files: dict[str, Path]
    hashes: dict[str, str]  # sha256 of each input as dropped
    outcomes: dict[str, dict[str, Any]]  # name -> its file.done / file.failed record
    normal: Path
    worker_peaks: list[int]  # peak RSS of each worker, read while they still ran

    def json(self, name: str) -> dict[str, Any]:
        document: dict[str, Any] = read_json(outputs_of(self.files[name])["json"])
        return document


def serve(root: Path, settings: dict[str, Any], cases: dict[str, bytes]) -> Iterator[Run]:
    """Drop every case into one running daemon, wait for each outcome, then a normal file."""
    inbox = root / "inbox"
    with running_daemon(root, settings) as daemon:
        daemon.wait_ready(timeout=180)
        files = {name: drop(inbox / name, data) for name, data in cases.items()}
        outcomes = {name: wait_outcome(daemon, path, timeout=300) for name, path in files.items()}
        normal = drop(inbox / "normal-after.png", pages.png_bytes(text_page(NORMAL_LINES)))
        wait_outcome(daemon, normal, timeout=180)
        peaks = [peak_rss_bytes(record["pid"]) for record in daemon.find("worker.started")]
        yield Run(
            daemon,
            files,
            {name: hashlib.sha256(data).hexdigest() for name, data in cases.items()},
            outcomes,
            normal,
            peaks,
        )


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """Every case except the blank page, through a daemon with the fast fake engine."""
    root = tmp_path_factory.mktemp("hostile-fake")
    settings = base_settings(
        root / "inbox",
        root / "state",
        worker={"chain": ["fake"]},
        limits={"max_pages": MAX_PAGES, "max_file_bytes": MAX_FILE_BYTES},
    )
    settings["models"] = {"fake": {"engine": "faulty"}}
    cases = {name: case.data for name, case in REFUSED.items()}
    cases.update((name, case.data) for name, case in DONE.items())
    yield from serve(root, settings, cases)


# --- fake engine: refusals -------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_bad_input_gets_an_error_sidecar_with_its_code_and_a_log_line(fake: Run, name: str) -> None:
    """Each broken file gets only an .ocr.error.json naming its code, and a file.failed line."""
    case = REFUSED[name]
    found = outputs_of(fake.files[name])
    assert set(found) == {"error"}, found
    error = read_json(found["error"])
    assert error["error"]["code"] == case.code
    assert error["error"]["kind"] == "bad_input"
    for phrase in case.says:
        assert phrase in error["error"]["message"], error["error"]["message"]
    if case.code == "too_large":
        # Not read at all, so not hashed: size and mtime identify the content.
        size = fake.files[name].stat().st_size
        assert error["input"]["sha256"].startswith(f"oversize:{size}:")
    else:
        assert error["input"]["sha256"] == fake.hashes[name]
    record = fake.outcomes[name]
    assert (record["event"], record["code"], record["reason"]) == (
        "file.failed",
        case.code,
        "bad_input",
    )


# --- fake engine: odd but valid files ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(DONE))
def test_odd_valid_input_gets_outputs_with_its_pages_and_notes(fake: Run, name: str) -> None:
    """Lying names, huge and long PDFs, 16-bit, CMYK, palette, animated, mixed, 1x1: outputs, bounded pages."""
    case = DONE[name]
    assert set(outputs_of(fake.files[name])) == {"md", "json"}
    assert fake.outcomes[name]["event"] == "file.done"
    document = fake.json(name)
    assert document["input"]["sha256"] == fake.hashes[name]
    assert document["input"]["format"] == case.format
    assert document["input"]["pages"] == case.pages
    sizes = [(page["width"], page["height"]) for page in document["pages"]]
    if case.max_pixels is None:
        assert sizes == list(case.sizes)
    else:
        assert len(sizes) == 1 and sizes[0][0] * sizes[0][1] <= case.max_pixels
    assert document["input"]["pages_processed"] == len(sizes)
    notes = [*document["notes"], *(note for page in document["pages"] for note in page["notes"])]
    for wanted in case.notes:
        assert any(wanted in note for note in notes), notes


# --- fake engine: nothing lost, nothing left in a bad state -----------------------------------


def test_no_input_is_modified_or_removed(fake: Run) -> None:
    """Every input is byte for byte what was dropped, and only our outputs were added."""
    for name, path in fake.files.items():
        assert sha256_of(path) == fake.hashes[name], name
    expected = set(fake.files) | {fake.normal.name}
    for name in REFUSED:
        expected.add(name + ".ocr.error.json")
    for name in [*DONE, fake.normal.name]:
        expected |= {name + ".ocr.md", name + ".ocr.json"}
    assert {path.name for path in fake.normal.parent.iterdir()} == expected


def test_daemon_processes_a_normal_file_after_every_hostile_one(fake: Run) -> None:
    """After all the hostile files the daemon is up, its worker never died, and a normal file is done."""
    daemon = fake.daemon
    assert daemon.process.poll() is None
    assert daemon.find("file.done", file=str(fake.normal))
    assert not daemon.find("worker.exited"), "a hostile file cost a worker its life"
    assert len(daemon.find("worker.started")) == 1
    text = outputs_of(fake.normal)["md"].read_text()
    assert "normal-after.png" in text  # the fake engine names the file it read


def test_worker_memory_stays_bounded_through_bombs_and_huge_pages(fake: Run) -> None:
    """A 400 MP bomb, 35,000 px and 5 m pages leave the worker's peak RSS under 1 GiB."""
    # Decoded at full size, the bomb alone needs 400 MB as 1-bit and 1.2 GB as
    # RGB; the 5 m page 4.6 GB as a 200 DPI bitmap.
    assert fake.worker_peaks and max(fake.worker_peaks) < GIB, fake.worker_peaks


# --- the embedded engine: where the text matters ---------------------------------------------

RAPID_TEXT = {
    "text-png-named.jpg": ("Lying extension 5501", "content decides the format"),
    "cmyk-text.jpg": ("Cyan magenta yellow 8802", "black plate printing"),
    "gray16-text.png": ("Sixteen bit scan 3307", "grayscale archive copy"),
}


@pytest.fixture(scope="module")
def rapid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """Blank pages and text pages through a daemon with the embedded OCR engine."""
    root = tmp_path_factory.mktemp("hostile-rapid")
    settings = base_settings(root / "inbox", root / "state")
    lying, cmyk, gray16 = (text_page(lines) for lines in RAPID_TEXT.values())
    cases = {
        "blank.pdf": hostile.pdf_document([hostile.PdfPage()]),
        "blank.png": pages.png_bytes(Image.new("RGB", (900, 600), "white")),
        "text-png-named.jpg": pages.png_bytes(lying),
        "cmyk-text.jpg": encoded(cmyk.convert("CMYK"), "JPEG", quality=95),
        "gray16-text.png": encoded(
            Image.fromarray(np.asarray(gray16.convert("L"), np.uint16) * 257), "PNG"
        ),
    }
    yield from serve(root, settings, cases)


@pytest.mark.parametrize("name", ["blank.pdf", "blank.png"])
def test_blank_page_is_an_empty_result_not_an_error(rapid: Run, name: str) -> None:
    """A blank page gets outputs with empty text: no error sidecar, no fallback."""
    found = outputs_of(rapid.files[name])
    assert set(found) == {"md", "json"}
    assert found["md"].read_text().strip() == ""
    document = rapid.json(name)
    assert [page["text"].strip() for page in document["pages"]] == [""]
    assert document["fallback_trail"] == []
    assert rapid.outcomes[name]["event"] == "file.done"


@pytest.mark.parametrize("name", sorted(RAPID_TEXT))
def test_odd_encodings_are_read_as_their_text(rapid: Run, name: str) -> None:
    """A PNG named .jpg, a CMYK JPEG and a 16-bit grayscale PNG come out with their words."""
    text = outputs_of(rapid.files[name])["md"].read_text()
    assert recall(RAPID_TEXT[name], text) >= 0.8, text
    assert rapid.json(name)["input"]["sha256"] == rapid.hashes[name]


def test_embedded_engine_daemon_reads_a_normal_file_after_them(rapid: Run) -> None:
    """After blank and oddly encoded pages the embedded engine still reads a normal page."""
    assert rapid.daemon.process.poll() is None
    text = outputs_of(rapid.normal)["md"].read_text()
    assert recall(NORMAL_LINES, text) >= 0.8, text
    for name, path in rapid.files.items():
        assert sha256_of(path) == rapid.hashes[name], name
