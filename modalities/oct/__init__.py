"""The ``oct`` modality: retinal OCT volumes from DICOM, TIFF, NIfTI, NumPy or vendor files (see docs/ct.md)."""

from .config import OCTConfig
from .normalize import OCT_NORMALIZATIONS
from .plugin import OCTModality, oct_preprocessing
from .readers import OCT_READERS

__all__ = ["OCT_NORMALIZATIONS", "OCT_READERS", "OCTConfig", "OCTModality", "oct_preprocessing"]
