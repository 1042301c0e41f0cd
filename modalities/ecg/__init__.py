"""The ``ecg`` modality: electrocardiograms from WFDB, DICOM waveform, EDF, CSV and NumPy files."""

from .cache import ECGCache
from .config import ECGConfig
from .encoders import ENCODERS
from .leads import LEAD_ALIASES, STANDARD_LEADS, canonical_lead
from .normalize import LEAD_NORMALIZATIONS
from .plugin import ECGModality
from .readers import READERS
from .resample import resample
from .simulator import RHYTHMS, simulate_ecg
from .synthetic import generate_ecgs, write_dataset

__all__ = [
    "ENCODERS",
    "LEAD_ALIASES",
    "LEAD_NORMALIZATIONS",
    "READERS",
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
