"""NIfTI (.nii / .nii.gz) -> ``Volume`` through nibabel.

The affine is the one nibabel documents as the image's best affine: the sform when its code is non-zero, else the
qform when its code is non-zero. When both codes are 0 nibabel falls back to a zooms-only affine that places nothing
in the patient; that file is rejected (``missing_affine``) rather than silently given an orientation. An all-zero,
singular or non-finite affine is rejected (``bad_affine``). Scaling (scl_slope/scl_inter) is applied once by nibabel.

Before nibabel reads anything but the header (issue 14), the header is parsed here with bounded reads: the file must
be a regular file; the voxel type must be real numbers (``complex_data``, ``unsupported_dtype``); the declared
dimensions must fit the budget (``too_large``; a 40 KB .nii.gz can declare gigabytes, and nibabel allocates the
declared size before reading) and hold voxels (``empty_volume``); header extensions must lie inside the file and
before the voxels (``bad_extension``: nibabel allocates whatever size an extension declares). After reading, the values
are checked once scaled (``non_finite``, ``implausible_values``) and the voxel size (``implausible_spacing``).
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path
from typing import BinaryIO

import nibabel as nib
import numpy as np

from medclip.data.safe_io import require_regular_file
from medclip.types import ModalityError

from .geometry import check_affine, spacing_of
from .limits import FLOAT32_BYTES, VolumeLimits
from .volume import Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")
HEADER_CLASSES = {348: nib.Nifti1Header, 540: nib.Nifti2Header}  # sizeof_hdr -> nibabel's header class
EXTENDER_BYTES = 4  # after the header: a non-zero first byte announces extensions
EXTENSION_HEAD_BYTES = 8  # esize, ecode (int32 each); esize counts these 8 bytes
MAX_EXTENSION_BYTES = 64 * 1024 * 1024  # extensions hold metadata (a DICOM header, JSON); more is not a NIfTI file
SKIP_CHUNK = 1 << 20
FLOAT64_BYTES = 8  # nibabel returns scaled voxels as float64


def is_nifti(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def _is_gzip(path: Path) -> bool:
    return str(path).lower().endswith(".gz")


def _open(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def read_header(path: Path, file_size: int) -> nib.Nifti1Header:
    """The NIfTI-1 or NIfTI-2 header, read with bounded reads; extensions are checked, not read.

    Raises:
        ModalityError: ``unreadable`` (not a NIfTI header, a broken gzip stream), ``bad_extension`` (an extension
            that declares more bytes than lie before the voxel data, or than the file holds).
    """
    try:
        with _open(path) as handle:
            head = handle.read(max(HEADER_CLASSES) + EXTENDER_BYTES)
            size = _header_size(head)
            header = HEADER_CLASSES[size](head[:size], check=True)
            extender = head[size : size + EXTENDER_BYTES]
            if len(extender) == EXTENDER_BYTES and extender[0] != 0:
                handle.seek(size + EXTENDER_BYTES)
                _check_extensions(handle, header, size + EXTENDER_BYTES, None if _is_gzip(path) else file_size)
    except ModalityError:
        raise
    except Exception as error:  # nibabel's HeaderDataError, gzip/zlib errors, short reads
        raise ModalityError("unreadable", f"the NIfTI header could not be read ({type(error).__name__})") from None
    return header


def _header_size(head: bytes) -> int:
    """sizeof_hdr (348 or 540), in either byte order."""
    for order in "<>":
        if len(head) >= 4 and struct.unpack(f"{order}i", head[:4])[0] in HEADER_CLASSES:
            return struct.unpack(f"{order}i", head[:4])[0]
    raise ModalityError("unreadable", "the file does not start with a NIfTI-1 or NIfTI-2 header")


def _check_extensions(handle: BinaryIO, header: nib.Nifti1Header, start: int, file_size: int | None) -> None:
    """Walk the extension chain as nibabel will (up to vox_offset), refusing sizes nibabel would allocate blindly."""
    order = "<" if header.endianness == "<" else ">"
    remaining = float(header["vox_offset"]) - start  # nibabel reads extensions while 16 or more bytes remain
    position = start
    while remaining >= 16:
        raw = handle.read(EXTENSION_HEAD_BYTES)
        if len(raw) < EXTENSION_HEAD_BYTES:
            raise ModalityError("bad_extension", "the NIfTI file ends inside a header extension")
        extension_size, _ = struct.unpack(f"{order}ii", raw)
        if extension_size < 16 or extension_size > remaining or position + extension_size - start > MAX_EXTENSION_BYTES:
            raise ModalityError(
                "bad_extension", "a NIfTI header extension declares a size past the voxel data or over 64 MB"
            )
        if file_size is not None and position + extension_size > file_size:
            raise ModalityError("bad_extension", "a NIfTI header extension declares more bytes than the file holds")
        _skip(handle, extension_size - EXTENSION_HEAD_BYTES)
        position += extension_size
        remaining -= extension_size


def _skip(handle: BinaryIO, count: int) -> None:
    """Move ``count`` bytes on, reading (a gzip stream) at most a chunk at a time."""
    while count > 0:
        step = handle.read(min(count, SKIP_CHUNK))
        if not step:
            raise ModalityError("bad_extension", "the NIfTI file ends inside a header extension")
        count -= len(step)


def check_layout(path: Path, header: nib.Nifti1Header, file_size: int, limits: VolumeLimits) -> tuple[int, ...]:
    """The declared shape, once the voxel type, the dimensions, the budget and (uncompressed) the file size agree.

    An uncompressed .nii must end where its header says its voxels end (``header_data_mismatch`` when longer:
    nibabel reads the bytes the header's dims and datatype ask for and ignores the rest, so a damaged dim (8 -> 4)
    loads a smaller, scrambled volume without an error; a shorter file fails in nibabel, ``unreadable``). A .nii.gz is
    not compared: its size is only known after decompressing the whole stream, so the declared size is what the
    budget bounds.
    """
    try:
        dtype = header.get_data_dtype()
        shape = tuple(int(size) for size in header.get_data_shape())
        slope, intercept = header.get_slope_inter()
    except Exception as error:  # unknown datatype code, dims nibabel refuses
        raise ModalityError("unreadable", f"the NIfTI header could not be read ({type(error).__name__})") from None
    limits.check_dtype(dtype, "NIfTI volume")
    spatial = shape[:3] if len(shape) == 4 and shape[3] == 1 else shape
    if len(spatial) != 3:
        raise ModalityError("not_3d", f"expected a 3D volume, got {len(shape)} dimensions {list(shape)}")
    scaled = (slope is not None and slope != 1.0) or (intercept is not None and intercept != 0.0)
    itemsize = max(dtype.itemsize, FLOAT64_BYTES if scaled else FLOAT32_BYTES)
    limits.check_size(shape, "NIfTI volume", itemsize=itemsize)  # negative dims: bad_header; too big: too_large
    if not _is_gzip(path):
        expected = int(header.get_data_offset()) + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if file_size > expected:
            raise ModalityError(
                "header_data_mismatch",
                f"the NIfTI file holds {file_size} bytes but its header describes {expected}: a damaged header",
            )
    limits.check_shape(spatial, "NIfTI volume")  # empty_volume
    return spatial


def read_nifti(path: str | os.PathLike, intensity: str = "raw", limits: VolumeLimits | None = None) -> Volume:
    """Load a 3D NIfTI (a 4D one with one volume is accepted) with its RAS affine.

    Args:
        path: the .nii / .nii.gz file.
        intensity: what the values mean, recorded in the metadata ("hounsfield" for CT).
        limits: the budget and plausible ranges (the modality's; generic ones by default).

    Raises:
        ModalityError: ``missing_file``, ``not_regular_file``, ``unreadable``, ``bad_extension``, ``bad_header``,
            ``too_large``, ``empty_volume``, ``complex_data``, ``unsupported_dtype``, ``header_data_mismatch``,
            ``missing_affine``, ``bad_affine``, ``implausible_spacing``, ``not_3d``, ``non_finite``,
            ``implausible_values``.
    """
    path = Path(path)
    limits = limits or VolumeLimits()
    file_size = require_regular_file(path, "NIfTI").st_size
    header = read_header(path, file_size)
    spatial = check_layout(path, header, file_size, limits)
    sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
    try:
        if sform_code > 0:
            affine, source = header.get_sform(), "sform"
        elif qform_code > 0:
            affine, source = header.get_qform(), "qform"
        else:
            raise ModalityError(
                "missing_affine", "the NIfTI header has sform_code and qform_code 0: it does not say where voxels are"
            )
    except ModalityError:
        raise
    except Exception as error:  # a qform nibabel cannot build (non-finite quaternion or pixdim)
        raise ModalityError("bad_affine", f"the NIfTI affine could not be built ({type(error).__name__})") from None
    affine = check_affine(affine)
    limits.check_spacing(spacing_of(affine), "NIfTI voxel")
    try:
        image = nib.load(path)
        data = np.asanyarray(image.dataobj)  # applies scl_slope/scl_inter once when set, else keeps the stored dtype
    except Exception as error:
        raise ModalityError("unreadable", f"the NIfTI voxel data could not be read ({type(error).__name__})") from None
    data = data.reshape(spatial)  # (I, J, K): a trailing axis of one volume dropped
    limits.check_values(data, "NIfTI volume")
    details = {"affine_source": source, "intensity": intensity}
    return Volume(data=data, affine=affine, source="nifti", study_key=str(path.resolve()), details=details)
