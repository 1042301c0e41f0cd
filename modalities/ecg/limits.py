"""What an ECG record may declare and contain before medclip spends memory or trust on it.

A few hundred bytes of header can declare a record that resampling turns into gigabytes (a sampling rate of 0.5 Hz
resampled to 500 Hz multiplies the samples by 1000), and a number in a header can be garbage (``nan``, ``1e12``, a
negative rate) that a library silently replaces or truncates. So every reader checks, from the header and before
reading the samples:

- the sampling rate is a finite number inside ``rate_range_hz`` (``implausible_sampling_rate`` otherwise);
- the samples as read (C channels x T samples, float64) and as resampled to the model's rate (C x T', float64) each
  fit in ``max_decoded_mb`` (``too_large`` otherwise);

and after conversion to millivolts (never before: 1e308 V is finite, 1e311 mV is not) every sample of an ECG lead is
finite (``non_finite``) and within +-``max_amplitude_mv`` (``implausible_amplitude``): ECG amplitudes are a few
millivolts and electrode offsets of DC-coupled recorders reach a few hundred, so a sample beyond a volt is a unit or
file error, never a heartbeat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from medclip.data.safe_io import check_decoded_size
from medclip.types import ModalityError

from .resample import resampled_length

IMPLAUSIBLE_SAMPLING_RATE = "implausible_sampling_rate"
IMPLAUSIBLE_AMPLITUDE = "implausible_amplitude"
NON_FINITE = "non_finite"
COMPLEX_VALUES = "complex_values"
UNSUPPORTED_DTYPE = "unsupported_dtype"
FLOAT64_BYTES = 8  # readers and filters work in float64


@dataclass(frozen=True)
class SignalLimits:
    """The bounds one record is checked against (from ``ECGConfig``).

    Attributes:
        max_decoded_mb: memory one record may take as read and as resampled (float64), in megabytes.
        rate_range_hz: (lowest, highest) plausible sampling rate of an ECG recording.
        target_rate_hz: the model's sampling rate (what the record is resampled to).
        max_amplitude_mv: the largest plausible absolute value of an ECG sample, in millivolts.
        leads: rows of the model's lead order: a record is arranged into this many rows (absent leads zero) before
            it is filtered and resampled, so a 2-channel record costs as much as a 12-channel one.
    """

    max_decoded_mb: float = 2048.0
    rate_range_hz: tuple[float, float] = (50.0, 32000.0)
    target_rate_hz: float = 500.0
    max_amplitude_mv: float = 1000.0
    leads: int = 12


def check_sampling_rate(rate: float, limits: SignalLimits) -> float:
    """``rate`` if it is a finite number of Hz inside ``limits.rate_range_hz``.

    Raises:
        ModalityError: ``implausible_sampling_rate`` (the message gives the range, never the value read).
    """
    low, high = limits.rate_range_hz
    try:
        value = float(rate)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and low <= value <= high):
        raise ModalityError(
            IMPLAUSIBLE_SAMPLING_RATE,
            f"the record's sampling rate is not a number between {low:g} and {high:g} Hz (ecg.source_rate_range_hz)",
        )
    return value


def check_declared_size(channels: int, samples: int, rate: float, limits: SignalLimits) -> None:
    """Refuse (``too_large``) a record whose samples, as read or as resampled to the model's rate, exceed the budget.

    Called with the channel and sample counts a header declares, before the samples are read. Rows are the larger of
    the record's channels and the model's leads (the record is arranged into the model's lead order).
    """
    rows = max(int(channels), limits.leads)
    check_decoded_size((rows, samples), FLOAT64_BYTES, limits.max_decoded_mb, "ECG record as read")
    resampled = resampled_length(samples, rate, limits.target_rate_hz)
    check_decoded_size((rows, resampled), FLOAT64_BYTES, limits.max_decoded_mb, "ECG record once resampled")


def check_real_samples(dtype: np.dtype) -> None:
    """Samples must be real numbers: a complex array would lose its imaginary part silently in float64.

    Raises:
        ModalityError: ``complex_values`` or ``unsupported_dtype`` (booleans, strings, records, objects).
    """
    if dtype.kind == "c":
        raise ModalityError(COMPLEX_VALUES, "the ECG samples are complex numbers; only real-valued samples are read")
    if dtype.kind not in "iuf":
        raise ModalityError(UNSUPPORTED_DTYPE, "the ECG samples are not integers or floating-point numbers")


def check_millivolts(millivolts: np.ndarray, limits: SignalLimits) -> None:
    """Every sample of the ECG leads, already in millivolts, is finite and within +-``max_amplitude_mv``.

    Raises:
        ModalityError: ``non_finite`` (NaN/inf, including WFDB invalid-sample markers and values that overflow in the
            unit conversion) or ``implausible_amplitude``.
    """
    finite = np.isfinite(millivolts)
    if not finite.all():
        bad = int((~finite).sum())
        raise ModalityError(NON_FINITE, f"record has {bad} non-finite (NaN or infinite) samples in its ECG leads")
    peak = float(np.abs(millivolts).max(initial=0.0))
    if peak > limits.max_amplitude_mv:
        raise ModalityError(
            IMPLAUSIBLE_AMPLITUDE,
            f"an ECG lead exceeds +-{limits.max_amplitude_mv:g} mV once converted to millivolts: a unit or file error "
            "(ecg.max_amplitude_mv)",
        )
