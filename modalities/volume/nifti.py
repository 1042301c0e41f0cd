"""NIfTI (.nii / .nii.gz) -> ``Volume`` through nibabel.

The affine is the one nibabel documents as the image's best affine: the sform when its code is non-zero, else the
qform when its code is non-zero. When both codes are 0 nibabel falls back to a zooms-only affine that places nothing
in the patient; that file is rejected (``missing_affine``) rather than silently given an orientation. An all-zero,
singular or non-finite affine is rejected (``bad_affine``). Scaling (scl_slope/scl_inter) is applied once by nibabel.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from medclip.types import ModalityError

from .geometry import check_affine
from .volume import Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def check_data_size(path: Path, image: nib.Nifti1Image) -> None:
    """An uncompressed .nii must end where its header says its voxels end (``header_data_mismatch`` otherwise).

    nibabel reads the bytes the header's dims and datatype ask for and ignores the rest, so a damaged dim (8 -> 4)
    loads a smaller, scrambled volume without an error. A too-short file already fails to read; a too-long one is
    caught here. (.nii.gz is not checked: its size is only known after decompressing the whole stream.)
    """
    proxy = image.dataobj  # the ArrayProxy: where and what nibabel reads (the loaded header's offset is reset to 0)
    if str(path).lower().endswith(".gz") or not hasattr(proxy, "offset"):
        return
    voxels = int(np.prod(proxy.shape, dtype=np.int64))
    expected = int(proxy.offset) + voxels * np.dtype(proxy.dtype).itemsize
    if path.stat().st_size != expected:
        raise ModalityError(
            "header_data_mismatch",
            f"the NIfTI file holds {path.stat().st_size} bytes but its header describes {expected}: a damaged header",
        )


def read_nifti(path: str | os.PathLike, intensity: str = "raw") -> Volume:
    """Load a 3D NIfTI (a 4D one with one volume is accepted) with its RAS affine.

    Args:
        path: the .nii / .nii.gz file.
        intensity: what the values mean, recorded in the metadata ("hounsfield" for CT).

    Raises:
        ModalityError: ``missing_file``, ``unreadable``, ``missing_affine``, ``bad_affine``, ``not_3d``,
            ``non_finite``.
    """
    path = Path(path)
    if not path.is_file():
        raise ModalityError("missing_file", "the NIfTI file does not exist")
    try:
        image = nib.load(path)
        header = image.header
        sform_code = int(header["sform_code"])
        qform_code = int(header["qform_code"])
    except Exception as error:
        raise ModalityError("unreadable", f"nibabel could not read the NIfTI file ({type(error).__name__})") from error
    if sform_code > 0:
        affine, source = header.get_sform(), "sform"
    elif qform_code > 0:
        affine, source = header.get_qform(), "qform"
    else:
        raise ModalityError(
            "missing_affine", "the NIfTI header has sform_code and qform_code 0: it does not say where voxels are"
        )
    affine = check_affine(affine)
    try:
        data = np.asanyarray(image.dataobj)  # applies scl_slope/scl_inter once when set, else keeps the stored dtype
    except Exception as error:
        raise ModalityError("unreadable", f"the NIfTI voxel data could not be read ({type(error).__name__})") from error
    check_data_size(path, image)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ModalityError("not_3d", f"expected a 3D volume, got {data.ndim} dimensions {list(data.shape)}")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise ModalityError("non_finite", "the volume has NaN or infinite voxels")
    details = {"affine_source": source, "intensity": intensity}
    return Volume(data=data, affine=affine, source="nifti", study_key=str(path.resolve()), details=details)
