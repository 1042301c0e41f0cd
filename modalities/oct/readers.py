"""OCT readers -> ``Volume`` with the array laid out (lateral, axial depth, B-scan) = (I, J, K).

- DICOM (Ophthalmic Tomography and other multi-frame images): frames are B-scans; voxel size from the Pixel Measures
  functional group (or top-level PixelSpacing) and SliceThickness / SpacingBetweenSlices.
- Multi-page TIFF (tifffile): pages are B-scans; TIFF carries no physical voxel size (``spacing_known`` False).
- NIfTI and NumPy + JSON sidecar: already (lateral, axial, B-scan), with their affine / spacing.
- Vendor formats (.e2e Heidelberg, .fds/.fda Topcon) through the optional ``oct-converter`` package.

The affine of an OCT volume is a device frame (scan axes), not patient RAS: OCT headers do not place B-scans in
patient coordinates. Its diagonal holds the voxel size.

Every reader takes the modality's ``VolumeLimits`` (issue 14): only regular files are opened; the decoded size is
checked from the header before any pixel is decoded (DICOM: frames x rows x columns; TIFF: the page shapes of the one
image series, a compressed 1 MB TIFF can decode to gigabytes); voxel sizes present in a header must be finite,
positive (``bad_affine``) and plausible (``implausible_spacing``), an absent one is recorded as unknown
(``spacing_known`` False), never a broken one; intensities are checked after decoding (``non_finite``,
``implausible_values``, ``complex_data``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from medclip.data.safe_io import require_regular_file
from medclip.registry import Registry, lazy_import
from medclip.types import ModalityError
from modalities.dicom_quiet import quietly
from modalities.volume.dicom_codecs import check_decodable, transfer_syntax_name
from modalities.volume.dicom_files import read_dicom_file
from modalities.volume.geometry import check_affine
from modalities.volume.limits import VolumeLimits
from modalities.volume.nifti import read_nifti
from modalities.volume.numpy_volume import read_numpy_volume
from modalities.volume.volume import Volume

# format -> reader(path, limits) -> (lateral, axial, B-scan) Volume
OCT_READERS: Registry[Callable[[Path, VolumeLimits], Volume]] = Registry("OCT reader")
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
UNKNOWN_SPACING = (1.0, 1.0, 1.0)  # one "voxel unit" per axis when the format carries no voxel size


def oct_format(path: Path) -> str:
    """The reader for ``path`` by suffix.

    Raises:
        ModalityError: ``missing_file``, ``not_regular_file`` (a folder, FIFO or device), ``unsupported_format``.
    """
    require_regular_file(path, "OCT")
    name = path.name.lower()
    for suffix, kind in SUFFIX_FORMATS.items():
        if name.endswith(suffix):
            return kind
    raise ModalityError("unsupported_format", f"OCT inputs are {', '.join(SUFFIX_FORMATS)} files")


def scan_affine(spacing: tuple[float, float, float]) -> np.ndarray:
    """The device-frame affine: voxel size on the diagonal."""
    return check_affine(np.diag([*spacing, 1.0]))


def _dicom_spacing(dataset, limits: VolumeLimits) -> tuple[float, float, float] | None:
    """(lateral, axial, B-scan) voxel size in mm, or None when the header does not give all three.

    A value that is present must be a finite positive number in the plausible range: a broken one is an error, not
    an unknown spacing.
    """
    pixel_spacing, thickness = dataset.get("PixelSpacing"), None
    shared = dataset.get("SharedFunctionalGroupsSequence")
    if shared:
        measures = shared[0].get("PixelMeasuresSequence")
        if measures:
            pixel_spacing = measures[0].get("PixelSpacing", pixel_spacing)
            thickness = measures[0].get("SpacingBetweenSlices") or measures[0].get("SliceThickness")
    thickness = thickness or dataset.get("SpacingBetweenSlices") or dataset.get("SliceThickness")
    if pixel_spacing is None or len(pixel_spacing) != 2 or thickness in (None, ""):
        return None
    try:
        spacing = (float(pixel_spacing[1]), float(pixel_spacing[0]), float(thickness))  # (lateral, axial, B-scan)
    except (TypeError, ValueError):
        raise ModalityError("bad_header", "the OCT pixel measures are not numbers") from None
    limits.check_spacing(spacing, "OCT voxel")
    return spacing


@OCT_READERS.register("dicom")
@quietly
def read_oct_dicom(path: Path, limits: VolumeLimits | None = None) -> Volume:
    """A multi-frame DICOM OCT.

    Raises:
        ModalityError: ``not_dicom``, ``truncated_file``, ``no_pixel_data``, ``not_multiframe``, ``not_grayscale``,
            ``too_large``, ``empty_volume``, ``bad_affine``, ``implausible_spacing``, decoder reasons,
            ``implausible_values``.
    """
    limits = limits or VolumeLimits()
    dataset = read_dicom_file(path, limits.max_bytes)
    if "PixelData" not in dataset:
        raise ModalityError("no_pixel_data", "the DICOM object holds no image")
    try:
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
        rows, columns = int(dataset.get("Rows") or 0), int(dataset.get("Columns") or 0)
        samples = int(dataset.get("SamplesPerPixel", 1))
    except (TypeError, ValueError):
        raise ModalityError("bad_header", "the OCT image size is not a number") from None
    if frames < 2:
        raise ModalityError("not_multiframe", "an OCT DICOM must be multi-frame (one frame per B-scan)")
    if samples != 1:
        raise ModalityError("not_grayscale", "OCT frames must have one sample per pixel")
    limits.check_shape((columns, rows, frames), "OCT volume")  # before decoding a pixel
    spacing = _dicom_spacing(dataset, limits)
    check_decodable(dataset)
    try:
        pixels = dataset.pixel_array  # (frames, rows, columns) = (B-scan, axial, lateral)
    except Exception as error:
        raise ModalityError("undecodable_pixels", f"pixel data could not be decoded ({type(error).__name__})") from None
    if pixels.shape != (frames, rows, columns):
        raise ModalityError("undecodable_pixels", "the pixel data decodes to another size than its header declares")
    data = np.ascontiguousarray(pixels.transpose(2, 1, 0))  # (lateral, axial, B-scan)
    limits.check_values(data, "OCT volume")
    details = {"frames": frames, "transfer_syntax": transfer_syntax_name(dataset), "spacing_known": spacing is not None}
    study_key = str(dataset.get("StudyInstanceUID") or path.resolve())
    return Volume(data, scan_affine(spacing or UNKNOWN_SPACING), "dicom", study_key, details)


@OCT_READERS.register("tiff")
def read_oct_tiff(path: Path, limits: VolumeLimits | None = None) -> Volume:
    """A multi-page TIFF, one page per B-scan, all of one size and type (one image series).

    Raises:
        ModalityError: ``unreadable``, ``multiple_series`` (pages of different sizes or types: a generic reader would
            keep the first run of equal pages and drop the rest), ``not_grayscale``, ``not_3d``, ``complex_data``,
            ``unsupported_dtype``, ``too_large``, ``empty_volume``, ``non_finite``, ``implausible_values``.
    """
    import tifffile

    limits = limits or VolumeLimits()
    require_regular_file(path, "TIFF")
    try:
        with tifffile.TiffFile(path) as tiff:
            series = tiff.series
            if len(series) != 1:
                raise ModalityError(
                    "multiple_series",
                    f"the TIFF holds {len(series)} image series (pages of different sizes or types); export one volume",
                )
            stack_series = series[0]
            shape, dtype = tuple(int(size) for size in stack_series.shape), np.dtype(stack_series.dtype)
            # pages of colour pixels: (pages, rows, columns, samples). A single page of 3-4 sample planes stays 3D
            # (tifffile writes a stack of 3 or 4 B-scans that way) and is read as B-scans, as tifffile reads it.
            if len(shape) > 3 and int(stack_series.keyframe.samplesperpixel) != 1:
                raise ModalityError("not_grayscale", "OCT B-scans must have one sample per pixel")
            if len(shape) != 3:
                raise ModalityError("not_3d", f"expected a multi-page grayscale TIFF, got shape {list(shape)}")
            limits.check_dtype(dtype, "TIFF stack")
            limits.check_shape(shape, "TIFF stack", itemsize=dtype.itemsize)  # from the page headers: nothing decoded
            stack = stack_series.asarray()  # (pages, rows, columns) = (B-scan, axial, lateral)
    except ModalityError:
        raise
    except Exception as error:
        raise ModalityError("unreadable", f"tifffile could not read the file ({type(error).__name__})") from None
    data = np.ascontiguousarray(stack.transpose(2, 1, 0))  # (lateral, axial, B-scan)
    limits.check_values(data, "OCT volume")
    return Volume(data, scan_affine(UNKNOWN_SPACING), "tiff", str(path.resolve()), {"spacing_known": False})


@OCT_READERS.register("nifti")
def read_oct_nifti(path: Path, limits: VolumeLimits | None = None) -> Volume:
    return read_nifti(path, limits=limits)


@OCT_READERS.register("numpy")
def read_oct_numpy(path: Path, limits: VolumeLimits | None = None) -> Volume:
    return read_numpy_volume(path, limits=limits)


@OCT_READERS.register("vendor")
def read_oct_vendor(path: Path, limits: VolumeLimits | None = None) -> Volume:
    """Heidelberg .e2e, Topcon .fds/.fda via ``oct-converter`` (optional). Raises ``missing_package`` without it.

    oct-converter decodes the whole file itself, so its result is checked after reading (size, values); the file
    itself must be a regular file within the budget.
    """
    limits = limits or VolumeLimits()
    size = require_regular_file(path, "OCT").st_size
    if size > limits.max_bytes:
        raise ModalityError("too_large", f"the OCT file has {size} bytes, over the budget of {limits.max_bytes}")
    try:
        readers = lazy_import("oct_converter.readers", "reading vendor OCT files (.e2e, .fds, .fda)", "oct-converter")
    except ImportError as error:
        raise ModalityError("missing_package", str(error)) from error
    reader_class = {".e2e": readers.E2E, ".fds": readers.FDS, ".fda": readers.FDA}[path.suffix.lower()]
    try:
        volumes = reader_class(str(path)).read_oct_volume()
    except Exception as error:
        raise ModalityError("unreadable", f"oct-converter could not read the file ({type(error).__name__})") from None
    volumes = volumes if isinstance(volumes, list) else [volumes]
    if len(volumes) != 1:
        raise ModalityError("multiple_volumes", f"the file holds {len(volumes)} OCT volumes; export the one to use")
    stack = np.asarray(volumes[0].volume)  # (B-scan, axial, lateral)
    if stack.ndim != 3:
        raise ModalityError("not_3d", f"expected B-scans of one size, got shape {list(stack.shape)}")
    limits.check_shape(stack.shape, "OCT volume", itemsize=stack.dtype.itemsize)
    data = np.ascontiguousarray(stack.transpose(2, 1, 0))  # (lateral, axial, B-scan)
    limits.check_values(data, "OCT volume")
    return Volume(data, scan_affine(UNKNOWN_SPACING), "vendor", str(path.resolve()), {"spacing_known": False})
