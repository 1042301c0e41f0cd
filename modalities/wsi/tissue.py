"""Tissue detection on a slide thumbnail: a registry of detectors, optical density above the glass by default.

``WSI_TISSUE_DETECTORS`` maps a name (the ``tissue_detector`` config option) to a function
``(thumbnail (h, w, 3) uint8, pixel_microns, options) -> (h, w) bool``:

- "optical_density" (default, ``optical_density.py``): how much light the section absorbs relative to the slide's
  own glass, grown from clearly stained tissue into pale tissue, with marker ink, dark debris and dust removed.
  Works across stains (H&E, IHC, pale or faded sections): >= 90% tissue recall and no glass patch on every stain of
  the benchmark of real stained images (docs/wsi.md).
- "saturation_otsu" (medclip's first detector, kept for comparison and for existing setups): Otsu's threshold on
  HSV saturation, floored by ``min_saturation``. Misses pale IHC stroma and faded sections; counts pen marks as
  tissue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from medclip.registry import Registry

from .optical_density import optical_density_mask

OTSU_BINS = 256


@dataclass(frozen=True)
class TissueOptions:
    """Settings of the tissue detectors (each reads its own).

    Attributes:
        min_density: optical_density: total OD above the glass that counts as pale tissue next to stained tissue.
        min_saturation: saturation_otsu: floor on Otsu's saturation threshold, so a blank slide's noise is never
            tissue.
    """

    min_density: float = 0.02
    min_saturation: float = 0.05


Detector = Callable[[np.ndarray, "float | None", TissueOptions], np.ndarray]
WSI_TISSUE_DETECTORS: Registry[Detector] = Registry("tissue detector")


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


@WSI_TISSUE_DETECTORS.register("saturation_otsu")
def saturation_otsu_mask(thumbnail: np.ndarray, pixel_microns: float | None, options: TissueOptions) -> np.ndarray:
    """Saturation above max(Otsu, ``min_saturation``) (the first detector; see the module docstring)."""
    sat = saturation(thumbnail)
    return sat > max(otsu_threshold(sat), options.min_saturation)


@WSI_TISSUE_DETECTORS.register("optical_density")
def _optical_density(thumbnail: np.ndarray, pixel_microns: float | None, options: TissueOptions) -> np.ndarray:
    return optical_density_mask(thumbnail, pixel_microns, options.min_density)


def tissue_mask(
    thumbnail: np.ndarray,
    pixel_microns: float | None = None,
    detector: str = "optical_density",
    options: TissueOptions | None = None,
) -> np.ndarray:
    """(h, w) bool, True where the (h, w, 3) uint8 thumbnail shows tissue, by the named detector.

    Args:
        thumbnail: the slide thumbnail.
        pixel_microns: microns per thumbnail pixel when known (size limits and averaging of the detector).
        detector: a name in ``WSI_TISSUE_DETECTORS``.
        options: detector settings (defaults when None).
    """
    return WSI_TISSUE_DETECTORS.get(detector)(thumbnail, pixel_microns, options or TissueOptions())
