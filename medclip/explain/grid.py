"""``GridLayout``: tokens on a regular grid over a volume or a 2-D image (ViT patches, CNN feature-map positions).

Encoders that flatten a patch grid or a feature map (``features.flatten(2)``) give their tokens in row-major order
over that grid, each token standing for a block of ``stride`` input elements per axis; the last block along an axis
may be partial when the stride does not divide the input (convolutions that round their output size up). A token's
score is drawn over its whole block: the map's resolution is the token grid's, never finer (no interpolation that
would suggest detail the model never produced).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .layout import HEAT_ALPHA, HEAT_COLORMAP, add_colorbar, color_limits, new_figure, save_figure

MONTAGE_TOP_SLICES = 4  # slices with the highest activation shown in a volume's montage (plus the middle slice)


def infer_grid(shape: Sequence[int], token_count: int, patch: Sequence[int] = ()) -> tuple[tuple[int, ...], tuple]:
    """The token grid and stride that explain ``token_count`` tokens over an input of ``shape``.

    Args:
        shape: the input's spatial shape ((I, J, K) or (H, W)).
        token_count: tokens the encoder returned for it.
        patch: the encoder's patch size per axis when known (a ViT); otherwise one stride shared by every axis is
            searched for (CNNs downsample every axis alike), the grid being ``ceil(shape / stride)``; when several
            strides give that grid, the power of two among them (what stride-2 stages multiply to), else the smallest.

    Returns:
        ``(grid, stride)``, each one entry per axis.

    Raises:
        ValueError: no grid of that kind holds ``token_count`` tokens.
    """
    shape = tuple(int(size) for size in shape)
    if patch:
        stride = tuple(int(size) for size in patch)
        grid = tuple(math.ceil(size / step) for size, step in zip(shape, stride, strict=True))
        if math.prod(grid) == token_count:
            return grid, stride
        raise ValueError(f"{token_count} tokens do not fit patches {list(stride)} over an input of {list(shape)}")
    fitting = []
    for step in range(1, max(shape) + 1):
        grid = tuple(math.ceil(size / step) for size in shape)
        if math.prod(grid) == token_count:
            fitting.append(step)
        elif math.prod(grid) < token_count:
            break
    if fitting:  # several strides can round up to the same grid: a network's is a power of two when one fits
        powers = [step for step in fitting if step & (step - 1) == 0]
        step = powers[-1] if powers else fitting[0]
        return tuple(math.ceil(size / step) for size in shape), (step,) * len(shape)
    raise ValueError(f"{token_count} tokens form no regular grid over an input of {list(shape)}")


@dataclass(frozen=True)
class GridLayout:
    """Tokens in row-major order over a regular grid of the input.

    Attributes:
        grid: tokens per axis.
        stride: input elements (voxels, pixels) per token along each axis.
        background: what the map is drawn on: a volume (I, J, K), a grayscale image (H, W) or an RGB image
            (H, W, 3) in [0, 1], in the space the model saw (after preprocessing).
        slice_axis: volumes only: the axis the montage cuts slices along (axial for RAS volumes: the last).
    """

    grid: tuple[int, ...]
    stride: tuple[int, ...]
    background: np.ndarray
    slice_axis: int = -1

    def __post_init__(self) -> None:
        spatial = self.spatial_shape
        if len(self.grid) not in (2, 3) or len(self.grid) != len(self.stride) or len(spatial) != len(self.grid):
            raise ValueError(f"a grid layout needs 2 or 3 axes; got grid {self.grid} over an input of {spatial}")
        for size, cells, step in zip(spatial, self.grid, self.stride, strict=True):
            if not (cells - 1) * step < size <= cells * step:
                raise ValueError(f"grid {list(self.grid)} with stride {list(self.stride)} does not cover {spatial}")

    @property
    def kind(self) -> str:
        return "volume" if len(self.grid) == 3 else "image"

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        shape = self.background.shape
        return tuple(shape[:2]) if self.background.ndim == 3 and len(self.grid) == 2 else tuple(shape)

    @property
    def token_count(self) -> int:
        return math.prod(self.grid)

    def to_input(self, scores: np.ndarray) -> np.ndarray:
        """(T,) scores -> a map of the input's spatial shape, each token's score over its block."""
        cells = np.asarray(scores, dtype=np.float32).reshape(self.grid)  # (g1, g2[, g3]) row-major, as flattened
        index = [
            np.minimum(np.arange(size) // step, count - 1)
            for size, step, count in zip(self.spatial_shape, self.stride, self.grid, strict=True)
        ]
        return cells[np.ix_(*index)]

    def region(self, token: int) -> dict[str, Any]:
        """The token's grid cell and the input block it covers ([start, stop) per axis, in preprocessed voxels or
        pixels)."""
        cell = [int(value) for value in np.unravel_index(int(token), self.grid)]
        start = [index * step for index, step in zip(cell, self.stride, strict=True)]
        blocks = zip(start, self.stride, self.spatial_shape, strict=True)
        stop = [min(begin + step, size) for begin, step, size in blocks]
        region: dict[str, Any] = {"token": int(token), "cell": cell, "start": start, "stop": stop}
        if self.kind == "volume":
            axis = self.slice_axis % 3
            region["slices"] = [start[axis], stop[axis]]
        return region

    def montage_slices(self, scores: np.ndarray, top: int = MONTAGE_TOP_SLICES) -> list[int]:
        """Slices shown for a volume: the centre slice of each of the ``top`` token layers with the highest
        activation along ``slice_axis``, plus the middle slice, in ascending order."""
        axis = self.slice_axis % 3
        cells = np.asarray(scores, dtype=np.float32).reshape(self.grid)
        layer_peak = np.moveaxis(cells, axis, 0).reshape(self.grid[axis], -1).max(axis=1)  # (g_axis,)
        size, step = self.spatial_shape[axis], self.stride[axis]
        chosen = {size // 2}
        for layer in np.argsort(-layer_peak, kind="stable")[:top]:
            begin = int(layer) * step
            chosen.add(min((begin + min(begin + step, size)) // 2, size - 1))
        return sorted(chosen)

    def render(self, scores: np.ndarray, title: str, path: Path) -> None:
        heat = self.to_input(scores)
        low, high = color_limits(heat)
        if self.kind == "image":
            figure = new_figure(5.0, 5.0)
            axes = figure.add_subplot(1, 1, 1)
            self._draw(axes, self.background, heat, low, high, origin="upper")
            axes.set_title(title, fontsize=9)
            add_colorbar(figure, axes, low, high)
            save_figure(figure, path)
            return
        axis = self.slice_axis % 3
        slices = self.montage_slices(scores)
        background, heat = np.moveaxis(self.background, axis, -1), np.moveaxis(heat, axis, -1)  # slices last
        figure = new_figure(2.6 * len(slices) + 0.8, 3.2)
        middle = self.spatial_shape[axis] // 2
        for column, index in enumerate(slices):
            axes = figure.add_subplot(1, len(slices), column + 1)
            self._draw(axes, background[..., index].T, heat[..., index].T, low, high, origin="lower")
            label = " (middle)" if index == middle else ""
            axes.set_title(f"slice {index}{label}", fontsize=8)
        figure.suptitle(title, fontsize=9)
        add_colorbar(figure, list(figure.axes), low, high)
        save_figure(figure, path)

    @staticmethod
    def _draw(axes: Any, background: np.ndarray, heat: np.ndarray, low: float, high: float, origin: str) -> None:
        """The input in grey (or colour) with the heat map over it; volume slices are drawn with their first
        axis to the right and their second upwards (``origin="lower"``), images as stored."""
        pixels = background.astype(np.float32)
        if pixels.ndim == 2:
            gray_low, gray_high = color_limits(pixels)
            axes.imshow(pixels, cmap="gray", vmin=gray_low, vmax=gray_high, origin=origin)
        else:
            axes.imshow(np.clip(pixels, 0.0, 1.0), origin=origin)
        axes.imshow(
            heat, cmap=HEAT_COLORMAP, vmin=low, vmax=high, alpha=HEAT_ALPHA, interpolation="nearest", origin=origin
        )
        axes.set_axis_off()
