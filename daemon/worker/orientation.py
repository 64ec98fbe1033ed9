"""Which way up a page is, from evidence the OCR pipeline produces anyway.

The text detector finds line boxes whatever the page orientation, and the
text-line classifier (0 vs 180 degrees) runs on every line crop in the normal
pipeline. Together they give the page orientation for free on the common,
upright page:

- Line boxes taller than wide mean the page lies sideways (90 or 270).
- RapidOCR turns a tall crop a quarter turn counter-clockwise before it is
  classified, so on a sideways page the classifier's "180" votes tell 90 from
  270; on a page that is not sideways they tell 0 from 180.

Everything here is pure arithmetic over boxes and votes, so it is tested
without OCR.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Point = tuple[float, float]
Quad = Sequence[Point]

# RapidOCR turns a crop a quarter turn when height / width >= 1.5
# (process_img.get_rotate_crop_image); boxes nearer to square are not turned,
# so the classifier sees them sideways and their votes mean nothing.
ELONGATION = 1.5
# An upright page is the common case: demand a clear majority before turning it.
SIDEWAYS_SHARE = 0.6
UPSIDE_DOWN_SHARE = 0.6
# Between these flip shares the vote is a coin toss; the caller may settle it
# with recognition confidence.
AMBIGUOUS_LOW = 0.35
AMBIGUOUS_HIGH = 0.65


@dataclass(frozen=True, slots=True)
class LineVote:
    """One detected line: its box and how likely its crop was upside down."""

    box: Quad
    flip_probability: float  # P(crop is upside down), from the 0/180 classifier


@dataclass(frozen=True, slots=True)
class Orientation:
    """The verdict: clockwise degrees that turn the page upright, and why."""

    rotation: int  # 0, 90, 180 or 270
    sideways: bool
    sideways_share: float  # length-weighted share of elongated boxes that are tall
    flip_share: float  # length-weighted upside-down probability of the voting crops
    voters: tuple[int, ...]  # indices of the boxes whose crops voted

    @property
    def confident(self) -> bool:
        """False when the 0/180 vote was too close to call."""
        if not self.voters:
            return True
        return not AMBIGUOUS_LOW < self.flip_share < AMBIGUOUS_HIGH


def flip_probability(label: str, score: float) -> float:
    """P(upside down) from the classifier's (label, score) for one crop."""
    score = min(max(float(score), 0.0), 1.0)
    return score if label == "180" else 1.0 - score


def rotation_for(sideways: bool, flipped: bool) -> int:
    """Clockwise degrees that turn the page upright.

    A sideways page whose quarter-turned crops read upright was turned a
    quarter clockwise (its text runs top to bottom): turning it 270 clockwise
    undoes that. If the crops read upside down, 90 clockwise undoes it.
    """
    if sideways:
        return 90 if flipped else 270
    return 180 if flipped else 0


def side_lengths(box: Quad) -> tuple[float, float]:
    """(width, height) of a quadrilateral given clockwise from its top-left corner."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = box[:4]
    width = max(math.hypot(x1 - x0, y1 - y0), math.hypot(x2 - x3, y2 - y3))
    height = max(math.hypot(x3 - x0, y3 - y0), math.hypot(x2 - x1, y2 - y1))
    return width, height


def estimate_orientation(votes: Sequence[LineVote]) -> Orientation:
    """Decide the page orientation from line boxes and their 0/180 votes."""
    wide: list[tuple[int, float]] = []
    tall: list[tuple[int, float]] = []
    for index, vote in enumerate(votes):
        width, height = side_lengths(vote.box)
        if height >= ELONGATION * width:
            tall.append((index, height))
        elif width >= ELONGATION * height:
            wide.append((index, width))

    wide_weight = sum(length for _, length in wide)
    tall_weight = sum(length for _, length in tall)
    elongated = wide_weight + tall_weight
    sideways_share = tall_weight / elongated if elongated > 0 else 0.0
    sideways = sideways_share > SIDEWAYS_SHARE

    # Only crops of the dominant kind vote: wide and tall crops reach the
    # classifier turned differently, so their votes mean different things.
    voters = tall if sideways else wide
    voter_weight = sum(length for _, length in voters)
    flip_share = (
        sum(length * votes[index].flip_probability for index, length in voters) / voter_weight
        if voter_weight > 0
        else 0.0
    )
    # Sideways is settled: 90 and 270 are equally likely a priori. Upright is
    # the common case, so turning an unrotated page over needs a clear majority.
    flipped = flip_share > 0.5 if sideways else flip_share > UPSIDE_DOWN_SHARE
    return Orientation(
        rotation=rotation_for(sideways, flipped),
        sideways=sideways,
        sideways_share=sideways_share,
        flip_share=flip_share,
        voters=tuple(index for index, _ in voters),
    )
