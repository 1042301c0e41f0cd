"""Tissue detection on a slide thumbnail: Otsu's threshold on colour saturation.

Stained tissue is coloured (haematoxylin purple, eosin pink) while glass, and the bright background around it, is
grey-white: saturation separates them regardless of stain intensity or scanner white balance. Otsu's method picks the
threshold between the two saturation populations; ``min_saturation`` floors it, so a slide with no tissue (only
noise around a grey background) yields an empty mask instead of "tissue" made of noise.
"""

from __future__ import annotations

import numpy as np

OTSU_BINS = 256


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation (max - min) / max of an (H, W, 3) uint8 image -> (H, W) float32 in [0, 1]."""
    rgb = rgb.astype(np.float32)
    high = rgb.max(axis=2)  # (H, W)
    low = rgb.min(axis=2)  # (H, W)
    return np.where(high > 0, (high - low) / np.maximum(high, 1.0), 0.0).astype(np.float32)


def otsu_threshold(values: np.ndarray, bins: int = OTSU_BINS) -> float:
    """Otsu's threshold of values in [0, 1]: the cut maximising the between-class variance of the histogram.

    Returns the upper edge of the last bin of the lower class; values above it are the upper class. A constant input
    returns that constant (nothing lies above it).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("Otsu's threshold needs at least one value")
    counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)  # (bins,) pixels at or below each cut
    weight_high = values.size - weight_low
    sum_low = np.cumsum(counts * centres)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2  # (bins,) between-class variance per cut
    between[weight_high == 0] = -1.0  # a cut with nothing above it separates nothing
    if between.max() <= 0:
        return float(values.max())
    return float(edges[int(np.argmax(between)) + 1])


def tissue_mask(thumbnail: np.ndarray, min_saturation: float = 0.05) -> np.ndarray:
    """(h, w) bool, True where the thumbnail shows tissue: saturation above max(Otsu, ``min_saturation``)."""
    sat = saturation(thumbnail)
    threshold = max(otsu_threshold(sat), min_saturation)
    return sat > threshold
