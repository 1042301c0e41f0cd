"""``PatchLayout``: tokens that are tissue patches at known positions on a slide (whole-slide-image bags).

A slide encoder's tokens are its patches, in the order the bag was read, each with its position on the slide's patch
grid (in patch units from the bag's top-left patch). Scores are drawn as a patch grid over a mosaic of the patches
the model saw (tissue only; the background between them is blank), or over an empty grid when the model reads cached
patch features and no pixels are at hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .layout import HEAT_ALPHA, HEAT_COLORMAP, add_colorbar, color_limits, new_figure, save_figure

MAX_MOSAIC_PIXELS = 1600  # the longest side of the drawn mosaic; patches shrink to fit


@dataclass(frozen=True)
class PatchLayout:
    """Patch tokens at positions on a slide.

    Attributes:
        positions: (N, 2) (x, y) of each patch in patch units from the bag's corner.
        patches: (N, S, S, 3) RGB in [0, 1] as the model saw them (before its pixel normalisation), or None.
    """

    positions: np.ndarray
    patches: np.ndarray | None = None

    kind = "slide"

    def __post_init__(self) -> None:
        if self.positions.ndim != 2 or self.positions.shape[1] != 2:
            raise ValueError(f"patch positions must be (N, 2), got {self.positions.shape}")
        if self.patches is not None and len(self.patches) != len(self.positions):
            raise ValueError("a patch layout needs one position per patch")

    @property
    def token_count(self) -> int:
        return len(self.positions)

    @property
    def cells(self) -> np.ndarray:
        """(N, 2) integer (column, row) of each patch on the drawn grid."""
        return np.rint(self.positions).astype(np.int64)

    def to_input(self, scores: np.ndarray) -> np.ndarray:
        """(N,) scores -> (rows, columns) grid over the bag's extent, NaN where no patch lies (the highest score
        where rounded positions of overlapping patches meet)."""
        cells = self.cells
        grid = np.full((int(cells[:, 1].max()) + 1, int(cells[:, 0].max()) + 1), np.nan, dtype=np.float32)
        for (column, row), score in zip(cells, np.asarray(scores, dtype=np.float32), strict=True):
            if np.isfinite(score) and not grid[row, column] >= score:
                grid[row, column] = score
        return grid

    def region(self, token: int) -> dict[str, Any]:
        x, y = (float(value) for value in self.positions[int(token)])
        return {"token": int(token), "patch_position": [round(x, 3), round(y, 3)]}

    def render(self, scores: np.ndarray, title: str, path: Path) -> None:
        grid = self.to_input(scores)  # (rows, columns)
        low, high = color_limits(grid)
        rows, columns = grid.shape
        figure = new_figure(6.0, 6.0 * rows / columns + 0.6 if columns else 6.0)
        axes = figure.add_subplot(1, 1, 1)
        extent = (0.0, float(columns), float(rows), 0.0)  # patch units, y down as on the slide
        if self.patches is not None:
            axes.imshow(self._mosaic(rows, columns), extent=extent)
        axes.imshow(np.ma.masked_invalid(grid), cmap=HEAT_COLORMAP, vmin=low, vmax=high, extent=extent,
                    alpha=HEAT_ALPHA if self.patches is not None else 1.0, interpolation="nearest")  # fmt: skip
        axes.set_xlabel("patches (from the bag's left edge)")
        axes.set_ylabel("patches (from the bag's top edge)")
        axes.set_title(title, fontsize=9)
        add_colorbar(figure, axes, low, high)
        save_figure(figure, path)

    def _mosaic(self, rows: int, columns: int) -> np.ndarray:
        """The patches placed at their cells, each shrunk to a whole number of pixels (white where no patch)."""
        size = self.patches.shape[1]
        side = max(1, min(size, MAX_MOSAIC_PIXELS // max(rows, columns, 1)))
        step = max(1, size // side)
        mosaic = np.ones((rows * side, columns * side, 3), dtype=np.float32)
        for (column, row), patch in zip(self.cells, self.patches, strict=True):
            small = patch[::step, ::step][:side, :side]  # (side', side', 3) nearest-neighbour shrink
            mosaic[row * side : row * side + small.shape[0], column * side : column * side + small.shape[1]] = small
        return np.clip(mosaic, 0.0, 1.0)
