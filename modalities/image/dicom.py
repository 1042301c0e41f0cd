"""DICOM radiographs and photographs (CR, DX, MG, OP, ...) -> ``ImageRecord`` of display intensities in [0, 1].

Rules (each violation is a ``ModalityError`` with its reason code; docs/image.md lists them):

- Quarantine (on by default), shared with CT (``modalities.volume.dicom_series.check_quarantine``): an image flagged
  BurnedInAnnotation = YES, or of Modality US/SC/OT, is never read.
- Only the configured DICOM modalities are read (``unsupported_dicom_modality``): a CT slice or an MR image in an
  X-ray column is a manifest mistake, not a radiograph. "FOR PROCESSING" images (raw detector data that a workstation
  still has to process for display) are refused (``for_processing``) unless ``allow_for_processing``.
- One frame (``multiframe``), 8 or 16 bits allocated, BitsStored <= BitsAllocated and HighBit = BitsStored - 1
  (``bad_header``); MONOCHROME1/2, RGB or YBR colour (``palette_image`` for PALETTE COLOR, ``unsupported_photometric``
  for the rest). The decoded size is checked before decoding (``too_large``), the pixel data's length against the
  header (``truncated_file``), and, for uncompressed data, that no stored value uses bits above BitsStored
  (``values_exceed_bits_stored``: pydicom masks them away, which would silently turn 5000 into 904).
- Display: the modality LUT (Rescale Slope/Intercept, or the Modality LUT Sequence through pydicom) once, then the
  ``voi_index``-th VOI LUT, else window (``modalities.image.voi``), else the image's own range. MONOCHROME1 images
  (and any image with Presentation LUT Shape INVERSE; DX requires INVERSE exactly when MONOCHROME1, so this is one
  inversion, not two) are inverted, so that bone is always bright.
- Pixel size: PixelSpacing (calibrated at the patient) when present, else ImagerPixelSpacing (at the detector).
- Only allow-listed facts leave the reader (``record.IMAGE_DETAILS``); the study is known by its pseudonymised
  StudyInstanceUID.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut
from pydicom.uid import UID

from medclip.data.safe_io import MEGABYTE, check_decoded_size
from medclip.types import ModalityError
from modalities.dicom_quiet import quietly
from modalities.volume.dicom_codecs import check_decodable, transfer_syntax_name
from modalities.volume.dicom_files import read_dicom_file
from modalities.volume.dicom_series import check_quarantine

from .options import ReadOptions
from .record import LATERALITIES, VIEW_POSITIONS, ImageRecord, coded
from .voi import apply_lut, apply_window, image_range

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
COLOR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420")
# PS3.3 C.7.6.3.1.2 values: only these are ever named in a message (a damaged header could hold any text)
PHOTOMETRIC_TERMS = frozenset({*MONOCHROME, *COLOR, "PALETTE COLOR", "HSV", "ARGB", "CMYK", "YBR_PARTIAL_422", "XYB"})
WORKING_BYTES_PER_VALUE = 8  # the decoded values plus their float32 display copy


@quietly
def read_dicom_image(path: Path, options: ReadOptions) -> ImageRecord:
    """Read one DICOM image file as display intensities (the rules of the module docstring)."""
    # a regular file within the budget, parsed with bounded memory; truncated, non-DICOM and absurdly complex
    # headers are refused with their reason code (shared with the CT series reader)
    dataset = read_dicom_file(path, int(options.max_decoded_mb * MEGABYTE))
    try:
        return _read(dataset, path, options)
    except ModalityError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as error:  # damaged header values
        raise ModalityError("bad_header", f"the image has a malformed header value ({type(error).__name__})") from None


def _read(dataset: Dataset, path: Path, options: ReadOptions) -> ImageRecord:
    if options.quarantine:
        check_quarantine([dataset])
    if "PixelData" not in dataset:
        raise ModalityError("no_pixel_data", "the DICOM object holds no pixel data (not an image)")
    modality = str(dataset.get("Modality", "") or "").strip().upper()
    if modality not in options.dicom_modalities:
        raise ModalityError(
            "unsupported_dicom_modality",
            f"the object's Modality is not read as an image; accepted: {', '.join(options.dicom_modalities)}",
        )
    intent = str(dataset.get("PresentationIntentType", "") or "").strip().upper()
    if intent == "FOR PROCESSING" and not options.allow_for_processing:
        raise ModalityError("for_processing", "the image is FOR PROCESSING (raw detector data, not for display)")
    if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
        raise ModalityError("multiframe", "multi-frame images (tomosynthesis, cine) are not read as one 2-D image")
    photometric = str(dataset.get("PhotometricInterpretation", "") or "").strip().upper()
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    if photometric == "PALETTE COLOR":
        raise ModalityError("palette_image", "palette-colour images are not read: convert them to RGB or grayscale")
    if not ((photometric in MONOCHROME and samples == 1) or (photometric in COLOR and samples == 3)):
        shown = photometric if photometric in PHOTOMETRIC_TERMS else "an unknown value"
        raise ModalityError("unsupported_photometric", f"PhotometricInterpretation {shown} with {samples} samples")
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    allocated, stored = int(dataset.BitsAllocated), int(dataset.get("BitsStored", dataset.BitsAllocated))
    high_bit = int(dataset.get("HighBit", stored - 1))
    if allocated not in (8, 16) or not 1 <= stored <= allocated or high_bit != stored - 1:
        raise ModalityError("bad_header", f"unsupported bit layout ({allocated} allocated, {stored} stored)")
    options.check_size(rows, columns)
    check_decoded_size((samples, rows, columns), WORKING_BYTES_PER_VALUE, options.max_decoded_mb, "image")
    color = "rgb" if samples == 3 else "grayscale"
    check_decodable(dataset)
    stored_samples = rows * columns * (2 if photometric == "YBR_FULL_422" else samples)  # 4:2:2 halves chroma
    _check_native_pixel_data(dataset, stored_samples, allocated, stored)
    try:
        pixels = dataset.pixel_array  # (rows, columns) or (rows, columns, 3) RGB: pydicom converts YBR to RGB
    except Exception as error:
        raise ModalityError("undecodable_pixels", f"pixel data could not be decoded ({type(error).__name__})") from None
    if pixels.shape[:2] != (rows, columns):
        raise ModalityError("bad_header", "the decoded image does not have the Rows x Columns of its header")
    details = {
        "dicom_modality": modality,
        "sop_class": _sop_class_name(dataset),
        "transfer_syntax": transfer_syntax_name(dataset),
        "photometric_interpretation": photometric,
        "bits_stored": stored,
        "color": color,
        "intensity": "display",
    }
    if color == "rgb":
        display = np.moveaxis(pixels, -1, 0).astype(np.float32) / np.float32(2**stored - 1)  # (3, H, W)
        details.update(voi="none", inverted=False)
    else:
        display = _grayscale_display(dataset, pixels, photometric, options.voi_index, details)[None]  # (1, H, W)
    if float(display.max()) - float(display.min()) <= 1e-6:
        raise ModalityError("blank_image", "every pixel of the displayed image has the same value")
    view = coded(dataset.get("ViewPosition"), VIEW_POSITIONS)
    laterality = coded(dataset.get("ImageLaterality") or dataset.get("Laterality"), LATERALITIES)
    details.update({key: value for key, value in (("view_position", view), ("laterality", laterality)) if value})
    spacing, spacing_source = _spacing(dataset)
    details["spacing_source"] = spacing_source
    details["spacing_known"] = spacing is not None
    study_key = str(dataset.get("StudyInstanceUID") or path.resolve())
    pixels_out = options.to_image_type(display)
    return ImageRecord(pixels=pixels_out, spacing=spacing, source="dicom", study_key=study_key, details=details)


def _grayscale_display(
    dataset: Dataset, stored_values: np.ndarray, photometric: str, voi_index: int, details: dict
) -> np.ndarray:
    """(H, W) stored values -> modality LUT -> VOI -> inversion: (H, W) float32 in [0, 1]."""
    if dataset.get("ModalityLUTSequence"):
        values = np.asarray(apply_modality_lut(stored_values, dataset), dtype=np.float32)
    else:
        values = stored_values.astype(np.float32)
        slope = float(dataset.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(dataset.get("RescaleIntercept", 0.0) or 0.0)
        if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0:
            raise ModalityError("bad_header", "RescaleSlope / RescaleIntercept are not usable numbers")
        if slope != 1.0:
            values *= np.float32(slope)
        if intercept != 0.0:
            values += np.float32(intercept)
    if dataset.get("VOILUTSequence"):
        display = apply_lut(values, dataset, voi_index)
        details["voi"] = "voi_lut"
    elif "WindowCenter" in dataset and "WindowWidth" in dataset:
        display, function = apply_window(values, dataset, voi_index)
        details.update(voi="window", voi_function=function)
    else:
        display = image_range(values)
        details["voi"] = "image_range"
    shape = str(dataset.get("PresentationLUTShape", "") or "").strip().upper()
    inverted = photometric == "MONOCHROME1" or shape == "INVERSE"
    if inverted:
        np.subtract(np.float32(1.0), display, out=display)
    details["inverted"] = inverted
    return display


def _check_native_pixel_data(dataset: Dataset, values: int, allocated: int, stored: int) -> None:
    """For uncompressed pixel data: enough bytes for the header's image, and no value above BitsStored.

    Compressed data is checked by its decoder instead.
    """
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    try:
        compressed = syntax is not None and UID(syntax).is_compressed
    except ValueError:
        compressed = False
    if compressed:
        return
    data = dataset.PixelData
    expected = values * allocated // 8
    if len(data) < expected:
        raise ModalityError("truncated_file", "the pixel data is shorter than the image its header declares")
    if stored == allocated:
        return
    big_endian = syntax is not None and _is_big_endian(syntax)
    raw = np.frombuffer(data, dtype=f"{'>' if big_endian else '<'}u{allocated // 8}", count=values)
    signed = int(dataset.get("PixelRepresentation", 0) or 0) == 1
    high = raw >> np.asarray(stored - 1 if signed else stored, dtype=raw.dtype)  # the bits above BitsStored
    if signed:  # two's complement: the bits from the sign bit up are all 0 or all 1
        ones = (1 << (allocated - stored + 1)) - 1
        bad = bool(((high != 0) & (high != ones)).any())
    else:
        bad = bool(high.any())
    if bad:
        raise ModalityError(
            "values_exceed_bits_stored",
            f"stored values use bits above BitsStored ({stored} of {allocated}): the header's bit depth is wrong, or "
            "the high bits hold overlays; fix the header rather than let the values wrap",
        )


def _is_big_endian(syntax) -> bool:
    try:
        return not UID(syntax).is_little_endian
    except ValueError:
        return False


def _sop_class_name(dataset: Dataset) -> str:
    """The standard name of the SOP class (a registry name, never an identifier), or "unknown"."""
    uid = dataset.get("SOPClassUID")
    name = UID(str(uid)).name if uid else ""
    return name if name and name != str(uid) else "unknown"


def _spacing(dataset: Dataset) -> tuple[tuple[float, float] | None, str]:
    """(row, column) mm from PixelSpacing, else ImagerPixelSpacing; (None, "none") when neither is usable."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = dataset.get(keyword)
        if value is None:
            continue
        try:
            row, column = (float(item) for item in value)
        except (TypeError, ValueError):
            raise ModalityError("bad_header", f"{keyword} is not two numbers") from None
        if not (np.isfinite(row) and np.isfinite(column)) or row <= 0 or column <= 0:
            raise ModalityError("bad_header", f"{keyword} must be two positive sizes in mm")
        return (row, column), keyword
    return None, "none"
