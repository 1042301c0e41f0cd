"""``RawRecord``: what every reader returns, before lead arrangement, unit conversion and resampling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RawRecord:
    """One ECG record as stored, in physical units.

    Attributes:
        signal: (C, T) float64 samples in each channel's physical unit, channels in file order.
        channel_names: C channel names as the file spells them (mapped to standard leads by ``leads.py``).
        units: C physical units as the file spells them (converted to millivolts by ``units.py``).
        sampling_rate: samples per second per channel.
        source_format: the reader that produced it ("wfdb", "dicom", "csv", "numpy", "edf"), for metadata.
        ignored_channels: channels the reader already left out as not being ECG leads (EDF respiration, ...).
    """

    signal: np.ndarray
    channel_names: list[str]
    units: list[str]
    sampling_rate: float
    source_format: str
    ignored_channels: int = 0

    @property
    def duration_s(self) -> float:
        return self.signal.shape[1] / self.sampling_rate
