"""The reconstruction figure of a masked-autoencoder run: a few slices of held-out volumes, each shown as the input,
the input with its hidden patches blanked, and the reconstruction (predicted hidden patches + the visible ones).

It is the quickest way to see whether the pre-stage learned anatomy: a reconstruction that recovers organ outlines in
the blanked patches did; a uniform grey blur did not. Drawn on matplotlib's Agg canvas (never pyplot), like every
medclip plot.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from .masking import PatchGrid

DPI = 120
HIDDEN_COLOUR = "#3b5b92"  # blanked patches: a colour no greyscale voxel has
COLUMNS = ("input", "hidden patches blanked", "reconstruction")


def reconstructed_volumes(
    grid: PatchGrid,
    reconstruction: dict[str, Tensor],
    normalize_target: bool,
    eps: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input, input with hidden patches NaN, reconstruction) volumes, each (B, C, I, J, K) float32, in voxel units.

    With ``normalize_target`` the decoder predicts normalised patches; they are mapped back with each true patch's
    mean and standard deviation (as MAE's own visualisation does), so the figure shows structure, not brightness.
    Visible patches of the reconstruction are the input's own.
    """
    target = reconstruction["target"].float()  # (B, T, P)
    predicted = reconstruction["predicted"].float()  # (B, T, P)
    hidden = reconstruction["hidden"].unsqueeze(-1)  # (B, T, 1)
    if normalize_target:
        mean = target.mean(dim=-1, keepdim=True)  # (B, T, 1)
        scale = (target.var(dim=-1, keepdim=True) + eps).sqrt()  # (B, T, 1)
        predicted = predicted * scale + mean  # (B, T, P)
    filled = torch.where(hidden, predicted, target)  # (B, T, P)
    blanked = torch.where(hidden, torch.full_like(target, float("nan")), target)  # (B, T, P)
    volumes = [grid.unpatchify(values).cpu().numpy() for values in (target, blanked, filled)]  # 3 x (B, C, I, J, K)
    return volumes[0], volumes[1], volumes[2]


def plot_reconstructions(
    original: np.ndarray,
    blanked: np.ndarray,
    reconstructed: np.ndarray,
    path: str | os.PathLike,
    slices: int = 3,
    channel: int = 0,
    title: str = "Masked-autoencoder reconstructions",
) -> Path:
    """One row per (volume, slice): ``slices`` evenly spaced slices along the last axis of each volume.

    Args:
        original, blanked, reconstructed: (B, C, I, J, K) from ``reconstructed_volumes``.
        path: the PNG to write.
        slices: slices per volume (at 1/(n+1), ..., n/(n+1) of the last axis).
        channel: the input channel shown (for CT, the first HU window).
        title: figure title.
    """
    count, channels, _, _, depth = original.shape
    if not 0 <= channel < channels:
        raise ValueError(f"channel {channel} is not one of the {channels} input channels")
    positions = [round((index + 1) * depth / (slices + 1)) for index in range(slices)]
    positions = [min(max(position, 0), depth - 1) for position in positions]
    rows = count * len(positions)
    figure = Figure(figsize=(3 * len(COLUMNS), 2.8 * rows + 0.6), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(f"{title}\nslices across the last volume axis; first axis left to right, second bottom to top")
    colours = _greys()
    for volume in range(count):
        values = original[volume, channel]  # (I, J, K)
        low, high = np.percentile(values, [0.5, 99.5])
        high = high if high > low else low + 1.0
        for slice_number, position in enumerate(positions):
            row = volume * len(positions) + slice_number
            images = (original, blanked, reconstructed)
            for column, (name, data) in enumerate(zip(COLUMNS, images, strict=True)):
                axes = figure.add_subplot(rows, len(COLUMNS), row * len(COLUMNS) + column + 1)
                image = data[volume, channel, :, :, position].T  # (J, I): first axis across, second upwards
                axes.imshow(image, cmap=colours, vmin=low, vmax=high, origin="lower", interpolation="nearest")
                axes.set_xticks([])
                axes.set_yticks([])
                if row == 0:
                    axes.set_title(name, fontsize=10)
                if column == 0:
                    axes.set_ylabel(f"volume {volume + 1}, slice {position + 1}/{depth}", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI, bbox_inches="tight")
    return path


def _greys():
    from matplotlib import colormaps

    return colormaps["gray"].with_extremes(bad=HIDDEN_COLOUR)  # NaN = a hidden patch
