"""Per-lead normalisations of the model input, by name (``ecg.normalization``).

Amplitudes differ between leads (V2-V4 are large, aVR small) and between carts and patients; z-scoring each lead over
the input window puts every lead on one scale, as most ECG deep-learning pipelines do. Absent (zero-filled) leads stay
exactly zero.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from medclip.registry import Registry

ECG_LEAD_NORMALIZATIONS: Registry[Callable[[np.ndarray, np.ndarray], np.ndarray]] = Registry("ECG lead normalization")
EPSILON_MV = 1e-3  # a lead flatter than 1 microvolt is left unscaled instead of blown up


@ECG_LEAD_NORMALIZATIONS.register("zscore")
def zscore(signal: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(L, T) -> each lead minus its mean, divided by its standard deviation, over the ``valid`` (T,) samples."""
    window = signal[:, valid] if not valid.all() else signal  # (L, V)
    mean = window.mean(axis=1, keepdims=True)  # (L, 1)
    std = window.std(axis=1, keepdims=True)  # (L, 1)
    normalised = (signal - mean) / np.maximum(std, EPSILON_MV)  # (L, T)
    normalised[:, ~valid] = 0.0
    normalised[std[:, 0] == 0] = 0.0  # absent, zero-filled leads stay zero
    return normalised


@ECG_LEAD_NORMALIZATIONS.register("none")
def unchanged(signal: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Millivolts as they are."""
    return signal
