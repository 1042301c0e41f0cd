"""Resampling to the model's sampling rate with a polyphase anti-aliasing filter.

``scipy.signal.resample_poly`` upsamples by ``up``, low-passes with a Kaiser-windowed FIR at the lower of the two
Nyquist frequencies, and downsamples by ``down``: energy above the target Nyquist (EMG noise, 50/60 Hz hum when going
to 100 Hz) is removed instead of folding back into the ECG band. Rates with no small ratio (e.g. 257 Hz -> 500 Hz) use
the closest fraction with a denominator up to 1000, an error below 0.1 % in rate.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy import signal as scipy_signal

MAX_DENOMINATOR = 1000


def resample_factors(source_hz: float, target_hz: float) -> tuple[int, int]:
    """(up, down) with target / source ~= up / down."""
    ratio = Fraction(target_hz / source_hz).limit_denominator(MAX_DENOMINATOR)
    return ratio.numerator, ratio.denominator


def resampled_length(samples: int, source_hz: float, target_hz: float) -> int:
    """How many samples ``resample`` returns for ``samples`` at ``source_hz``: ceil(T * up / down).

    Lets a reader check the memory a resampling will take before reading anything.
    """
    up, down = resample_factors(source_hz, target_hz)
    return -(-int(samples) * up // down)


def resample(signal: np.ndarray, source_hz: float, target_hz: float) -> np.ndarray:
    """(L, T) at ``source_hz`` -> (L, T') at ``target_hz``, T' = ceil(T * up / down)."""
    up, down = resample_factors(source_hz, target_hz)
    if up == down:
        return signal
    return scipy_signal.resample_poly(signal, up, down, axis=-1)
