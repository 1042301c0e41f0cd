"""OCT readers -> ``Volume`` with the array laid out (lateral, axial depth, B-scan) = (I, J, K).

- DICOM (Ophthalmic Tomography and other multi-frame images): frames are B-scans; voxel size from the Pixel Measures
  functional group (or top-level PixelSpacing) and SliceThickness / SpacingBetweenSlices.
- Multi-page TIFF (tifffile): pages are B-scans; TIFF carries no physical voxel size (``spacing_known`` False).
- NIfTI and NumPy + JSON sidecar: already (lateral, axial, B-scan), with their affine / spacing.
- Vendor formats (.e2e Heidelberg, .fds/.fda Topcon) through the optional ``oct-converter`` package.

The affine of an OCT volume is a device frame (scan axes), not patient RAS: OCT headers do not place B-scans in
patient coordinates. Its diagonal holds the voxel size.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom

from medclip.registry import Registry, lazy_import
from medclip.types import ModalityError
from modalities.dicom_quiet import quietly
from modalities.volume.dicom_codecs import check_decodable, transfer_syntax_name
from modalities.volume.geometry import check_affine
from modalities.volume.nifti import read_nifti
from modalities.volume.numpy_volume import read_numpy_volume
from modalities.volume.volume import Volume

OCT_READERS: Registry[Callable[[Path], Volume]] = Registry("OCT reader")
SUFFIX_FORMATS = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".npy": "numpy",
    ".dcm": "dicom",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".e2e": "vendor",
    ".fds": "vendor",
    ".fda": "vendor",
}


def oct_format(path: Path) -> str:
    """The reader for ``path`` by suffix. Raises ModalityError ``missing_file`` / ``unsupported_format``."""
    if not path.is_file():
        raise ModalityError("missing_file", "the OCT input does not exist")
    name = path.name.lower()
    for suffix, kind in SUFFIX_FORMATS.items():
        if name.endswith(suffix):
            return kind
    raise ModalityError("unsupported_format", f"OCT inputs are {', '.join(SUFFIX_FORMATS)} files; got '{path.suffix}'")


def scan_affine(spacing: tuple[float, float, float]) -> np.ndarray:
    """The device-frame affine: voxel size on the diagonal."""
    return check_affine(np.diag([*spacing, 1.0]))


def _positive(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _dicom_spacing(dataset) -> tuple[float, float, float] | None:
    pixel_spacing, thickness = dataset.get("PixelSpacing"), None
    shared = dataset.get("SharedFunctionalGroupsSequence")
    if shared:
        measures = shared[0].get("PixelMeasuresSequence")
        if measures:
            pixel_spacing = measures[0].get("PixelSpacing", pixel_spacing)
            thickness = measures[0].get("SpacingBetweenSlices") or measures[0].get("SliceThickness")
    thickness = thickness or dataset.get("SpacingBetweenSlices") or dataset.get("SliceThickness")
    if pixel_spacing is None or len(pixel_spacing) != 2:
        return None
    row, column, between = _positive(pixel_spacing[0]), _positive(pixel_spacing[1]), _positive(thickness)
    if row is None or column is None or between is None:
        return None
    return (column, row, between)  # (lateral, axial, B-scan)


@OCT_READERS.register("dicom")
@quietly
def read_oct_dicom(path: Path) -> Volume:
    """A multi-frame DICOM OCT. Raises ModalityError ``not_dicom``, ``not_multiframe``, decoder reasons."""
    try:
        dataset = pydicom.dcmread(path)
    except Exception as error:
        raise ModalityError("not_dicom", f"the file is not readable DICOM ({type(error).__name__})") from error
    if "PixelData" not in dataset:
        raise ModalityError("no_pixel_data", "the DICOM object holds no image")
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames < 2:
        raise ModalityError("not_multiframe", "an OCT DICOM must be multi-frame (one frame per B-scan)")
    if int(dataset.get("SamplesPerPixel", 1)) != 1:
        raise ModalityError("not_grayscale", "OCT frames must have one sample per pixel")
    check_decodable(dataset)
    try:
        pixels = dataset.pixel_array  # (frames, rows, columns) = (B-scan, axial, lateral)
    except Exception as error:
        raise ModalityError(
            "undecodable_pixels", f"pixel data could not be decoded ({type(error).__name__})"
        ) from error
    data = np.ascontiguousarray(pixels.transpose(2, 1, 0))  # (lateral, axial, B-scan)
    spacing = _dicom_spacing(dataset)
    details = {"frames": frames, "transfer_syntax": transfer_syntax_name(dataset), "spacing_known": spacing is not None}
    study_key = str(dataset.get("StudyInstanceUID") or path.resolve())
    return Volume(data, scan_affine(spacing or (1.0, 1.0, 1.0)), "dicom", study_key, details)


@OCT_READERS.register("tiff")
def read_oct_tiff(path: Path) -> Volume:
    """A multi-page TIFF, one page per B-scan. Raises ModalityError ``unreadable``, ``not_3d``."""
    import tifffile

    try:
        stack = tifffile.imread(path)  # (pages, rows, columns) = (B-scan, axial, lateral)
    except Exception as error:
        raise ModalityError("unreadable", f"tifffile could not read the file ({type(error).__name__})") from error
    if stack.ndim != 3:
        raise ModalityError("not_3d", f"expected a multi-page grayscale TIFF, got shape {list(stack.shape)}")
    data = np.ascontiguousarray(stack.transpose(2, 1, 0))  # (lateral, axial, B-scan)
    return Volume(data, scan_affine((1.0, 1.0, 1.0)), "tiff", str(path.resolve()), {"spacing_known": False})


@OCT_READERS.register("nifti")
def read_oct_nifti(path: Path) -> Volume:
    return read_nifti(path)


@OCT_READERS.register("numpy")
def read_oct_numpy(path: Path) -> Volume:
    return read_numpy_volume(path)


@OCT_READERS.register("vendor")
def read_oct_vendor(path: Path) -> Volume:
    """Heidelberg .e2e, Topcon .fds/.fda via ``oct-converter`` (optional). Raises ``missing_package`` without it."""
    try:
        readers = lazy_import("oct_converter.readers", "reading vendor OCT files (.e2e, .fds, .fda)", "oct-converter")
    except ImportError as error:
        raise ModalityError("missing_package", str(error)) from error
    reader_class = {".e2e": readers.E2E, ".fds": readers.FDS, ".fda": readers.FDA}[path.suffix.lower()]
    try:
        volumes = reader_class(str(path)).read_oct_volume()
    except Exception as error:
        raise ModalityError("unreadable", f"oct-converter could not read the file ({type(error).__name__})") from error
    volumes = volumes if isinstance(volumes, list) else [volumes]
    if len(volumes) != 1:
        raise ModalityError("multiple_volumes", f"the file holds {len(volumes)} OCT volumes; export the one to use")
    stack = np.asarray(volumes[0].volume)  # (B-scan, axial, lateral)
    if stack.ndim != 3:
        raise ModalityError("not_3d", f"expected B-scans of one size, got shape {list(stack.shape)}")
    data = np.ascontiguousarray(stack.transpose(2, 1, 0))  # (lateral, axial, B-scan)
    return Volume(data, scan_affine((1.0, 1.0, 1.0)), "vendor", str(path.resolve()), {"spacing_known": False})
