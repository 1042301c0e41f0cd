"""Which reader opens a CT input: a DICOM series folder or file, a NIfTI file, or a NumPy array with a sidecar."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from medclip.registry import Registry
from medclip.types import ModalityError
from modalities.volume.dicom_series import read_dicom_series
from modalities.volume.nifti import read_nifti
from modalities.volume.numpy_volume import read_numpy_volume
from modalities.volume.volume import Volume

# format -> reader(path, series_number, quarantine) -> Volume with Hounsfield units
CT_READERS: Registry[Callable[[Path, int | None, bool], Volume]] = Registry("CT reader")
CT_READERS.register("dicom", lambda path, series, quarantine: read_dicom_series(path, series, quarantine=quarantine))
CT_READERS.register("nifti", lambda path, series, quarantine: read_nifti(path, intensity="hounsfield"))
CT_READERS.register("numpy", lambda path, series, quarantine: read_numpy_volume(path, intensity="hounsfield"))

SUFFIX_FORMATS = {".nii.gz": "nifti", ".nii": "nifti", ".npy": "numpy", ".dcm": "dicom"}


def ct_format(path: Path) -> str:
    """The reader for ``path``: a folder is a DICOM series; files go by suffix.

    Raises:
        ModalityError: ``missing_file`` or ``unsupported_format``.
    """
    if path.is_dir():
        return "dicom"
    if not path.exists():
        raise ModalityError("missing_file", "the CT input does not exist")
    name = path.name.lower()
    for suffix, kind in SUFFIX_FORMATS.items():
        if name.endswith(suffix):
            return kind
    raise ModalityError(
        "unsupported_format",
        f"CT inputs are DICOM folders/files, {', '.join(SUFFIX_FORMATS)} files; got a '{path.suffix}' file",
    )
