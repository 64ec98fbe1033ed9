"""daemon.documents.opening on PDFs: page counts, render sizes, limits, bad PDFs, bounded memory."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from daemon.documents.opening import BadInputError, open_document, pdf_render_scale
from daemon.settings import LimitsSettings
from harness.pages import render_page, save_pdf
from tests.support import hostile
from tests.support.images import dark_box

DEFAULT_LIMITS = LimitsSettings()
REPO_ROOT = Path(__file__).resolve().parents[2]
A4_AT_200_DPI = (1654, 2339)


def rendered_pages(data: bytes, limits: LimitsSettings = DEFAULT_LIMITS) -> list:
    with open_document(data, limits) as document:
        return list(document.pages())


def assert_size_close(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert abs(size[0] - expected[0]) <= 1 and abs(size[1] - expected[1]) <= 1, size


def test_a4_page_renders_at_200_dpi_as_1654_by_2339() -> None:
    """An A4 text page renders at the default 200 DPI to 1654x2339 (+-1) RGB, with the text."""
    data = hostile.pdf_document([hostile.PdfPage(lines=["Invoice 48213"])])
    with open_document(data, DEFAULT_LIMITS) as document:
        assert (document.format, document.page_count, document.pages_to_process) == ("pdf", 1, 1)
        [page] = list(document.pages())
    assert page.image.mode == "RGB"
    assert_size_close(page.image.size, A4_AT_200_DPI)
    assert (page.index, page.scale, page.notes) == (0, 1.0, ())
    box = dark_box(page.image)
    assert box is not None and box[0] < 150 and box[1] < 200  # text near the top left


def test_scanner_style_image_pdf_pages_keep_their_pixel_size(tmp_path: Path) -> None:
    """A scanner's image-only PDF made at 200 DPI renders back at 1654x2339 per page."""
    path = save_pdf([render_page(), render_page(["Second page"])], tmp_path / "scan.pdf", dpi=200)
    pages = rendered_pages(path.read_bytes())
    assert [page.index for page in pages] == [0, 1]
    for page in pages:
        assert page.image.size == A4_AT_200_DPI
        assert dark_box(page.image) is not None


@pytest.mark.parametrize(
    ("dpi", "size"),
    [
        (200, (1654, 2339)),  # A4
        (300, (2480, 3508)),  # A4
        (150, (1241, 1754)),  # A4
        (200, (1700, 2200)),  # Letter
        (300, (2550, 3300)),  # Letter
        (600, (4960, 7016)),  # A4
    ],
)
def test_a_scan_rendered_at_its_own_dpi_is_not_one_pixel_wider(
    tmp_path: Path, dpi: int, size: tuple[int, int]
) -> None:
    """pdfium's float32 page sizes (595.44 -> 595.4400024 pt) do not add a pixel that stretches the scan."""
    scan = render_page().resize(size).convert("1")
    path = save_pdf([scan], tmp_path / "scan.pdf", dpi=dpi)
    [page] = rendered_pages(path.read_bytes(), LimitsSettings(pdf_dpi=dpi))
    assert page.image.size == size
    assert (page.scale, page.notes) == (1.0, ())


def test_a_scan_at_the_render_dpi_comes_back_pixel_for_pixel(tmp_path: Path) -> None:
    """A 1-bit A4 scan at 200 DPI (lossless in the PDF) renders to exactly the scanned pixels."""
    scan = render_page(["Invoice 48213 within 30 days"]).convert("1")
    path = save_pdf([scan], tmp_path / "scan.pdf", dpi=200)
    [page] = rendered_pages(path.read_bytes())
    assert ImageChops.difference(page.image, scan.convert("RGB")).getbbox() is None


def test_multipage_pdf_yields_every_page_with_its_own_size() -> None:
    """A PDF with A4, A4 landscape (/Rotate 90) and Letter pages yields three pages sized to each."""
    data = hostile.pdf_document(
        [
            hostile.PdfPage(lines=["one"]),
            hostile.PdfPage(lines=["two"], extra="/Rotate 90"),
            hostile.PdfPage(612, 792, lines=["three"]),
        ]
    )
    pages = rendered_pages(data)
    assert [page.index for page in pages] == [0, 1, 2]
    assert_size_close(pages[0].image.size, A4_AT_200_DPI)
    assert_size_close(pages[1].image.size, (A4_AT_200_DPI[1], A4_AT_200_DPI[0]))
    assert pages[2].image.size == (1700, 2200)


def test_pdf_dpi_setting_changes_the_render_resolution() -> None:
    """limits.pdf_dpi = 100 renders Letter at 850x1100, half of the 200 DPI size."""
    data = hostile.pdf_document([hostile.PdfPage(612, 792)])
    [page] = rendered_pages(data, LimitsSettings(pdf_dpi=100))
    assert page.image.size == (850, 1100)
    assert page.scale == 1.0


def test_blank_page_is_a_white_page_not_an_error() -> None:
    """A page with no content renders as an all-white RGB image."""
    [page] = rendered_pages(hostile.pdf_document([hostile.PdfPage()]))
    assert page.image.getextrema() == ((255, 255), (255, 255), (255, 255))


def test_more_pages_than_max_pages_processes_the_first_n_with_a_note() -> None:
    """With max_pages 3, a 7-page PDF yields pages 0..2 and the document notes the cut."""
    data = hostile.pdf_document([hostile.PdfPage(200, 100, lines=[f"p{i}"]) for i in range(7)])
    with open_document(data, LimitsSettings(max_pages=3)) as document:
        assert (document.page_count, document.pages_to_process) == (7, 3)
        assert document.notes == ("page limit: 3 of 7 pages processed (limits.max_pages)",)
        assert [page.index for page in document.pages()] == [0, 1, 2]


def test_five_metre_page_is_rendered_at_a_lower_dpi_to_fit_the_pixel_limit() -> None:
    """A 5 m x 5 m page (39,370 px square at 200 DPI) comes out at most max_page_pixels."""
    side = 5 * hostile.POINTS_PER_METRE
    data = hostile.pdf_document([hostile.PdfPage(side, side, lines=["poster"], font_pt=600)])
    limits = LimitsSettings(max_page_pixels=4_000_000)
    [page] = rendered_pages(data, limits)
    width, height = page.image.size
    assert width * height <= 4_000_000
    assert width == height and width >= 1990  # as large as the limit allows
    assert page.scale == pytest.approx(width / 39_370, rel=1e-3)
    assert len(page.notes) == 1 and "instead of 39370x39370" in page.notes[0]
    assert "limits.max_page_pixels (4,000,000)" in page.notes[0]
    assert dark_box(page.image) is not None  # the content was scaled, not cropped away


def test_huge_pdf_page_is_rendered_within_bounded_memory(tmp_path: Path) -> None:
    """A 35,000 x 35,000 px page (3.7 GB as a full bitmap) peaks far below that in a fresh process."""
    script = r"""
import json, re, sys
from daemon.documents.opening import open_document
from daemon.settings import LimitsSettings
from tests.support import hostile
side = 35_000 * 72 / 200  # points, so that 200 DPI would mean 35,000 pixels
data = hostile.pdf_document([hostile.PdfPage(side, side, lines=["Huge page"], font_pt=400)])
with open_document(data, LimitsSettings()) as document:
    sizes = [page.image.size for page in document.pages()]
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across execve, so a child of a
# large pytest process would report the parent's peak.
status = open("/proc/self/status").read()
peak_kib = int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1))
print(json.dumps({"sizes": sizes, "peak_bytes": peak_kib * 1024}))
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    [(width, height)] = report["sizes"]
    assert width * height <= LimitsSettings().max_page_pixels
    full_render_bytes = 35_000 * 35_000 * 3
    assert report["peak_bytes"] < 1024**3  # the capped render is ~120 MB; 1 GiB is generous
    assert report["peak_bytes"] < full_render_bytes / 3


@pytest.mark.parametrize(
    ("width_pt", "height_pt", "dpi", "limit"),
    [
        (595.276, 841.89, 200, 40_000_000),
        (12_600, 12_600, 200, 40_000_000),
        (14_173.2, 14_173.2, 200, 4_000_000),
        (1e6, 1.0, 200, 40_000),
        (1.0, 1e6, 300, 40_000),
        (0.01, 0.01, 200, 1),
        (997.3, 13.7, 1200, 1_000),
    ],
)
def test_pdf_render_scale_fits_pdfiums_bitmap_within_the_limit(
    width_pt: float, height_pt: float, dpi: int, limit: int
) -> None:
    """The render scale gives a bitmap (ceil of points x scale) within the limit, at most dpi/72."""
    scale = pdf_render_scale(width_pt, height_pt, dpi, limit)
    assert 0 < scale <= dpi / 72
    assert math.ceil(width_pt * scale) * math.ceil(height_pt * scale) <= limit
    if math.ceil(width_pt * dpi / 72) * math.ceil(height_pt * dpi / 72) > limit:
        # Downscaled, but no more than needed: 5% more resolution would not fit.
        bigger = scale * 1.05
        assert math.ceil(width_pt * bigger) * math.ceil(height_pt * bigger) > limit


@pytest.mark.parametrize("size", [(0.0, 100.0), (-5.0, 100.0), (math.nan, 100.0), (math.inf, 1.0)])
def test_pdf_render_scale_refuses_impossible_page_sizes(size: tuple[float, float]) -> None:
    """Zero, negative, NaN and infinite page sizes are 'corrupt', not a crash or a huge bitmap."""
    with pytest.raises(BadInputError) as raised:
        pdf_render_scale(*size, 200, 40_000_000)
    assert raised.value.code == "corrupt"


# --- bad PDFs ----------------------------------------------------------------------


def refusal(data: bytes, limits: LimitsSettings = DEFAULT_LIMITS) -> BadInputError:
    """The BadInputError raised while opening `data` or rendering its pages."""
    with pytest.raises(BadInputError) as raised, open_document(data, limits) as document:
        list(document.pages())
    return raised.value


def test_header_followed_by_eof_is_corrupt() -> None:
    """'%PDF-1.7' then '%%EOF' and nothing else is 'corrupt', with a message about structure."""
    error = refusal(hostile.pdf_header_then_eof())
    assert error.code == "corrupt"
    assert "damaged" in error.message


def test_pdf_with_zero_pages_is_no_pages() -> None:
    """A well-formed PDF whose page tree is empty is 'no_pages'."""
    error = refusal(hostile.pdf_document([]))
    assert error.code == "no_pages"
    assert "no pages" in error.message


def test_password_protected_pdf_is_encrypted_and_says_a_password_is_needed() -> None:
    """A PDF that needs a user password is 'encrypted'; the message names the password."""
    data = hostile.encrypted_pdf(
        hostile.pdf_document([hostile.PdfPage(lines=["secret"])]), user_password="s3cret"
    )
    error = refusal(data)
    assert error.code == "encrypted"
    assert "password" in error.message


def test_pdf_with_only_an_owner_password_opens_normally() -> None:
    """Permissions-only encryption (empty user password) opens and renders like any PDF."""
    data = hostile.encrypted_pdf(
        hostile.pdf_document([hostile.PdfPage(lines=["readable"])]), user_password=""
    )
    [page] = rendered_pages(data)
    assert_size_close(page.image.size, A4_AT_200_DPI)
    assert dark_box(page.image) is not None


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.8])
def test_truncated_pdf_is_corrupt_or_renders_what_survives(keep: float) -> None:
    """A cut-off PDF is 'corrupt', or (pdfium repairs what it can) yields RGB pages; nothing else."""
    whole = hostile.pdf_document([hostile.PdfPage(lines=[f"page {i}"]) for i in range(4)])
    data = hostile.truncated(whole, keep)
    try:
        pages = rendered_pages(data)
    except BadInputError as error:
        assert error.code == "corrupt"
    else:
        assert all(page.image.mode == "RGB" for page in pages)


def test_page_tree_pointing_at_a_missing_object_is_corrupt_when_rendered() -> None:
    """A page tree whose only kid does not exist: opens with 1 page, rendering it is 'corrupt'."""
    data = hostile.pdf_document([hostile.PdfPage()], kids="[99 0 R]")
    with open_document(data, DEFAULT_LIMITS) as document:
        assert document.page_count == 1
        with pytest.raises(BadInputError) as raised:
            list(document.pages())
    assert (raised.value.code, raised.value.page) == ("corrupt", 0)
    assert "page 1 of 1" in raised.value.message


def test_random_bytes_named_pdf_are_unsupported_with_a_clear_message() -> None:
    """Bytes that are not a PDF but are named .pdf are 'unsupported_format', naming the mismatch."""
    with pytest.raises(BadInputError) as raised:
        open_document(bytes(range(256)) * 8, DEFAULT_LIMITS, name="invoice.pdf")
    assert raised.value.code == "unsupported_format"
    assert "invoice.pdf" in raised.value.message and "PDF" in raised.value.message


def test_pdf_pages_are_independent_of_the_closed_document() -> None:
    """Rendered pages stay valid images after the document is closed."""
    data = hostile.pdf_document([hostile.PdfPage(200, 100, lines=["kept"])])
    pages = rendered_pages(data)
    copy = pages[0].image.copy()
    assert isinstance(copy, Image.Image) and copy.getpixel((0, 0)) == (255, 255, 255)
