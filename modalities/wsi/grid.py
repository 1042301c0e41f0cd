"""The patch grid of a slide at a target resolution, kept where the thumbnail shows enough tissue.

The grid starts at the slide's top-left corner and steps by ``stride`` pixels at the target MPP, so when the target is
a level's MPP and the stride is the tile size every patch is exactly one stored tile (tile-aligned reads). Each
patch's tissue fraction is the mean of the thumbnail's tissue mask over the patch's footprint, computed for every
grid position at once from the mask's summed-area table. The grid's size is computed before it is allocated and
must fit the modality's ``max_decoded_mb`` (``too_large``): a slide declaring a huge level, or a resolution that
makes patches tiny, cannot make it allocate gigabytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medclip.data.safe_io import check_decoded_size
from medclip.types import ModalityError

from .slide import DEFAULT_MAX_DECODED_MB, Slide
from .tissue import TissueOptions, tissue_mask

# Bytes per grid position while the grid is built: corners (2 x int64), the meshgrid (2 x int64), and in
# mask_fractions four clipped edges, the area and the summed counts (6 x int64) plus the fraction (float32).
GRID_BYTES_PER_POSITION = 84


@dataclass
class PatchGrid:
    """The tissue patches of one slide.

    Attributes:
        coordinates: (N, 2) int64 level-0 (x, y) of each patch's top-left corner.
        tissue_fraction: (N,) float32 tissue fraction of each patch.
        mpp: the target resolution of the patches.
        patch_size: patch side in pixels at ``mpp``.
        stride: grid step in pixels at ``mpp``.
        extent: level-0 pixels covered by one patch side.
    """

    coordinates: np.ndarray
    tissue_fraction: np.ndarray
    mpp: float
    patch_size: int
    stride: int
    extent: float

    def __len__(self) -> int:
        return len(self.coordinates)

    def spread(self, count: int) -> np.ndarray:
        """Indices of ``count`` patches evenly spread over the grid order (all when ``count`` is 0 or >= N)."""
        if count <= 0 or count >= len(self):
            return np.arange(len(self))
        return np.linspace(0, len(self) - 1, count).round().astype(np.int64)


def grid_shape(width: int, height: int, extent: float, step: float) -> tuple[int, int]:
    """(rows, columns) of whole patches of side ``extent`` on a ``step`` grid (Python integers, nothing allocated)."""
    columns = int((width - extent) // step) + 1 if width >= extent else 0
    rows = int((height - extent) // step) + 1 if height >= extent else 0
    return rows, columns


def grid_positions(width: int, height: int, extent: float, step: float) -> np.ndarray:
    """Level-0 top-left corners (N, 2) of every whole patch of side ``extent`` on a ``step`` grid, row-major."""
    rows, columns = grid_shape(width, height, extent, step)
    xs = np.round(np.arange(columns) * step).astype(np.int64)
    ys = np.round(np.arange(rows) * step).astype(np.int64)
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")  # (rows, columns) each
    return np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)  # (rows * columns, 2)


def mask_fractions(mask: np.ndarray, coordinates: np.ndarray, extent: float, scale: float) -> np.ndarray:
    """Mean of ``mask`` over each patch footprint; ``scale`` = level-0 pixels per mask pixel."""
    table = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.float64)  # summed-area table (h + 1, w + 1)
    table[1:, 1:] = mask.astype(np.float64).cumsum(axis=0).cumsum(axis=1)
    left = np.clip(np.floor(coordinates[:, 0] / scale).astype(np.int64), 0, mask.shape[1])
    top = np.clip(np.floor(coordinates[:, 1] / scale).astype(np.int64), 0, mask.shape[0])
    right = np.clip(np.ceil((coordinates[:, 0] + extent) / scale).astype(np.int64), 0, mask.shape[1])
    bottom = np.clip(np.ceil((coordinates[:, 1] + extent) / scale).astype(np.int64), 0, mask.shape[0])
    area = np.maximum((right - left) * (bottom - top), 1)
    inside = table[bottom, right] - table[top, right] - table[bottom, left] + table[top, left]
    return (inside / area).astype(np.float32)


def tissue_grid(
    slide: Slide,
    mpp: float,
    patch_size: int,
    stride: int,
    min_tissue_fraction: float = 0.5,
    thumbnail_size: int = 1024,
    detector: str = "optical_density",
    options: TissueOptions | None = None,
    max_decoded_mb: float = DEFAULT_MAX_DECODED_MB,
) -> PatchGrid:
    """The grid of ``patch_size`` patches at ``mpp`` with at least ``min_tissue_fraction`` tissue.

    Args:
        slide: the open slide.
        mpp: target resolution.
        patch_size: patch side in pixels at ``mpp``.
        stride: grid step in pixels at ``mpp``.
        min_tissue_fraction: keep patches with at least this fraction of tissue on the thumbnail's mask.
        thumbnail_size: longest side of the thumbnail the mask is computed on.
        detector: a name in ``tissue.WSI_TISSUE_DETECTORS``.
        options: the detector's settings.
        max_decoded_mb: budget for the grid's arrays (checked before they are allocated).

    Raises:
        ModalityError: ``no_mpp`` / ``implausible_spacing`` (the slide's resolution), ``too_large`` (the grid or the
            thumbnail's level is over the budget), ``no_tissue`` (no patch has enough tissue), or a read error of the
            thumbnail's level.
    """
    extent = slide.patch_extent(patch_size, mpp)  # level-0 pixels per patch side
    step = slide.patch_extent(stride, mpp)
    width, height = slide.dimensions
    rows, columns = grid_shape(width, height, extent, step)
    check_decoded_size((rows, columns), GRID_BYTES_PER_POSITION, max_decoded_mb, "patch grid")
    thumbnail, scale = slide.thumbnail(thumbnail_size)
    mask = tissue_mask(thumbnail, scale * slide.require_mpp(), detector, options)
    if not mask.any():
        raise ModalityError("no_tissue", "no tissue was detected on the slide's thumbnail")
    coordinates = grid_positions(width, height, extent, step)
    fractions = mask_fractions(mask, coordinates, extent, scale) if len(coordinates) else np.zeros(0, np.float32)
    keep = fractions >= min_tissue_fraction
    if not keep.any():
        raise ModalityError(
            "no_tissue", f"no {patch_size}-pixel patch at {mpp} MPP has {min_tissue_fraction:.0%} tissue or more"
        )
    return PatchGrid(coordinates[keep], fractions[keep], mpp, patch_size, stride, extent)
