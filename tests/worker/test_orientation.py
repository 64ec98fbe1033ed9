"""Page orientation from line-box shapes and the 0/180 classifier's votes."""

from __future__ import annotations

import pytest

from daemon.worker.orientation import (
    LineVote,
    Quad,
    estimate_orientation,
    flip_probability,
    rotation_for,
    side_lengths,
)


def rect(x0: float, y0: float, x1: float, y1: float) -> Quad:
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def wide_lines(flip: float, count: int = 8) -> list[LineVote]:
    return [LineVote(rect(100, 100 + 70 * i, 1200, 140 + 70 * i), flip) for i in range(count)]


def tall_lines(flip: float, count: int = 8) -> list[LineVote]:
    return [LineVote(rect(100 + 70 * i, 100, 140 + 70 * i, 1200), flip) for i in range(count)]


def test_upright_page_needs_no_rotation() -> None:
    """Wide boxes whose crops read upright: the page is upright."""
    orientation = estimate_orientation(wide_lines(flip=0.02))
    assert orientation.rotation == 0
    assert not orientation.sideways
    assert orientation.confident


def test_upside_down_page_is_turned_180() -> None:
    """Wide boxes whose crops read upside down: turn the page 180."""
    assert estimate_orientation(wide_lines(flip=0.97)).rotation == 180


def test_sideways_page_with_upright_crops_is_turned_270() -> None:
    """Tall boxes whose quarter-turned crops read upright: the page was turned a quarter clockwise."""
    orientation = estimate_orientation(tall_lines(flip=0.03))
    assert orientation.sideways
    assert orientation.rotation == 270


def test_sideways_page_with_flipped_crops_is_turned_90() -> None:
    """Tall boxes whose quarter-turned crops read upside down: turn the page 90 clockwise."""
    assert estimate_orientation(tall_lines(flip=0.95)).rotation == 90


def test_a_few_tall_boxes_do_not_make_a_page_sideways() -> None:
    """A minority of tall boxes (a rotated table header) leaves an upright page upright."""
    votes = wide_lines(flip=0.05) + tall_lines(flip=0.9, count=2)
    orientation = estimate_orientation(votes)
    assert orientation.rotation == 0
    assert orientation.sideways_share < 0.5


def test_only_dominant_kind_votes_on_flip() -> None:
    """Votes of tall crops do not flip an upright page of wide lines."""
    votes = wide_lines(flip=0.1, count=6) + tall_lines(flip=1.0, count=3)
    orientation = estimate_orientation(votes)
    assert orientation.rotation == 0
    assert set(orientation.voters) == set(range(6))


def test_near_square_boxes_are_ignored() -> None:
    """Boxes that are neither wide nor tall (single characters) have no say."""
    votes = [LineVote(rect(100 * i, 100, 100 * i + 40, 150), 1.0) for i in range(1, 10)]
    orientation = estimate_orientation(votes)
    assert orientation.rotation == 0
    assert orientation.voters == ()
    assert orientation.confident


def test_a_weak_flip_majority_keeps_the_page_upright() -> None:
    """Turning an unrotated page over needs a clear majority, not just over half."""
    orientation = estimate_orientation(wide_lines(flip=0.55))
    assert orientation.rotation == 0
    assert not orientation.confident


def test_longer_lines_weigh_more() -> None:
    """One long upright line outvotes two short upside-down fragments."""
    votes = [
        LineVote(rect(100, 100, 1500, 140), 0.0),
        LineVote(rect(100, 200, 260, 240), 1.0),
        LineVote(rect(100, 300, 260, 340), 1.0),
    ]
    assert estimate_orientation(votes).rotation == 0


def test_no_boxes_means_upright() -> None:
    """With no evidence the page is left as it is."""
    assert estimate_orientation([]).rotation == 0


@pytest.mark.parametrize(
    ("label", "score", "expected"),
    [("0", 0.9, pytest.approx(0.1)), ("180", 0.8, pytest.approx(0.8)), ("180", 1.3, 1.0)],
)
def test_flip_probability_from_classifier_output(label: str, score: float, expected: float) -> None:
    """The classifier's (label, score) becomes P(upside down), clamped to [0, 1]."""
    assert flip_probability(label, score) == expected


@pytest.mark.parametrize(
    ("sideways", "flipped", "rotation"),
    [(False, False, 0), (False, True, 180), (True, False, 270), (True, True, 90)],
)
def test_rotation_table(sideways: bool, flipped: bool, rotation: int) -> None:
    """The four orientations map to the clockwise turn that undoes them."""
    assert rotation_for(sideways, flipped) == rotation


def test_side_lengths_of_a_slanted_box() -> None:
    """Width and height are measured along the box's own sides."""
    width, height = side_lengths(((0, 0), (30, 40), (22, 46), (-8, 6)))
    assert width == pytest.approx(50)
    assert height == pytest.approx(10)
