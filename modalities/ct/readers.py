"""Which reader opens a CT input: a DICOM series folder or file, a NIfTI file, or a NumPy array with a sidecar;
and which files each reads (the cache keys an entry by their content)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from medclip.data.safe_io import require_regular_file
from medclip.registry import Registry
from medclip.types import ModalityError
from modalities.volume.dicom_files import list_dicom_files
from modalities.volume.dicom_series import read_dicom_series
from modalities.volume.limits import VolumeLimits
from modalities.volume.nifti import read_nifti
from modalities.volume.numpy_volume import numpy_files, read_numpy_volume
from modalities.volume.volume import Volume

# format -> reader(path, series_number, quarantine, limits) -> Volume with Hounsfield units
CT_READERS: Registry[Callable[[Path, int | None, bool, VolumeLimits], Volume]] = Registry("CT reader")
CT_READERS.register(
    "dicom",
    lambda path, series, quarantine, limits: read_dicom_series(path, series, quarantine=quarantine, limits=limits),
)
CT_READERS.register(
    "nifti", lambda path, series, quarantine, limits: read_nifti(path, intensity="hounsfield", limits=limits)
)
CT_READERS.register(
    "numpy", lambda path, series, quarantine, limits: read_numpy_volume(path, intensity="hounsfield", limits=limits)
)

SUFFIX_FORMATS = {".nii.gz": "nifti", ".nii": "nifti", ".npy": "numpy", ".dcm": "dicom"}


def ct_format(path: Path) -> str:
    """The reader for ``path``: a folder is a DICOM series; regular files go by suffix.

    Raises:
        ModalityError: ``missing_file``, ``not_regular_file`` (a FIFO, socket or device: never opened),
            ``unsupported_format``.
    """
    if path.is_dir():
        return "dicom"
    require_regular_file(path, "CT")
    name = path.name.lower()
    for suffix, kind in SUFFIX_FORMATS.items():
        if name.endswith(suffix):
            return kind
    raise ModalityError("unsupported_format", f"CT inputs are DICOM folders/files, {', '.join(SUFFIX_FORMATS)} files")


def source_files(path: Path, kind: str) -> list[Path]:
    """Every file the ``kind`` reader reads for ``path``: a series folder's files, a .npy and its sidecar, a file."""
    if kind == "dicom" and path.is_dir():
        return list_dicom_files(path)
    if kind == "numpy":
        return numpy_files(path)
    return [path]
