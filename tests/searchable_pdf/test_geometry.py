"""The affines from upright-page pixels to PDF user space, for every page turn."""

from __future__ import annotations

import pytest

from daemon.searchable_pdf.geometry import (
    apply,
    compose,
    given_size,
    shown_to_user_space,
    upright_to_given,
)

BOX = (10.0, 20.0, 110.0, 220.0)  # a crop box 100 x 200 pt, not at the origin


@pytest.mark.parametrize(
    ("rotate", "top_left", "top_right"),
    [
        (0, (10, 220), (110, 220)),
        (90, (10, 20), (10, 220)),  # turned clockwise: the user-space bottom-left is shown top-left
        (180, (110, 20), (10, 20)),
        (270, (110, 220), (110, 20)),
    ],
)
def test_shown_corners_land_on_the_user_space_corners_a_viewer_shows_there(
    rotate: int, top_left: tuple[float, float], top_right: tuple[float, float]
) -> None:
    """The shown page's top-left and top-right pixels map to the corners /Rotate brings there."""
    shown = (200.0, 100.0) if rotate % 180 else (100.0, 200.0)  # one pixel per point
    affine = shown_to_user_space(BOX, rotate, shown)
    assert apply(affine, 0, 0) == pytest.approx(top_left)
    assert apply(affine, shown[0], 0) == pytest.approx(top_right)


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_upright_corners_go_back_to_the_given_image(rotation: int) -> None:
    """The upright page's top-left pixel is where turning the given image put it, for each turn."""
    upright = (300.0, 200.0)
    width, height = given_size(upright, rotation)
    # Where the given image's corner lands when turned clockwise by `rotation`:
    # the upright top-left comes from the given image's corner that turning brings there.
    expected = {0: (0, 0), 90: (0, height), 180: (width, height), 270: (width, 0)}[rotation]
    assert apply(upright_to_given(upright, rotation), 0, 0) == pytest.approx(expected)


def test_compose_applies_the_first_then_the_second() -> None:
    """compose(a, b) maps a point as b(a(point))."""
    scale = (2.0, 0.0, 0.0, 3.0, 0.0, 0.0)
    shift = (1.0, 0.0, 0.0, 1.0, 5.0, 7.0)
    assert apply(compose(scale, shift), 1, 1) == (7.0, 10.0)
