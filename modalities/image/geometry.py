"""Image geometry: aspect-preserving fit and pad, or resampling to a pixel size and centre crop/pad.

Both keep the physical aspect: with a known, non-square pixel size the image is resampled to square pixels. Sizes
are computed from the header's shape before anything is resampled, and checked against the decoded-size budget
(a tiny ``spacing`` would otherwise ask for a gigantic intermediate image).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from medclip.data.safe_io import check_decoded_size


@dataclass(frozen=True)
class Placement:
    """Where the resized image sits in the output: its size and its top-left corner (negative = cropped)."""

    height: int
    width: int
    top: int
    left: int


def fitted_size(shape: tuple[int, int], spacing: tuple[float, float] | None, size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of the image scaled to fit in ``size`` with its physical aspect (pixel aspect when spacing is None).

    The short side is floored, as torchvision's ``Resize(max_size=...)`` does, so both agree on square pixels.
    """
    rows, columns = shape
    row_mm, column_mm = spacing if spacing is not None else (1.0, 1.0)
    extent_h, extent_w = rows * row_mm, columns * column_mm  # physical extent (or pixels)
    if size[0] / extent_h <= size[1] / extent_w:  # the height limits
        return size[0], min(size[1], max(1, int(size[0] * extent_w / extent_h)))
    return min(size[0], max(1, int(size[1] * extent_h / extent_w))), size[1]


def resampled_size(shape: tuple[int, int], spacing: tuple[float, float], target_mm: float) -> tuple[int, int]:
    """(h, w) of the image resampled to ``target_mm`` square pixels."""
    return (
        max(1, int(round(shape[0] * spacing[0] / target_mm))),
        max(1, int(round(shape[1] * spacing[1] / target_mm))),
    )


def centred(height: int, width: int, size: tuple[int, int]) -> Placement:
    """Centre an (height, width) image in ``size`` (padding where smaller, cropping where larger)."""
    return Placement(height, width, (size[0] - height) // 2, (size[1] - width) // 2)


def resize(pixels: np.ndarray, height: int, width: int) -> torch.Tensor:
    """(C, H, W) float32 -> (C, height, width) float32, bilinear with antialiasing (no aliasing when shrinking)."""
    tensor = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
    if tuple(tensor.shape[1:]) == (height, width):
        return tensor
    resized = F.interpolate(tensor[None], size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return resized[0].clamp_(0.0, 1.0)  # (C, height, width); antialiasing overshoots slightly at edges


def place(image: torch.Tensor, placement: Placement, size: tuple[int, int], pad_value: float) -> torch.Tensor:
    """Put the (C, h, w) image into a (C, *size) canvas of ``pad_value`` at ``placement`` (cropping overhangs)."""
    canvas = torch.full((image.shape[0], *size), float(pad_value), dtype=image.dtype)  # (C, H, W)
    top, left = placement.top, placement.left
    source_top, source_left = max(0, -top), max(0, -left)
    target_top, target_left = max(0, top), max(0, left)
    rows = min(placement.height - source_top, size[0] - target_top)
    columns = min(placement.width - source_left, size[1] - target_left)
    canvas[:, target_top : target_top + rows, target_left : target_left + columns] = image[
        :, source_top : source_top + rows, source_left : source_left + columns
    ]
    return canvas


def plan(
    shape: tuple[int, int],
    channels: int,
    spacing: tuple[float, float] | None,
    size: tuple[int, int],
    target_mm: float,
    budget_mb: float,
) -> Placement:
    """The placement of an image of ``shape`` in the output, checked against the budget before any resampling."""
    if target_mm > 0:
        height, width = resampled_size(shape, spacing, target_mm)  # spacing is known: the caller checked
    else:
        height, width = fitted_size(shape, spacing, size)
    check_decoded_size((channels, height, width), 4, budget_mb, "resampled image")
    return centred(height, width, size)
