"""The ``ecg`` modality: electrocardiograms from WFDB, DICOM waveform, EDF, CSV and NumPy files."""

from .cache import ECGCache
from .config import ECGConfig
from .encoders import ECG_ENCODERS
from .leads import LEAD_ALIASES, STANDARD_LEADS, canonical_lead
from .normalize import ECG_LEAD_NORMALIZATIONS
from .plugin import ECGModality
from .readers import ECG_READERS
from .resample import resample
from .simulator import RHYTHMS, simulate_ecg
from .synthetic import generate_ecgs, write_dataset

__all__ = [
    "ECG_ENCODERS",
    "LEAD_ALIASES",
    "ECG_LEAD_NORMALIZATIONS",
    "ECG_READERS",
    "RHYTHMS",
    "STANDARD_LEADS",
    "ECGCache",
    "ECGConfig",
    "ECGModality",
    "canonical_lead",
    "generate_ecgs",
    "resample",
    "simulate_ecg",
    "write_dataset",
]
