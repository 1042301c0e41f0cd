"""DICOM CT series -> ``Volume`` in Hounsfield units with a RAS affine.

Rules (each violation is a ``ModalityError`` with its reason code; see docs/ct.md):

- Files are grouped by SeriesInstanceUID. A folder with one usable series loads it, and lists the series it rejected
  (by SeriesNumber and reason) in the metadata; several usable series need the manifest to name one
  (``folder#series=<SeriesNumber>``), else ``mixed_series``. Files that are not DICOM: ``not_dicom``. Damaged
  headers: a missing or malformed SeriesInstanceUID is ``bad_series_uid``, a numeric tag that does not parse
  ``bad_header`` (both refuse the folder: a damaged file must not silently shorten its series).
- Slices are ordered by the projection of ImagePositionPatient on the slice normal (row x column direction), never by
  file name or InstanceNumber.
- Every slice must share ImageOrientationPatient (``inconsistent_orientation``), Rows/Columns
  (``inconsistent_size``) and PixelSpacing (``inconsistent_spacing``); direction cosines must be orthonormal
  (``bad_affine``).
- Two slices at one position: ``duplicate_positions`` (often two phases or a re-scan in one series: pick one).
  Gaps that are whole multiples of the smallest spacing: ``missing_slices``; other uneven gaps:
  ``irregular_spacing``. Positions not stacked along the normal, or a non-zero GantryDetectorTilt: ``gantry_tilt``.
  None of these is "repaired": resampling over a gap or a shear would invent anatomy.
- RescaleSlope/RescaleIntercept are applied exactly once, per slice, to the stored values (pydicom's
  ``pixel_array`` returns stored values and applies no rescale), giving Hounsfield units.
- Multi-frame (enhanced) CT objects are rejected with ``multiframe``: convert them to a classic series.
- Quarantine (on by default): a series with BurnedInAnnotation = YES (``quarantined_burned_in_annotation``), or of
  Modality US, SC or OT (``quarantined_modality``: ultrasound, secondary captures and "other" objects often carry
  names and dates burned into the pixels, which no header allow-list can remove) is never read. It is counted like
  any other rejection in the run summary. ``quarantine=False`` reads them anyway, for data already screened.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medclip.types import ModalityError
from modalities.dicom_quiet import quietly

from .dicom_codecs import check_decodable, transfer_syntax_name
from .geometry import LPS_TO_RAS
from .volume import Volume

POSITION_TOLERANCE_MM = 0.01  # DS strings carry ~1e-5 mm rounding; anything above this is real geometry
ORIENTATION_TOLERANCE = 1e-4
SPACING_RELATIVE_TOLERANCE = 0.01  # slice gaps within 1 % of each other count as regular
SKIPPED_FILE_NAMES = frozenset({"DICOMDIR"})  # media directory files describe a disc; they are not images
_UID_SYNTAX = re.compile(r"(?=.{1,64}$)[0-9]+(\.[0-9]+)*")  # dotted numbers (leading zeros, seen in old exports, pass)


@dataclass
class SeriesGeometry:
    """A validated, ordered series ready to decode."""

    slices: list[Dataset]  # in patient order along the normal
    affine_lps: np.ndarray  # (4, 4)


def list_dicom_files(folder: Path) -> list[Path]:
    """Every regular, non-hidden file under ``folder`` (recursively), except media directory files."""
    files = []
    for directory, subdirectories, names in os.walk(folder):
        subdirectories[:] = sorted(name for name in subdirectories if not name.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or name.upper() in SKIPPED_FILE_NAMES:
                continue
            files.append(Path(directory) / name)
    return files


def read_datasets(files: Sequence[Path]) -> list[Dataset]:
    """Parse every file (pixel data stays encoded until used).

    Raises:
        ModalityError: ``not_dicom`` (counting the files, never naming them: file names can hold identifiers),
            ``truncated_file`` when a file ends inside an element, ``empty_series`` when there are no files.
    """
    if not files:
        raise ModalityError("empty_series", "the DICOM folder holds no files")
    datasets, not_dicom, cut_short = [], 0, 0
    for path in files:
        try:
            datasets.append(pydicom.dcmread(path))
        except (InvalidDicomError, EOFError, OSError, ValueError):
            not_dicom += 1
            continue
        cut_short += _cut_short(datasets[-1])
    if not_dicom:
        raise ModalityError("not_dicom", f"{not_dicom} of {len(files)} file(s) in the series folder are not DICOM")
    if cut_short:
        raise ModalityError("truncated_file", f"{cut_short} of {len(files)} DICOM file(s) end inside an element")
    return datasets


def _cut_short(dataset: Dataset) -> bool:
    """Whether the file ended inside its last element: pydicom keeps such a partial value without an error.

    Only the last element read can be short (reading stops at the end of the file); it is still raw (undecoded)
    here, so its declared length can be compared with the bytes actually read.
    """
    tags = list(dataset.keys())
    if not tags:
        return False
    raw = dataset.get_item(tags[-1])
    value, length = getattr(raw, "value", None), getattr(raw, "length", 0)
    return isinstance(value, bytes) and length != 0xFFFFFFFF and len(value) < length


def series_number_of(datasets: Sequence[Dataset]) -> int | None:
    value = datasets[0].get("SeriesNumber")
    return int(value) if value not in (None, "") else None


def _floats(dataset: Dataset, keyword: str, count: int) -> np.ndarray:
    value = dataset.get(keyword)
    if value is None or len(value) != count:
        raise ModalityError("missing_geometry", f"a slice has no valid {keyword}")
    return np.asarray([float(item) for item in value], dtype=np.float64)


# Modalities whose pixels often hold burned-in identifiers: ultrasound, secondary capture, other.
QUARANTINED_MODALITIES = frozenset({"US", "SC", "OT"})


def check_quarantine(datasets: Sequence[Dataset]) -> None:
    """Refuse series whose pixels may show patient data (the quarantine rule of the module docstring)."""
    for dataset in datasets:
        if str(dataset.get("BurnedInAnnotation", "") or "").strip().upper() == "YES":
            raise ModalityError(
                "quarantined_burned_in_annotation", "the series is flagged BurnedInAnnotation=YES and is quarantined"
            )
        modality = str(dataset.get("Modality", "") or "").strip().upper()
        if modality in QUARANTINED_MODALITIES:
            raise ModalityError(
                "quarantined_modality",
                f"Modality {modality} objects often carry burned-in identifiers and are quarantined",
            )


def validate_series(datasets: Sequence[Dataset], quarantine: bool = True) -> SeriesGeometry:
    """Check one series' geometry and order its slices (the rules of the module docstring)."""
    if quarantine:
        check_quarantine(datasets)
    for dataset in datasets:
        if "PixelData" not in dataset:
            raise ModalityError("no_pixel_data", "the series holds objects without pixel data (not images)")
        if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
            raise ModalityError("multiframe", "multi-frame (enhanced) CT is not read; convert it to a classic series")
    first = datasets[0]
    orientation = _floats(first, "ImageOrientationPatient", 6)
    row_direction, column_direction = orientation[:3], orientation[3:]
    if (
        abs(np.linalg.norm(row_direction) - 1) > 1e-3
        or abs(np.linalg.norm(column_direction) - 1) > 1e-3
        or abs(row_direction @ column_direction) > 1e-3
    ):
        raise ModalityError("bad_affine", "ImageOrientationPatient direction cosines are not orthonormal")
    pixel_spacing = _floats(first, "PixelSpacing", 2)  # (row spacing, column spacing)
    if (pixel_spacing <= 0).any():
        raise ModalityError("bad_affine", "PixelSpacing must be positive")
    size = (first.get("Rows"), first.get("Columns"))
    for dataset in datasets:
        if not np.allclose(_floats(dataset, "ImageOrientationPatient", 6), orientation, atol=ORIENTATION_TOLERANCE):
            raise ModalityError("inconsistent_orientation", "slices of the series have different orientations")
        if (dataset.get("Rows"), dataset.get("Columns")) != size:
            raise ModalityError("inconsistent_size", "slices of the series have different Rows/Columns")
        if not np.allclose(_floats(dataset, "PixelSpacing", 2), pixel_spacing, atol=1e-6):
            raise ModalityError("inconsistent_spacing", "slices of the series have different PixelSpacing")
        tilt = dataset.get("GantryDetectorTilt")
        if tilt not in (None, "") and abs(float(tilt)) > 1e-3:
            raise ModalityError("gantry_tilt", f"the series was acquired with a gantry tilt of {float(tilt):g} degrees")

    normal = np.cross(row_direction, column_direction)  # (3,) slice normal
    positions = np.stack([_floats(dataset, "ImagePositionPatient", 3) for dataset in datasets])  # (N, 3)
    depth = positions @ normal  # (N,) position along the normal
    order = np.argsort(depth, kind="stable")
    positions, depth = positions[order], depth[order]
    slices = [datasets[index] for index in order]
    if len(slices) > 1:
        slice_spacing = _slice_spacing(positions, depth, normal)
    else:
        slice_spacing = _single_slice_thickness(first)

    affine = np.eye(4)
    affine[:3, 0] = row_direction * pixel_spacing[1]  # i runs along a row: column index, spaced by column spacing
    affine[:3, 1] = column_direction * pixel_spacing[0]  # j runs down a column: row index
    affine[:3, 2] = normal * slice_spacing
    affine[:3, 3] = positions[0]
    return SeriesGeometry(slices=slices, affine_lps=affine)


def _slice_spacing(positions: np.ndarray, depth: np.ndarray, normal: np.ndarray) -> float:
    gaps = np.diff(depth)  # (N-1,)
    if (gaps < POSITION_TOLERANCE_MM).any():
        count = int((gaps < POSITION_TOLERANCE_MM).sum())
        raise ModalityError("duplicate_positions", f"{count} slice(s) share a position with another slice")
    steps = np.diff(positions, axis=0)  # (N-1, 3)
    in_plane = steps - np.outer(steps @ normal, normal)  # (N-1, 3) component of each step across the normal
    if (np.linalg.norm(in_plane, axis=1) > POSITION_TOLERANCE_MM).any():
        raise ModalityError("gantry_tilt", "slice positions are not stacked along the slice normal (tilted or sheared)")
    smallest = float(gaps.min())
    tolerance = max(POSITION_TOLERANCE_MM, SPACING_RELATIVE_TOLERANCE * smallest)
    if (gaps - smallest > tolerance).any():
        ratios = gaps / smallest
        if np.all(np.abs(ratios - np.round(ratios)) * smallest <= tolerance):
            missing = int(np.round(ratios).sum() - len(gaps))
            raise ModalityError(
                "missing_slices", f"{missing} slice(s) are missing from the series (gaps of whole multiples)"
            )
        raise ModalityError("irregular_spacing", f"slice gaps range from {smallest:.3g} to {gaps.max():.3g} mm")
    return float(gaps.mean())


def _single_slice_thickness(dataset: Dataset) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = dataset.get(keyword)
        if value not in (None, "") and float(value) > 0:
            return float(value)
    raise ModalityError("missing_geometry", "a one-slice series needs SliceThickness to know its voxel depth")


def hounsfield_slices(slices: Sequence[Dataset]) -> np.ndarray:
    """Decode each slice and apply its RescaleSlope/Intercept once: (I, J, K) HU, int16 when exact, else float32."""
    check_decodable(slices[0])
    stored, slopes, intercepts = [], [], []
    for dataset in slices:
        if int(dataset.get("SamplesPerPixel", 1)) != 1:
            raise ModalityError("not_grayscale", "CT slices must have one sample per pixel")
        try:
            pixels = dataset.pixel_array  # (rows, columns) stored values; pydicom applies no rescale here
        except Exception as error:
            raise ModalityError(
                "undecodable_pixels", f"pixel data could not be decoded ({type(error).__name__})"
            ) from error
        stored.append(pixels.T)  # (columns, rows) = (I, J)
        slopes.append(float(dataset.get("RescaleSlope", 1.0) or 1.0))
        intercepts.append(float(dataset.get("RescaleIntercept", 0.0) or 0.0))
    volume = np.stack(stored, axis=-1)  # (I, J, K)
    slope = np.asarray(slopes)
    intercept = np.asarray(intercepts)
    if np.all(slope == 1.0) and np.all(intercept == np.round(intercept)):
        hounsfield = volume.astype(np.int32) + intercept.astype(np.int32)  # exact integer HU
        if hounsfield.min() >= np.iinfo(np.int16).min and hounsfield.max() <= np.iinfo(np.int16).max:
            return hounsfield.astype(np.int16)
        return hounsfield.astype(np.float32)
    return (volume.astype(np.float32) * slope.astype(np.float32) + intercept.astype(np.float32)).astype(np.float32)


def group_series(datasets: Sequence[Dataset]) -> list[list[Dataset]]:
    """Datasets grouped by SeriesInstanceUID, ordered by SeriesNumber.

    A file with no SeriesInstanceUID (a header cut short) or one that is not dot-separated numbers (a damaged byte) is
    refused as ``bad_series_uid``: grouped on its own, it would leave the rest of its series to load as a complete,
    good-looking volume with a slice missing.
    """
    groups: dict[str, list[Dataset]] = defaultdict(list)
    for dataset in datasets:
        uid = str(dataset.get("SeriesInstanceUID", "") or "")
        if not _UID_SYNTAX.fullmatch(uid):
            raise ModalityError("bad_series_uid", "a file of the folder has no valid SeriesInstanceUID (damaged file)")
        groups[uid].append(dataset)
    return sorted(groups.values(), key=lambda group: (series_number_of(group) is None, series_number_of(group) or 0))


@quietly
def read_dicom_series(path: str | os.PathLike, series_number: int | None = None, quarantine: bool = True) -> Volume:
    """Load one CT series from a folder (or one DICOM file) as HU with a RAS affine.

    Args:
        path: a series folder, or a single-slice DICOM file.
        series_number: which SeriesNumber to load when the folder holds several series.
        quarantine: refuse series that may carry burned-in identifiers (see the module docstring).

    Raises:
        ModalityError: with the reason codes of the module docstring; ``bad_header`` for a numeric tag that does not
            parse (a damaged DS/IS value such as "2.5z": pydicom keeps it as text and ``float`` fails later).
    """
    try:
        return _read_dicom_series(Path(path), series_number, quarantine)
    except ModalityError:
        raise
    except (ValueError, TypeError) as error:  # the library message quotes the header value: not passed on
        raise ModalityError(
            "bad_header", f"a slice has a malformed numeric header value ({type(error).__name__})"
        ) from None


def _read_dicom_series(path: Path, series_number: int | None, quarantine: bool) -> Volume:
    files = list_dicom_files(path) if path.is_dir() else [path]
    groups = group_series(read_datasets(files))
    rejected: list[dict[str, object]] = []
    usable: list[tuple[int | None, SeriesGeometry]] = []
    errors: list[ModalityError] = []
    for group in groups:
        number = series_number_of(group)
        if series_number is not None and number != series_number:
            continue
        try:
            usable.append((number, validate_series(group, quarantine=quarantine)))
        except ModalityError as error:
            errors.append(error)
            rejected.append({"series_number": number, "reason": error.reason})
    if series_number is not None and not usable and not rejected:
        available = [series_number_of(group) for group in groups]
        raise ModalityError("missing_series", f"no series with SeriesNumber {series_number}; found {available}")
    if not usable:
        if len(errors) == 1:
            raise errors[0]
        listing = ", ".join(f"series {item['series_number']}: {item['reason']}" for item in rejected)
        raise ModalityError(
            "no_valid_series", f"none of the {len(rejected)} series in the folder is usable ({listing})"
        )
    if len(usable) > 1:
        numbers = [number for number, _ in usable]
        raise ModalityError(
            "mixed_series",
            f"the folder holds {len(usable)} usable series (SeriesNumber {numbers}); name one in the manifest as "
            "'<folder>#series=<SeriesNumber>'",
        )
    number, geometry = usable[0]
    first = geometry.slices[0]
    details = {
        "n_slices": len(geometry.slices),
        "n_series_in_folder": len(groups),
        "rejected_series": rejected,
        "transfer_syntax": transfer_syntax_name(first),
        "intensity": "hounsfield",
    }
    study_key = str(first.get("StudyInstanceUID") or path.resolve())
    data = hounsfield_slices(geometry.slices)
    return Volume(
        data=data, affine=LPS_TO_RAS @ geometry.affine_lps, source="dicom", study_key=study_key, details=details
    )
