"""Zero-phase band-pass and mains-notch filters.

Both run forwards and backwards (``sosfiltfilt`` / ``filtfilt``), so they shift no wave in time: a QRS onset or an ST
segment stays where it was, which a one-directional filter would not guarantee. Coefficients are designed once per
(rate, settings) and reused.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal as scipy_signal


@lru_cache(maxsize=64)
def bandpass_sos(low_hz: float, high_hz: float, sampling_rate: float, order: int) -> np.ndarray:
    """Second-order sections of a Butterworth band-pass."""
    return scipy_signal.butter(order, [low_hz, high_hz], btype="bandpass", fs=sampling_rate, output="sos")


@lru_cache(maxsize=64)
def notch_coefficients(frequency_hz: float, quality: float, sampling_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """(b, a) of an IIR notch at ``frequency_hz``."""
    return scipy_signal.iirnotch(frequency_hz, quality, fs=sampling_rate)


def bandpass(signal: np.ndarray, low_hz: float, high_hz: float, sampling_rate: float, order: int = 2) -> np.ndarray:
    """(L, T) -> (L, T) band-passed along time."""
    return scipy_signal.sosfiltfilt(bandpass_sos(low_hz, high_hz, sampling_rate, order), signal, axis=-1)


def notch(signal: np.ndarray, frequency_hz: float, sampling_rate: float, quality: float = 30.0) -> np.ndarray:
    """(L, T) -> (L, T) with ``frequency_hz`` removed; unchanged when that frequency is at or above Nyquist.

    A record sampled at 100 Hz cannot contain 50 Hz hum as a separate frequency, so there is nothing to notch.
    """
    if frequency_hz <= 0 or frequency_hz >= sampling_rate / 2:
        return signal
    b, a = notch_coefficients(frequency_hz, quality, sampling_rate)
    return scipy_signal.filtfilt(b, a, signal, axis=-1)
