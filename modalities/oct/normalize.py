"""Per-volume OCT intensity normalisation, applied to the raw volume before resampling (part of the cached steps)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medclip.registry import Registry
from medclip.types import ModalityError

OCT_NORMALIZATIONS: Registry[type] = Registry("OCT normalization")


@OCT_NORMALIZATIONS.register("percentile")
@dataclass(frozen=True)
class PercentileNormalization:
    """Map the volume's low/high percentiles to 0/1 and clip: robust to speckle outliers and saturated pixels."""

    low: float = 1.0
    high: float = 99.0

    def __call__(self, volume: np.ndarray) -> np.ndarray:
        values = np.asarray(volume, dtype=np.float32)
        low, high = np.percentile(values, [self.low, self.high])
        if not high > low:
            raise ModalityError("constant_volume", "the OCT volume has no intensity contrast (constant values)")
        return np.clip((values - np.float32(low)) / np.float32(high - low), 0.0, 1.0)


@OCT_NORMALIZATIONS.register("zscore")
@dataclass(frozen=True)
class ZScoreNormalization:
    """Mean 0, standard deviation 1 over the volume."""

    low: float = 0.0  # unused; keeps one constructor for every normalisation
    high: float = 100.0

    def __call__(self, volume: np.ndarray) -> np.ndarray:
        values = np.asarray(volume, dtype=np.float32)
        std = float(values.std())
        if std == 0:
            raise ModalityError("constant_volume", "the OCT volume has no intensity contrast (constant values)")
        return (values - np.float32(values.mean())) / np.float32(std)


def store_float16(values: np.ndarray) -> np.ndarray:
    """float32 intensities -> float16 for the cache (normalised values need no more precision)."""
    return np.asarray(values, dtype=np.float16)
