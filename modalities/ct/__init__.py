"""The ``ct`` modality: CT volumes from DICOM series, NIfTI or NumPy, in Hounsfield units (see docs/ct.md)."""

from .config import CTConfig
from .plugin import CTModality, ct_preprocessing
from .windows import CT_HU_WINDOWS, HUWindow, parse_window

__all__ = ["CT_HU_WINDOWS", "CTConfig", "CTModality", "HUWindow", "ct_preprocessing", "parse_window"]
