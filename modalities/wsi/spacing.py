"""Plausible pixel spacing (microns per pixel, MPP) of slides and patch references; ``implausible_spacing`` otherwise.

Every size medclip derives for a slide - patch extents, the patch grid, the level chosen for a target MPP - divides
by the slide's MPP, so a bogus value read from a file or a manifest cell turns into absurd allocations (a grid of
billions of positions from a resolution tag of 1e9 pixels per centimetre) or silent garbage. The range
[``MIN_MPP``, ``MAX_MPP``] covers every real scan: brightfield scanners resolve about 0.1 to 1 micron per pixel
(100x oil to 10x objectives), spatial-omics and overview images go to tens of microns, and nothing below 0.01 is
an optical image. A slide's two axes must agree within ``MAX_ANISOTROPY`` (scanners have square pixels).

A slide that declares no MPP at all is a different case (``no_mpp`` in ``slide.py``, or ``assume_mpp``); a slide
whose declared MPP is bogus (0, NaN, infinite, negative, out of range) is refused here and never replaced by an
assumed value: nothing is silently fixed.
"""

from __future__ import annotations

import math

from medclip.types import ModalityError

MIN_MPP = 0.01  # microns per pixel; finer than any optical scan (light resolves about 0.2 microns)
MAX_MPP = 100.0  # microns per pixel; coarser than any overview or spatial-omics image a patch could come from
MAX_ANISOTROPY = 1.1  # largest ratio between a slide's x and y MPP
IMPLAUSIBLE_SPACING = "implausible_spacing"


def plausible_mpp(value: object) -> bool:
    """Whether ``value`` is a number of microns per pixel in [``MIN_MPP``, ``MAX_MPP``]."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return False
    return math.isfinite(number) and MIN_MPP <= number <= MAX_MPP


def check_mpp(value: float, what: str) -> float:
    """``value`` as a float when plausible; ``implausible_spacing`` naming ``what`` (never the value's source)."""
    if not plausible_mpp(value):
        raise ModalityError(
            IMPLAUSIBLE_SPACING,
            f"the {what} is not a plausible resolution: microns per pixel must lie in [{MIN_MPP:g}, {MAX_MPP:g}]",
        )
    return float(value)


def check_slide_mpp(x: object, y: object) -> float:
    """The level-0 MPP of a slide from its declared x and y MPP (their mean), or ``implausible_spacing``."""
    mpp_x, mpp_y = check_mpp(x, "slide's x resolution"), check_mpp(y, "slide's y resolution")  # type: ignore[arg-type]
    if max(mpp_x, mpp_y) > MAX_ANISOTROPY * min(mpp_x, mpp_y):
        raise ModalityError(
            IMPLAUSIBLE_SPACING,
            f"the slide's x and y resolutions differ by over {MAX_ANISOTROPY - 1:.0%}; scanners have square pixels",
        )
    return (mpp_x + mpp_y) / 2
