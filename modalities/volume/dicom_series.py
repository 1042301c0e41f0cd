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
- Limits (``VolumeLimits``, issue 14): only regular files are opened (``not_regular_file``), each within the budget;
  Rows x Columns x slices is checked against ``max_decoded_mb`` before any pixel is decoded (``too_large``, or
  ``empty_volume`` for a zero size); geometry must be finite (``bad_affine``) and voxel sizes plausible
  (``implausible_spacing``); a RescaleSlope of 0 is ``bad_rescale``; Hounsfield units are checked after the rescale
  (``non_finite``, ``implausible_values``), before the cache's int16 storage could turn them into finite garbage.
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
from pydicom.dataset import Dataset

from medclip.types import ModalityError
from modalities.dicom_quiet import quietly

from .dicom_codecs import check_decodable, transfer_syntax_name
from .dicom_files import list_dicom_files, read_dicom_file
from .geometry import LPS_TO_RAS, check_affine, spacing_of
from .limits import VolumeLimits
from .volume import Volume

POSITION_TOLERANCE_MM = 0.01  # DS strings carry ~1e-5 mm rounding; anything above this is real geometry
ORIENTATION_TOLERANCE = 1e-4
SPACING_RELATIVE_TOLERANCE = 0.01  # slice gaps within 1 % of each other count as regular
EXACT_INTERCEPT_LIMIT = 2**24  # integer intercepts up to this keep integer HU exact (float32 holds them exactly)
_UID_SYNTAX = re.compile(r"(?=.{1,64}$)[0-9]+(\.[0-9]+)*")  # dotted numbers (leading zeros, seen in old exports, pass)


@dataclass
class SeriesGeometry:
    """A validated, ordered series ready to decode."""

    slices: list[Dataset]  # in patient order along the normal
    affine_lps: np.ndarray  # (4, 4)


def read_datasets(files: Sequence[Path], max_bytes: int) -> list[Dataset]:
    """Parse every file, its pixel data left on disk until decoded (``dicom_files.read_dicom_file``).

    Raises:
        ModalityError: ``not_dicom`` and ``truncated_file`` (counting the files, never naming them: file names can
            hold identifiers), ``empty_series`` when there are no files, and ``read_dicom_file``'s other reasons
            (``too_large``, ``bad_header``, ``unreadable``) at the first file that has one.
    """
    if not files:
        raise ModalityError("empty_series", "the DICOM folder holds no files")
    datasets, not_dicom, cut_short = [], 0, 0
    for path in files:
        try:
            datasets.append(read_dicom_file(path, max_bytes))
        except ModalityError as error:
            if error.reason == "not_dicom":
                not_dicom += 1
            elif error.reason == "truncated_file":
                cut_short += 1
            else:
                raise
    if not_dicom:
        raise ModalityError("not_dicom", f"{not_dicom} of {len(files)} file(s) in the series folder are not DICOM")
    if cut_short:
        raise ModalityError("truncated_file", f"{cut_short} of {len(files)} DICOM file(s) end inside an element")
    return datasets


def series_number_of(datasets: Sequence[Dataset]) -> int | None:
    value = datasets[0].get("SeriesNumber")
    return int(value) if value not in (None, "") else None


def _floats(dataset: Dataset, keyword: str, count: int) -> np.ndarray:
    value = dataset.get(keyword)
    if value is None or len(value) != count:
        raise ModalityError("missing_geometry", f"a slice has no valid {keyword}")
    numbers = np.asarray([float(item) for item in value], dtype=np.float64)
    if not np.isfinite(numbers).all():
        raise ModalityError("bad_affine", f"a slice has a non-finite (NaN or infinite) {keyword}")
    return numbers


def _image_size(dataset: Dataset) -> tuple[int, int]:
    """(Rows, Columns), both present; ``empty_volume`` when either is 0."""
    rows, columns = dataset.get("Rows"), dataset.get("Columns")
    if rows in (None, "") or columns in (None, ""):
        raise ModalityError("missing_geometry", "a slice has no Rows or Columns")
    if int(rows) <= 0 or int(columns) <= 0:
        raise ModalityError("empty_volume", "a slice declares 0 Rows or Columns")
    return int(rows), int(columns)


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


def validate_series(
    datasets: Sequence[Dataset], quarantine: bool = True, limits: VolumeLimits | None = None
) -> SeriesGeometry:
    """Check one series' geometry, size and voxel size, and order its slices (the rules of the module docstring)."""
    limits = limits or VolumeLimits()
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
    size = _image_size(first)
    limits.check_shape((size[1], size[0], len(datasets)), "DICOM series")  # (I, J, K) before decoding a pixel
    for dataset in datasets:
        if not np.allclose(_floats(dataset, "ImageOrientationPatient", 6), orientation, atol=ORIENTATION_TOLERANCE):
            raise ModalityError("inconsistent_orientation", "slices of the series have different orientations")
        if _image_size(dataset) != size:
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
    check_affine(affine)
    limits.check_spacing(spacing_of(affine), "DICOM voxel")
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
        if value not in (None, "") and float(value) > 0:  # NaN is not > 0: the next keyword, or missing_geometry
            return float(value)
    raise ModalityError("missing_geometry", "a one-slice series needs SliceThickness to know its voxel depth")


def _rescale(dataset: Dataset) -> tuple[float, float]:
    """(RescaleSlope, RescaleIntercept) of a slice; absent values are 1 and 0, a slope of 0 is ``bad_rescale``."""
    slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
    slope = 1.0 if slope in (None, "") else float(slope)
    intercept = 0.0 if intercept in (None, "") else float(intercept)
    if slope == 0:  # every pixel would get the intercept: an image of one value
        raise ModalityError("bad_rescale", "a slice has RescaleSlope 0, which maps every pixel to one value")
    return slope, intercept


def hounsfield_slices(slices: Sequence[Dataset], limits: VolumeLimits | None = None) -> np.ndarray:
    """Decode each slice and apply its RescaleSlope/Intercept once: (I, J, K) HU, int16 when exact, else float32.

    Slices are written one at a time into the (I, J, K) float32 result and each slice's pixel data is released once
    copied, so decoding holds the result plus one slice (the caller checked the size from Rows x Columns x slices).
    The HU are then checked (``limits.check_values``: ``non_finite``, ``implausible_values``) before anything can
    store them.
    """
    limits = limits or VolumeLimits()
    check_decodable(slices[0])
    rows, columns = _image_size(slices[0])
    rescales = [_rescale(dataset) for dataset in slices]
    exact = all(
        slope == 1.0 and intercept.is_integer() and abs(intercept) <= EXACT_INTERCEPT_LIMIT
        for slope, intercept in rescales
    )
    hounsfield = np.empty((columns, rows, len(slices)), dtype=np.float32)  # (I, J, K)
    for index, (dataset, (slope, intercept)) in enumerate(zip(slices, rescales, strict=True)):
        if int(dataset.get("SamplesPerPixel", 1)) != 1:
            raise ModalityError("not_grayscale", "CT slices must have one sample per pixel")
        try:
            pixels = dataset.pixel_array  # (rows, columns) stored values; pydicom applies no rescale here
        except Exception as error:
            raise ModalityError(
                "undecodable_pixels", f"pixel data could not be decoded ({type(error).__name__})"
            ) from None
        if pixels.shape != (rows, columns):
            raise ModalityError("undecodable_pixels", "a slice decodes to another size than its Rows x Columns")
        if exact:  # integer HU: exact in float32 for 16-bit pixels and intercepts up to 2^24
            hounsfield[:, :, index] = pixels.T.astype(np.int64) + int(intercept)  # (I, J)
        else:
            with np.errstate(over="ignore", invalid="ignore"):  # inf / NaN are refused below, with a reason
                hounsfield[:, :, index] = pixels.T.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        del dataset.PixelData  # releases the pixel bytes and pydicom's decoded copy
    limits.check_values(hounsfield, "CT series")
    if exact and hounsfield.min() >= np.iinfo(np.int16).min and hounsfield.max() <= np.iinfo(np.int16).max:
        return hounsfield.astype(np.int16)
    return hounsfield


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
def read_dicom_series(
    path: str | os.PathLike,
    series_number: int | None = None,
    quarantine: bool = True,
    limits: VolumeLimits | None = None,
) -> Volume:
    """Load one CT series from a folder (or one DICOM file) as HU with a RAS affine.

    Args:
        path: a series folder, or a single-slice DICOM file.
        series_number: which SeriesNumber to load when the folder holds several series.
        quarantine: refuse series that may carry burned-in identifiers (see the module docstring).
        limits: the budget and plausible ranges (CT's, from its config; generic ones by default).

    Raises:
        ModalityError: with the reason codes of the module docstring; ``bad_header`` for a numeric tag that does not
            parse (a damaged DS/IS value such as "2.5z": pydicom keeps it as text and ``float`` fails later).
    """
    try:
        return _read_dicom_series(Path(path), series_number, quarantine, limits or VolumeLimits())
    except ModalityError:
        raise
    except (ValueError, TypeError) as error:  # the library message quotes the header value: not passed on
        raise ModalityError(
            "bad_header", f"a slice has a malformed numeric header value ({type(error).__name__})"
        ) from None


def _read_dicom_series(path: Path, series_number: int | None, quarantine: bool, limits: VolumeLimits) -> Volume:
    files = list_dicom_files(path) if path.is_dir() else [path]
    groups = group_series(read_datasets(files, limits.max_bytes))
    rejected: list[dict[str, object]] = []
    usable: list[tuple[int | None, SeriesGeometry]] = []
    errors: list[ModalityError] = []
    for group in groups:
        number = series_number_of(group)
        if series_number is not None and number != series_number:
            continue
        try:
            usable.append((number, validate_series(group, quarantine=quarantine, limits=limits)))
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
    data = hounsfield_slices(geometry.slices, limits)
    return Volume(
        data=data, affine=LPS_TO_RAS @ geometry.affine_lps, source="dicom", study_key=study_key, details=details
    )
