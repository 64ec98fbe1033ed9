"""Where a page's pixels are in PDF space: the affine maps the text layer is drawn through.

Three frames meet here. The engine reports boxes in pixels of the *upright*
page (y down): the image it was given, turned clockwise by `rotation`. That
image is the page as a viewer *shows* it (pdfium renders a PDF page's crop box
with its /Rotate applied; an image's EXIF orientation is applied before OCR,
and img2pdf gives its page the same /Rotate). PDF content is drawn in the
page's *user space* (points, y up, before /Rotate). A text layer drawn in the
upright frame through `upright_to_given` then `shown_to_user_space` lands on
the words however the page was scanned or turned.

Affines are PDF's six numbers (a, b, c, d, e, f): x' = a x + c y + e, y' = b x + d y + f.
"""

from __future__ import annotations

from collections.abc import Sequence

Affine = tuple[float, float, float, float, float, float]

IDENTITY: Affine = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)


def compose(first: Affine, then: Affine) -> Affine:
    """The affine that applies `first`, then `then`."""
    a1, b1, c1, d1, e1, f1 = first
    a2, b2, c2, d2, e2, f2 = then
    return (
        a1 * a2 + b1 * c2,
        a1 * b2 + b1 * d2,
        c1 * a2 + d1 * c2,
        c1 * b2 + d1 * d2,
        e1 * a2 + f1 * c2 + e2,
        e1 * b2 + f1 * d2 + f2,
    )


def apply(affine: Affine, x: float, y: float) -> tuple[float, float]:
    a, b, c, d, e, f = affine
    return (a * x + c * y + e, b * x + d * y + f)


def given_size(upright: tuple[float, float], rotation: int) -> tuple[float, float]:
    """The size of the image the engine was given, from the upright page's size."""
    width, height = upright
    return (height, width) if rotation % 180 else (width, height)


def upright_to_given(upright: tuple[float, float], rotation: int) -> Affine:
    """Upright-page pixels back to pixels of the image as given (turn back counter-clockwise)."""
    width, height = upright
    rotation %= 360
    if rotation == 90:
        return (0.0, -1.0, 1.0, 0.0, 0.0, width)
    if rotation == 180:
        return (-1.0, 0.0, 0.0, -1.0, width, height)
    if rotation == 270:
        return (0.0, 1.0, -1.0, 0.0, height, 0.0)
    return IDENTITY


def shown_to_user_space(
    box: Sequence[float], page_rotate: int, shown_pixels: tuple[float, float]
) -> Affine:
    """Pixels of the page as shown (y down) to the page's user space.

    `box` is the shown box in user space (the crop box: x0, y0, x1, y1),
    `page_rotate` the page's /Rotate (clockwise degrees, a multiple of 90), and
    `shown_pixels` the size of the shown page in pixels (whatever resolution).
    """
    x0, y0, x1, y1 = (float(value) for value in box)
    x0, x1 = min(x0, x1), max(x0, x1)
    y0, y1 = min(y0, y1), max(y0, y1)
    width_pt, height_pt = x1 - x0, y1 - y0
    shown_w, shown_h = shown_pixels
    rotate = page_rotate % 360
    if rotate == 90:
        # Shown x runs up user space, shown y (down) runs right.
        return (0.0, height_pt / shown_w, width_pt / shown_h, 0.0, x0, y0)
    if rotate == 180:
        return (-width_pt / shown_w, 0.0, 0.0, height_pt / shown_h, x1, y0)
    if rotate == 270:
        return (0.0, -height_pt / shown_w, -width_pt / shown_h, 0.0, x1, y1)
    return (width_pt / shown_w, 0.0, 0.0, -height_pt / shown_h, x0, y1)


def shown_size_points(box: Sequence[float], page_rotate: int) -> tuple[float, float]:
    """Width and height of the shown page in points."""
    x0, y0, x1, y1 = (float(value) for value in box)
    width, height = abs(x1 - x0), abs(y1 - y0)
    return (height, width) if page_rotate % 180 else (width, height)
