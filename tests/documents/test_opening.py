"""daemon.documents.opening on raster images: formats, pixel modes, orientation, limits.

PDF behaviour is in test_opening_pdf.py, bad and hostile inputs in
test_opening_hostile.py. Every input is built here, in the test.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFile

from daemon.documents.opening import (
    BadInputError,
    Document,
    Page,
    fit_within,
    open_document,
    sniff_format,
)
from daemon.settings import LimitsSettings
from harness.pages import render_page, save_jpeg_with_orientation
from tests.support import hostile
from tests.support.images import encoded, mean_difference

DEFAULT_LIMITS = LimitsSettings()


def small_page(width: int = 480, height: int = 320) -> Image.Image:
    """A small landscape page with large text: its orientation is easy to see."""
    return render_page(
        ["Upright text 123", "second line"], width=width, height=height, font_px=36, margin=30
    )


def only_page(data: bytes, limits: LimitsSettings = DEFAULT_LIMITS, name: str = "") -> Page:
    with open_document(data, limits, name=name) as document:
        pages = list(document.pages())
    assert len(pages) == 1
    return pages[0]


def assert_rgb_page(page: Page, size: tuple[int, int]) -> None:
    assert page.image.mode == "RGB"
    assert page.image.size == size


# --- formats ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pillow_format", "params", "expected", "tolerance"),
    [
        ("PNG", {}, "png", 0),
        ("JPEG", {"quality": 95}, "jpeg", 4),
        ("TIFF", {"compression": "tiff_lzw"}, "tiff", 0),
        ("WEBP", {"lossless": True}, "webp", 0),
        ("BMP", {}, "bmp", 0),
        ("GIF", {}, "gif", 2),
    ],
)
def test_each_raster_format_opens_as_one_rgb_page_matching_the_original(
    pillow_format: str, params: dict[str, object], expected: str, tolerance: float
) -> None:
    """PNG, JPEG, TIFF, WebP, BMP and GIF each give one RGB page with the original's pixels."""
    original = small_page()
    data = encoded(original, pillow_format, **params)
    assert sniff_format(data) == expected
    with open_document(data, DEFAULT_LIMITS) as document:
        assert (document.format, document.page_count, document.pages_to_process) == (expected, 1, 1)
        [page] = list(document.pages())
    assert_rgb_page(page, original.size)
    assert (page.index, page.scale, page.notes) == (0, 1.0, ())
    assert mean_difference(page.image, original) <= tolerance


def test_content_decides_the_format_not_the_name() -> None:
    """A PNG named .jpg is read as PNG, and a note says the name was wrong."""
    original = small_page()
    with open_document(encoded(original, "PNG"), DEFAULT_LIMITS, name="scan.JPG") as document:
        assert document.format == "png"
        assert document.notes == ("the name says JPEG but the content is PNG; read as PNG",)
        [page] = list(document.pages())
    assert mean_difference(page.image, original) == 0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n....", "png"),
        (b"\xff\xd8\xff\xe0", "jpeg"),
        (b"II*\x00\x08\x00\x00\x00", "tiff"),
        (b"MM\x00*\x00\x00\x00\x08", "tiff"),
        (b"II+\x00\x08\x00\x00\x00", "tiff"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8L", "webp"),
        (b"GIF87a", "gif"),
        (b"GIF89a", "gif"),
        (b"BM" + bytes(12) + b"\x28\x00\x00\x00", "bmp"),
        (b"%PDF-1.7\n", "pdf"),
        (b"mail gateway banner\r\n%PDF-1.4\n", "pdf"),
        (b"BMW service invoice, March", None),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", None),
        (b"hello world", None),
        (b"\x00" * 2000 + b"%PDF-1.4", None),
        (b"", None),
    ],
)
def test_sniff_format_reads_magic_bytes(data: bytes, expected: str | None) -> None:
    """sniff_format names the format from the leading bytes, and None for anything else."""
    assert sniff_format(data) == expected


# --- pixel modes -------------------------------------------------------------------


def test_palette_png_becomes_rgb_with_the_same_colours() -> None:
    """A 16-colour palette PNG comes out RGB with the palette's colours."""
    original = small_page()
    palette = original.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    page = only_page(encoded(palette, "PNG"))
    assert_rgb_page(page, original.size)
    assert mean_difference(page.image, palette.convert("RGB")) == 0


def test_palette_transparency_is_flattened_on_white() -> None:
    """Palette entries marked transparent come out white, not the palette's black."""
    image = Image.new("P", (40, 20), 0)
    image.putpalette([0, 0, 0, 200, 0, 0])  # 0: black (transparent), 1: red
    image.paste(1, (0, 0, 20, 20))
    page = only_page(encoded(image, "PNG", transparency=0))
    assert page.image.getpixel((30, 10)) == (255, 255, 255)
    assert page.image.getpixel((5, 10)) == (200, 0, 0)


def test_gif_transparency_is_flattened_on_white() -> None:
    """A GIF's transparent colour index comes out white."""
    image = Image.new("P", (40, 20), 0)
    image.putpalette([0, 0, 0, 0, 0, 180])
    image.paste(1, (0, 0, 20, 20))
    page = only_page(encoded(image, "GIF", transparency=0))
    assert page.image.getpixel((30, 10)) == (255, 255, 255)
    assert page.image.getpixel((5, 10)) == (0, 0, 180)


@pytest.mark.parametrize(
    ("image", "pillow_format"),
    [
        (small_page().convert("1"), "PNG"),
        (small_page().convert("1"), "BMP"),
        (small_page().convert("1"), "TIFF"),
        (small_page().convert("L"), "PNG"),
        (small_page().convert("L"), "TIFF"),
    ],
    ids=["1-bit-png", "1-bit-bmp", "1-bit-tiff", "gray-png", "gray-tiff"],
)
def test_bilevel_and_gray_images_become_rgb(image: Image.Image, pillow_format: str) -> None:
    """1-bit and 8-bit grayscale images come out RGB with the same light and dark pixels."""
    page = only_page(encoded(image, pillow_format))
    assert_rgb_page(page, image.size)
    assert mean_difference(page.image, image.convert("RGB")) == 0


def test_group4_bilevel_tiff_from_a_scanner_becomes_rgb() -> None:
    """A CCITT group 4 compressed TIFF (what scanners send) decodes to the same page."""
    image = small_page().convert("1")
    page = only_page(encoded(image, "TIFF", compression="group4"))
    assert mean_difference(page.image, image.convert("RGB")) == 0


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_alpha_is_flattened_on_white(mode: str) -> None:
    """Fully transparent pixels become white and half-transparent black becomes mid gray."""
    image = Image.new(mode, (30, 10), (0,) * len(mode))  # transparent black
    image.paste((0,) * (len(mode) - 1) + (128,), (10, 0, 20, 10))  # half-transparent black
    image.paste((0,) * (len(mode) - 1) + (255,), (20, 0, 30, 10))  # opaque black
    page = only_page(encoded(image, "PNG"))
    assert page.image.getpixel((5, 5)) == (255, 255, 255)
    assert all(abs(channel - 127) <= 2 for channel in page.image.getpixel((15, 5)))
    assert page.image.getpixel((25, 5)) == (0, 0, 0)


def test_rgb_png_transparent_colour_is_flattened_on_white() -> None:
    """An RGB PNG's tRNS colour (every black pixel transparent) comes out white."""
    image = Image.new("RGB", (20, 10), (0, 0, 0))
    image.paste((0, 128, 0), (10, 0, 20, 10))
    page = only_page(encoded(image, "PNG", transparency=(0, 0, 0)))
    assert page.image.getpixel((5, 5)) == (255, 255, 255)
    assert page.image.getpixel((15, 5)) == (0, 128, 0)


def sixteen_bit_page() -> Image.Image:
    """A 16-bit grayscale page: background 50000, ink 5000 (of 65535)."""
    values = np.full((40, 60), 50_000, dtype=np.uint16)
    values[10:30, 10:30] = 5_000
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    return image


@pytest.mark.parametrize(
    ("pillow_format", "big_endian"), [("PNG", False), ("TIFF", False), ("TIFF", True)]
)
def test_16_bit_grayscale_is_scaled_to_8_bit_not_clipped_to_white(
    pillow_format: str, big_endian: bool
) -> None:
    """16-bit gray values (either byte order) are divided by 257: 50000 -> 195, 5000 -> 19."""
    image = sixteen_bit_page()
    if big_endian:  # a Motorola-order ("MM") TIFF, which Pillow opens as I;16B
        image = Image.frombytes("I;16B", image.size, np.asarray(image).astype(">u2").tobytes())
    data = encoded(image, pillow_format)
    assert not big_endian or data.startswith(b"MM")
    page = only_page(data)
    assert_rgb_page(page, (60, 40))
    assert page.image.getpixel((50, 5)) == (195, 195, 195)
    assert page.image.getpixel((20, 20)) == (19, 19, 19)


@pytest.mark.parametrize(
    ("values", "background", "ink"),
    [
        (np.array([[0, 255]], dtype=np.int32), 255, 0),  # already 8-bit values
        (np.array([[5_000, 50_000]], dtype=np.int32), 195, 19),  # 16-bit values in 32 bits
        (np.array([[-1_000, 3_000_000]], dtype=np.int32), 255, 0),  # any other range: stretched
        (np.array([[0.0, 1.0]], dtype=np.float32), 255, 0),  # float 0..1
        (np.array([[-2.5, 7.5]], dtype=np.float32), 255, 0),  # float, any range: stretched
    ],
    ids=["int-8-bit-range", "int-16-bit-range", "int-other-range", "float-unit", "float-other"],
)
def test_32_bit_int_and_float_tiffs_are_scaled_by_their_value_range(
    values: np.ndarray, background: int, ink: int
) -> None:
    """Mode I and F TIFFs map their value range onto 0..255 instead of clipping."""
    image = Image.fromarray(np.repeat(np.repeat(values, 10, axis=0), 10, axis=1))
    assert image.mode in ("I", "F")
    page = only_page(encoded(image, "TIFF"))
    assert_rgb_page(page, image.size)
    assert page.image.getpixel((15, 5)) == (background,) * 3
    assert page.image.getpixel((5, 5)) == (ink,) * 3


@pytest.mark.parametrize("pillow_format", ["JPEG", "TIFF"])
def test_cmyk_becomes_rgb_with_the_right_colours(pillow_format: str) -> None:
    """CMYK pages come out in their real colours (Pillow writes JPEG CMYK Adobe-inverted)."""
    image = Image.new("CMYK", (32, 16), (0, 255, 255, 0))  # red
    image.paste((255, 255, 0, 0), (16, 0, 32, 16))  # blue
    data = encoded(image, pillow_format)
    if pillow_format == "JPEG":
        assert b"Adobe" in data[:64]  # the APP14 marker that says the ink values are inverted
    page = only_page(data)
    red, blue = page.image.getpixel((4, 8)), page.image.getpixel((28, 8))
    assert red[0] > 230 and red[1] < 30 and red[2] < 30
    assert blue[0] < 30 and blue[1] < 30 and blue[2] > 230


def test_mixed_mode_multipage_tiff_gives_every_page_in_rgb() -> None:
    """A TIFF with a 1-bit, an RGB and a 16-bit page gives three RGB pages, none blank."""
    first = small_page().convert("1")
    second = Image.new("RGB", (50, 30), (200, 30, 30))
    third = sixteen_bit_page()
    data = encoded(first, "TIFF", save_all=True, append_images=[second, third])
    with open_document(data, DEFAULT_LIMITS) as document:
        assert document.page_count == 3
        pages = list(document.pages())
    assert [page.index for page in pages] == [0, 1, 2]
    assert [page.image.mode for page in pages] == ["RGB"] * 3
    assert [page.image.size for page in pages] == [first.size, (50, 30), (60, 40)]
    assert mean_difference(pages[0].image, first.convert("RGB")) == 0
    assert pages[1].image.getpixel((5, 5)) == (200, 30, 30)
    assert pages[2].image.getpixel((20, 20)) == (19, 19, 19)


def test_multipage_tiff_reports_count_and_sizes_of_every_page() -> None:
    """A five-page LZW TIFF has page_count 5 and yields its pages in order with their sizes."""
    sizes = [(100 + 10 * i, 80 + 5 * i) for i in range(5)]
    images = [Image.new("L", size, 40 * i) for i, size in enumerate(sizes)]
    data = encoded(
        images[0], "TIFF", save_all=True, append_images=images[1:], compression="tiff_lzw"
    )
    with open_document(data, DEFAULT_LIMITS) as document:
        assert (document.page_count, document.pages_to_process, document.notes) == (5, 5, ())
        pages = list(document.pages())
    assert [page.image.size for page in pages] == sizes
    assert [page.image.getpixel((0, 0)) for page in pages] == [(40 * i,) * 3 for i in range(5)]


@pytest.mark.parametrize("pillow_format", ["GIF", "WEBP", "PNG"])
def test_animated_images_give_only_their_first_frame(pillow_format: str) -> None:
    """Animated GIF, WebP and PNG give one page: the first frame, with a note naming the rest."""
    red, green, blue = (Image.new("RGB", (20, 20), colour) for colour in ("red", "lime", "blue"))
    params: dict[str, object] = {"save_all": True, "append_images": [green, blue]}
    if pillow_format == "WEBP":
        params["lossless"] = True
    with open_document(encoded(red, pillow_format, **params), DEFAULT_LIMITS) as document:
        assert (document.page_count, document.pages_to_process) == (1, 1)
        assert any("only the first of 3 frames" in note for note in document.notes)
        [page] = list(document.pages())
    assert page.image.getpixel((10, 10)) == (255, 0, 0)


# --- orientation -------------------------------------------------------------------


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_is_applied_so_the_page_comes_out_upright(
    tmp_path: object, orientation: int
) -> None:
    """A JPEG stored sideways or upside down with EXIF orientation 3/6/8 comes out upright."""
    from pathlib import Path

    original = small_page()
    path = save_jpeg_with_orientation(original, Path(str(tmp_path)) / "photo.jpg", orientation)
    stored = Image.open(path)
    if orientation in (6, 8):
        assert stored.size == (original.height, original.width)  # really stored sideways
    page = only_page(path.read_bytes())
    assert_rgb_page(page, original.size)
    assert mean_difference(page.image, original) < 6
    assert mean_difference(page.image, original.transpose(Image.Transpose.ROTATE_180)) > 12


def test_tiff_orientation_tag_is_applied() -> None:
    """A TIFF whose Orientation tag says 6 (turn 90 degrees clockwise) comes out upright."""
    original = small_page()
    stored = original.transpose(Image.Transpose.ROTATE_90)
    page = only_page(encoded(stored, "TIFF", tiffinfo={274: 6}))
    assert mean_difference(page.image, original) == 0


# --- pixel and page limits -----------------------------------------------------------


def test_page_above_max_page_pixels_is_downscaled_with_a_note() -> None:
    """A 400x300 page with max_page_pixels 30,000 comes out 200x150, scale 0.5, with a note."""
    limits = LimitsSettings(max_page_pixels=30_000)
    original = small_page(400, 300)
    page = only_page(encoded(original, "PNG"), limits)
    assert_rgb_page(page, (200, 150))
    assert page.scale == 0.5
    assert page.notes == (
        "downscaled from 400x300 to 200x150 to fit limits.max_page_pixels (30,000)",
    )
    assert mean_difference(page.image, original.resize((200, 150))) < 10


@pytest.mark.parametrize("size", [(1000, 1), (1, 1000), (997, 13), (641, 479)])
def test_downscaled_pages_never_exceed_max_page_pixels(size: tuple[int, int]) -> None:
    """Odd and extreme shapes are downscaled to at most max_page_pixels, never to zero."""
    limits = LimitsSettings(max_page_pixels=500)
    page = only_page(encoded(Image.new("L", size, 128), "PNG"), limits)
    width, height = page.image.size
    assert width >= 1 and height >= 1 and width * height <= 500
    assert page.image.mode == "RGB" and page.scale < 1


def test_large_jpeg_is_reduced_while_decoding() -> None:
    """A JPEG far above the limit is decoded at 1/4 scale by libjpeg, then fitted exactly."""
    limits = LimitsSettings(max_page_pixels=100_000)
    original = small_page(1600, 1200)
    page = only_page(encoded(original, "JPEG", quality=90), limits)
    width, height = page.image.size
    assert width * height <= 100_000
    assert (width, height) == fit_within(1600, 1200, 100_000) == (365, 273)
    assert page.notes[0] == "JPEG decoded at 1/4 scale"
    assert page.notes[1].startswith("downscaled from 1600x1200 to")


def test_exif_rotated_downscaled_jpeg_is_upright_and_within_the_limit(tmp_path: object) -> None:
    """Reduce-while-decoding and EXIF rotation together give an upright page within the limit."""
    from pathlib import Path

    original = small_page(960, 640)
    path = save_jpeg_with_orientation(original, Path(str(tmp_path)) / "photo.jpg", 6)
    page = only_page(path.read_bytes(), LimitsSettings(max_page_pixels=960 * 640 // 4))
    assert page.image.size == (480, 320)
    assert mean_difference(page.image, original.resize((480, 320))) < 8


def test_more_pages_than_max_pages_processes_the_first_n_with_a_note() -> None:
    """With max_pages 2, a 5-page TIFF yields its first 2 pages and the document notes the cut."""
    pages = [hostile.TiffPage(10, 10, fill=i * 50) for i in range(5)]
    with open_document(hostile.tiff_document(pages), LimitsSettings(max_pages=2)) as document:
        assert (document.page_count, document.pages_to_process) == (5, 2)
        assert document.notes == ("page limit: 2 of 5 pages processed (limits.max_pages)",)
        out = list(document.pages())
    assert [page.image.getpixel((0, 0)) for page in out] == [(0, 0, 0), (50, 50, 50)]


def test_pages_are_decoded_lazily_one_at_a_time() -> None:
    """Pages before a bad page are delivered before the bad page's error is raised."""
    pages = [
        hostile.TiffPage(10, 10),
        hostile.TiffPage(10, 10),
        hostile.TiffPage(10, 10, claimed=(100_000, 100_000)),
    ]
    with open_document(hostile.tiff_document(pages), DEFAULT_LIMITS) as document:
        iterator = document.pages()
        assert next(iterator).index == 0
        assert next(iterator).index == 1
        with pytest.raises(BadInputError) as raised:
            next(iterator)
    assert raised.value.code == "page_too_large"
    assert "page 3" in raised.value.message


def test_pages_can_be_iterated_again_with_the_same_result() -> None:
    """A second pages() call decodes the document afresh and yields the same pages."""
    limits = LimitsSettings(max_page_pixels=20_000)
    with open_document(encoded(small_page(800, 600), "JPEG"), limits) as document:
        first = [(page.image.tobytes(), page.notes) for page in document.pages()]
        second = [(page.image.tobytes(), page.notes) for page in document.pages()]
    assert first == second


def test_a_closed_document_refuses_to_give_pages() -> None:
    """close() (or leaving the with-block) ends the document; pages() afterwards is an error."""
    document = open_document(encoded(small_page(), "PNG"), DEFAULT_LIMITS)
    assert isinstance(document, Document)
    with document:
        pass
    with pytest.raises(RuntimeError):
        document.pages()


@pytest.mark.parametrize(
    ("size", "limit", "expected"),
    [
        ((400, 300), 120_000, (400, 300)),
        ((400, 300), 30_000, (200, 150)),
        ((1_000_000, 1), 1_000, (1_000, 1)),
        ((1, 1_000_000), 1_000, (1, 1_000)),
        ((35_000, 35_000), 40_000_000, (6324, 6324)),
    ],
)
def test_fit_within_keeps_the_aspect_ratio_under_the_pixel_limit(
    size: tuple[int, int], limit: int, expected: tuple[int, int]
) -> None:
    """fit_within returns the largest same-shaped size with at most `limit` pixels."""
    assert fit_within(*size, limit) == expected


def test_pillow_safety_switches_are_left_on() -> None:
    """Importing and using documents leaves Pillow's bomb guard on and truncated loading off."""
    only_page(encoded(small_page(), "PNG"))
    assert Image.MAX_IMAGE_PIXELS == 89_478_485
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_images_are_refused_even_if_another_library_allowed_them() -> None:
    """A truncated JPEG is 'corrupt' even when LOAD_TRUNCATED_IMAGES was set True elsewhere."""
    data = hostile.truncated(encoded(small_page(), "JPEG"), 0.7)
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with pytest.raises(BadInputError) as raised:
            only_page(data)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored for whoever set it
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    assert raised.value.code == "corrupt"
