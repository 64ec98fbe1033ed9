"""daemon.documents.opening on bad and hostile inputs: every failure is a BadInputError with a code.

Ends with a property test: valid files of every format, mutated (bytes flipped,
cut short, pieces of other formats spliced in, size fields overwritten), either
open into RGB pages within the limits or raise BadInputError; nothing else, and
quickly.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from daemon.documents.opening import FORMATS, BadInputError, open_document
from daemon.settings import LimitsSettings
from harness.pages import render_page
from tests.support import hostile
from tests.support.images import encoded

DEFAULT_LIMITS = LimitsSettings()
CODES = frozenset(
    {
        "empty_file",
        "too_large",
        "unsupported_format",
        "corrupt",
        "encrypted",
        "no_pages",
        "page_too_large",
    }
)


def refusal(data: bytes, limits: LimitsSettings = DEFAULT_LIMITS, name: str = "") -> BadInputError:
    """The BadInputError raised while opening `data` or decoding its pages."""
    with pytest.raises(BadInputError) as raised, open_document(data, limits, name=name) as document:
        list(document.pages())
    error = raised.value
    assert error.code in CODES
    assert error.message and str(error) == f"{error.code}: {error.message}"
    return error


def text_image(width: int = 200, height: int = 120) -> Image.Image:
    return render_page(["Hostile 42", "input"], width=width, height=height, font_px=24, margin=10)


# --- size and format ---------------------------------------------------------------


def test_empty_file_is_empty_file() -> None:
    """Zero bytes is 'empty_file', whatever the name, and blames no page."""
    error = refusal(b"", name="scan.pdf")
    assert (error.code, error.page) == ("empty_file", None)


def test_file_above_max_file_bytes_is_too_large_before_parsing() -> None:
    """Bytes over max_file_bytes are 'too_large' even when they are not an image at all."""
    limits = LimitsSettings(max_file_bytes=1000)
    assert refusal(b"\x00" * 1001, limits).code == "too_large"
    error = refusal(encoded(text_image(400, 300), "BMP"), limits)
    assert error.code == "too_large" and "1,000" in error.message


def test_file_at_exactly_max_file_bytes_is_accepted() -> None:
    """A file of exactly max_file_bytes is opened (the limit is inclusive)."""
    data = encoded(text_image(), "PNG")
    with open_document(data, LimitsSettings(max_file_bytes=len(data))) as document:
        assert document.page_count == 1


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (os.urandom(4096), "scan.pdf"),
        (b"Dear customer,\nplease find attached", "letter.txt"),
        (b"PK\x03\x04" + bytes(100), "document.docx"),
        (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "photo.jp2"),
        (b"BMW invoice 2024", "car.bmp"),
    ],
)
def test_content_that_is_no_supported_format_is_unsupported_format(data: bytes, name: str) -> None:
    """Random bytes, text, ZIP, JPEG 2000 and 'BM' text are 'unsupported_format', listing formats."""
    error = refusal(data, name=name)
    assert error.code == "unsupported_format"
    assert "PNG, JPEG, TIFF, WebP, BMP, GIF, PDF" in error.message


def test_random_bytes_named_pdf_say_the_name_and_content_disagree() -> None:
    """The message for a fake .pdf names the file and says its content is not a PDF."""
    error = refusal(b"\x13\x37" * 64, name="invoice.pdf")
    assert "'invoice.pdf' is named like a PDF file, but its content is not one" in error.message


# --- truncation and damage -----------------------------------------------------------


@pytest.mark.parametrize(
    ("pillow_format", "params"),
    [
        ("PNG", {}),
        ("JPEG", {}),
        ("JPEG", {"progressive": True}),
        ("BMP", {}),
        ("TIFF", {}),
        ("WEBP", {}),
    ],
)
def test_truncated_images_are_corrupt_at_every_cut(pillow_format: str, params: dict) -> None:
    """An image cut short anywhere past its magic bytes (even 1 byte short) is 'corrupt'."""
    data = encoded(text_image(), pillow_format, **params)
    cuts = sorted({*range(32, len(data), max(1, len(data) // 40)), len(data) - 1, len(data) - 2})
    for cut in cuts:
        error = refusal(data[:cut])
        assert error.code == "corrupt", (cut, error)


def test_truncated_jpeg_message_says_the_data_is_damaged() -> None:
    """A half JPEG's message names JPEG and truncation, for the operator reading the sidecar."""
    error = refusal(hostile.truncated(encoded(text_image(), "JPEG"), 0.5))
    assert (error.code, error.page) == ("corrupt", 0)
    assert "JPEG" in error.message and "truncated" in error.message


def test_png_with_broken_header_checksum_is_corrupt() -> None:
    """A PNG whose IHDR CRC does not match is 'corrupt'."""
    error = refusal(hostile.png_with_bad_header_crc(text_image()))
    assert error.code == "corrupt" and "PNG" in error.message


def test_png_with_damaged_compressed_pixels_is_corrupt() -> None:
    """A PNG whose zlib pixel stream is garbage (with a valid chunk CRC) is 'corrupt'."""
    assert refusal(hostile.png_with_damaged_pixels(text_image())).code == "corrupt"


def test_tiff_whose_ifds_loop_back_ends_instead_of_spinning() -> None:
    """A TIFF whose last IFD points back at the first yields its two real pages and stops."""
    pages = [hostile.TiffPage(10, 10, fill=0), hostile.TiffPage(12, 10, fill=255)]
    with open_document(hostile.tiff_document(pages, loop_back=True), DEFAULT_LIMITS) as document:
        sizes = [page.image.size for page in document.pages()]
    assert sizes == [(10, 10), (12, 10)]


# --- pixel bombs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        hostile.png_claiming_size(35_000, 35_000),
        hostile.jpeg_claiming_size(65_000, 65_000),
        hostile.gif_claiming_size(65_535, 65_535),
        hostile.bmp_claiming_size(100_000, 100_000),
        hostile.tiff_document([hostile.TiffPage(4, 4, claimed=(100_000, 100_000))]),
    ],
    ids=["png", "jpeg", "gif", "bmp", "tiff"],
)
def test_headers_claiming_billions_of_pixels_are_page_too_large(data: bytes) -> None:
    """Small files whose headers claim >1 gigapixel are 'page_too_large', not decoded."""
    assert refusal(data).code == "page_too_large"


def test_hard_pixel_limit_is_checked_from_the_header_before_decoding() -> None:
    """A 25 MP PNG header over one row of data is 'page_too_large' (decoding would say 'corrupt')."""
    data = hostile.png_claiming_size(5_000, 5_000)
    limits = LimitsSettings(max_page_pixels=1_000_000, hard_max_page_pixels=10_000_000)
    error = refusal(data, limits)
    assert error.code == "page_too_large"
    assert "5000x5000" in error.message and "refused before decoding" in error.message
    # The same file under the default hard limit is decoded, and its missing data shows.
    assert refusal(data, LimitsSettings(max_page_pixels=1_000_000)).code == "corrupt"


def test_jpeg_over_the_hard_limit_is_refused_from_its_frame_header() -> None:
    """A JPEG whose frame header claims 25 MP is 'page_too_large' under a 10 MP hard limit."""
    limits = LimitsSettings(max_page_pixels=1_000_000, hard_max_page_pixels=10_000_000)
    error = refusal(hostile.jpeg_claiming_size(5_000, 5_000), limits)
    assert error.code == "page_too_large" and "5000x5000" in error.message


def test_later_tiff_page_over_the_hard_limit_is_refused_when_reached() -> None:
    """A TIFF whose second page claims 10 gigapixels yields page 1, then 'page_too_large'."""
    pages = [hostile.TiffPage(8, 8), hostile.TiffPage(8, 8, claimed=(100_000, 100_000))]
    with open_document(hostile.tiff_document(pages), DEFAULT_LIMITS) as document:
        iterator = document.pages()
        assert next(iterator).image.size == (8, 8)
        with pytest.raises(BadInputError) as raised:
            next(iterator)
    assert raised.value.code == "page_too_large" and "page 2" in raised.value.message
    assert raised.value.page == 1  # 0-based, like Page.index


# --- the property: mutated files ------------------------------------------------------

FUZZ_LIMITS = LimitsSettings(
    max_file_bytes=1_000_000,
    max_pages=3,
    max_page_pixels=20_000,
    hard_max_page_pixels=2_000_000,
    pdf_dpi=72,
)


@functools.cache
def fuzz_samples() -> dict[str, bytes]:
    """Small valid files of every format and several pixel modes, the fuzzer's seeds."""
    page = text_image(96, 64)
    # Copies: Pillow leaves a format's encoder settings on a saved image, and a
    # multi-page TIFF save would reuse the JPEG encoder's settings on `page`.
    frames = [page.copy(), Image.new("RGB", (96, 64), "navy")]
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turn 90 degrees clockwise
    rotated_exif = exif.tobytes()
    return {
        "png": encoded(page, "PNG"),
        "png-palette": encoded(page.convert("P", palette=Image.Palette.ADAPTIVE, colors=8), "PNG"),
        "png-16bit": encoded(
            Image.fromarray(np.asarray(page.convert("L"), np.uint16) * 257), "PNG"
        ),
        "jpeg": encoded(page, "JPEG", quality=70),
        "jpeg-exif-rotated": encoded(page.copy(), "JPEG", exif=rotated_exif),
        "png-rgba": encoded(page.convert("RGBA"), "PNG"),
        "webp-lossless-alpha": encoded(page.convert("RGBA"), "WEBP", lossless=True),
        "bmp-rle": encoded(page.convert("P"), "BMP", compression="bmp_rle"),
        "jpeg-progressive-cmyk": encoded(page.convert("CMYK"), "JPEG", progressive=True),
        "tiff-mixed-modes": encoded(
            page.convert("1"), "TIFF", save_all=True, append_images=[frames[0].copy(), frames[1]]
        ),
        "tiff-lzw": encoded(
            page.convert("L"),
            "TIFF",
            save_all=True,
            append_images=[Image.new("L", (64, 96), 90)],
            compression="tiff_lzw",
        ),
        "tiff-group4": encoded(page.convert("1"), "TIFF", compression="group4"),
        "tiff-raw": hostile.tiff_document([hostile.TiffPage(20, 10), hostile.TiffPage(10, 20)]),
        "gif-animated": encoded(page.copy(), "GIF", save_all=True, append_images=frames[1:]),
        "webp": encoded(page, "WEBP", quality=60),
        "bmp": encoded(page.convert("P"), "BMP"),
        "pdf": hostile.pdf_document(
            [
                hostile.PdfPage(200, 100, lines=["Fuzz"]),
                hostile.PdfPage(100, 200, extra="/Rotate 90"),
            ]
        ),
    }


MAGIC_NUMBERS = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF]


@st.composite
def mutated_files(draw: st.DrawFn) -> tuple[str, bytes]:
    samples = fuzz_samples()
    name = draw(st.sampled_from(sorted(samples)))
    data = bytearray(samples[name])
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break  # cut to nothing: the empty file is a case of its own
        # Mostly past the magic bytes (else most examples are just 'unsupported_format').
        first = min(draw(st.sampled_from([0, 12, 12, 12])), len(data) - 1)
        where = draw(st.integers(first, len(data) - 1))
        action = draw(st.sampled_from(["flip", "truncate", "insert", "number", "splice"]))
        if action == "flip":
            data[where] = draw(st.integers(0, 255))
        elif action == "truncate":
            del data[where:]
        elif action == "insert":
            donor = samples[draw(st.sampled_from(sorted(samples)))]
            start = draw(st.integers(0, len(donor) - 1))
            data[where:where] = donor[start : start + draw(st.integers(1, 64))]
        elif action == "number":
            width = draw(st.sampled_from([2, 4]))
            value = draw(st.sampled_from(MAGIC_NUMBERS)) & ((1 << (8 * width)) - 1)
            order = draw(st.sampled_from(["little", "big"]))
            data[where : where + width] = value.to_bytes(width, order)
        else:  # another format's body behind this one's header
            donor = samples[draw(st.sampled_from(sorted(samples)))]
            data = data[: min(where, 64)] + bytearray(donor[min(where, 64) :])
    return name, bytes(data)


@pytest.mark.timeout(240)
@settings(
    max_examples=200,
    deadline=5000,
    database=None,  # leave no .hypothesis/ folder in the work tree; failures print their input
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated_files())
def test_mutated_files_give_rgb_pages_within_limits_or_bad_input_error(
    sample: tuple[str, bytes],
) -> None:
    """Any mutation of a valid file opens to RGB pages within the limits, or raises BadInputError."""
    name, data = sample
    try:
        with open_document(data, FUZZ_LIMITS, name=f"sample.{name}") as document:
            assert document.format in FORMATS
            assert 1 <= document.pages_to_process <= FUZZ_LIMITS.max_pages
            assert document.pages_to_process <= document.page_count
            indexes = []
            for page in document.pages():
                width, height = page.image.size
                assert page.image.mode == "RGB"
                assert width >= 1 and height >= 1
                assert width * height <= FUZZ_LIMITS.max_page_pixels
                assert 0 < page.scale <= 1
                indexes.append(page.index)
            assert indexes == list(range(document.pages_to_process))
    except BadInputError as error:
        assert error.code in CODES
        assert error.message
