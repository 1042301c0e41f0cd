"""DICOM display transforms (PS3.3 C.11.2): a VOI LUT or a window maps modality values to [0, 1].

pydicom's ``apply_voi_lut`` maps to the output range of the stored bit depth and works in float64; here the same
rules produce the display fraction in [0, 1] directly, in float32 and in place (a mammogram is 20+ million pixels).
``tests/modalities/image/test_dicom.py`` checks both against each other. Rules:

- LINEAR (the default function): ``((x - (c - 0.5)) / (w - 1) + 0.5)`` clipped, with ``x <= c - 0.5 - (w - 1) / 2``
  black and ``x > c - 0.5 + (w - 1) / 2`` white; LINEAR_EXACT: ``(x - c) / w + 0.5`` clipped; SIGMOID:
  ``1 / (1 + exp(-4 (x - c) / w))``.
- A VOI LUT Sequence item: values below the first mapped value take the first entry, above the last the last one;
  entries are divided by ``2**bits - 1`` (the LUT Descriptor's third value).
- No VOI in the file: the image's own range (minimum black, maximum white), as viewers do.
"""

from __future__ import annotations

import struct

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID

from medclip.registry import Registry
from medclip.types import ModalityError

IMAGE_VOI_FUNCTIONS: Registry = Registry("VOI LUT function")


@IMAGE_VOI_FUNCTIONS.register("LINEAR")
def linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, in place on float32 ``values``."""
    if width < 1:
        raise ModalityError("bad_window", "a LINEAR window needs a WindowWidth of at least 1")
    values -= np.float32(center - 0.5)
    values *= np.float32(1.0 / (width - 1)) if width > 1 else np.float32(np.inf)
    values += np.float32(0.5)
    return np.clip(values, 0.0, 1.0, out=values)


@IMAGE_VOI_FUNCTIONS.register("LINEAR_EXACT")
def linear_exact(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.3.2, in place."""
    if width <= 0:
        raise ModalityError("bad_window", "a LINEAR_EXACT window needs a positive WindowWidth")
    values -= np.float32(center)
    values *= np.float32(1.0 / width)
    values += np.float32(0.5)
    return np.clip(values, 0.0, 1.0, out=values)


@IMAGE_VOI_FUNCTIONS.register("SIGMOID")
def sigmoid(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.3.1, in place."""
    if width <= 0:
        raise ModalityError("bad_window", "a SIGMOID window needs a positive WindowWidth")
    values -= np.float32(center)
    values *= np.float32(-4.0 / width)
    np.exp(values, out=values)
    values += np.float32(1.0)
    return np.reciprocal(values, out=values)


def _pick(value, index: int) -> float:
    """The ``index``-th value of a multi-valued DS (one value counts for every index)."""
    items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    if index >= len(items):
        raise ModalityError("voi_index_out_of_range", f"the file holds {len(items)} window(s); voi_index is {index}")
    return float(items[index])


def apply_window(values: np.ndarray, dataset: Dataset, index: int) -> tuple[np.ndarray, str]:
    """Window the float32 modality values of ``dataset`` to [0, 1]; returns them and the function's name."""
    function = str(dataset.get("VOILUTFunction", "") or "LINEAR").strip().upper()
    if function not in IMAGE_VOI_FUNCTIONS:
        raise ModalityError(
            "bad_window", f"unknown VOILUTFunction; DICOM defines {', '.join(IMAGE_VOI_FUNCTIONS.names())}"
        )
    center = _pick(dataset.WindowCenter, index)
    width = _pick(dataset.WindowWidth, index)
    if not (np.isfinite(center) and np.isfinite(width)):
        raise ModalityError("bad_window", "the window centre or width is not a finite number")
    return IMAGE_VOI_FUNCTIONS.get(function)(values, center, width), function


def lut_entries(item: Dataset, little_endian: bool, signed: bool) -> tuple[np.ndarray, int, int]:
    """(entries as uint16, first mapped value, bits) of a LUT item; checks the descriptor against the data."""
    descriptor = item.get("LUTDescriptor")
    data = item.get("LUTData")
    if descriptor is None or data is None or len(descriptor) != 3:
        raise ModalityError("bad_voi_lut", "a VOI LUT item lacks its LUT Descriptor or LUT Data")
    count, first, bits = (int(value) for value in descriptor)
    count = count or 65536  # 0 means 2**16 entries
    if not 8 <= bits <= 16:
        raise ModalityError("bad_voi_lut", f"a VOI LUT declares {bits} bits per entry (DICOM allows 8 to 16)")
    if signed and first > 32767:  # the descriptor is US even when the pixel values are signed (PS3.3 C.11.2.1.1)
        first -= 65536
    if isinstance(data, bytes):
        if len(data) < 2 * count:
            raise ModalityError("bad_voi_lut", "the VOI LUT holds fewer entries than its descriptor declares")
        entries = np.asarray(struct.unpack_from(f"{'<' if little_endian else '>'}{count}H", data), dtype=np.uint16)
    else:
        entries = np.asarray(list(data) if isinstance(data, list | tuple) else [data], dtype=np.int64)
        if entries.size < count or entries.min() < 0 or entries.max() > 65535:
            raise ModalityError("bad_voi_lut", "the VOI LUT's entries do not match its descriptor")
        entries = entries[:count].astype(np.uint16)
    if int(entries.max()) > 2**bits - 1:
        raise ModalityError("bad_voi_lut", f"VOI LUT entries exceed the {bits} bits its descriptor declares")
    return entries, first, bits


def apply_lut(values: np.ndarray, dataset: Dataset, index: int) -> np.ndarray:
    """Map integer modality values through the ``index``-th VOI LUT Sequence item, to [0, 1] float32."""
    items = dataset.VOILUTSequence
    if index >= len(items):
        raise ModalityError("voi_index_out_of_range", f"the file holds {len(items)} VOI LUT(s); voi_index is {index}")
    signed = int(dataset.get("PixelRepresentation", 0) or 0) == 1
    entries, first, bits = lut_entries(items[index], _little_endian(dataset), signed)
    scaled = entries.astype(np.float32) / np.float32(2**bits - 1)  # (N,) display fractions
    positions = np.rint(values).astype(np.int64)  # a LUT is indexed by integers (rescaled values may be fractional)
    np.clip(positions - first, 0, len(entries) - 1, out=positions)  # (H, W) LUT indices
    return scaled[positions]


def _little_endian(dataset: Dataset) -> bool:
    """Byte order of OW LUT data: the transfer syntax's (little endian when the file does not say)."""
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    try:
        return True if syntax is None else bool(UID(syntax).is_little_endian)
    except ValueError:  # a private or unknown transfer syntax UID
        return True


def image_range(values: np.ndarray) -> np.ndarray:
    """No VOI in the file: the image's minimum is black and its maximum white (in place)."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        raise ModalityError("blank_image", "every pixel of the image has the same value")
    values -= np.float32(low)
    values *= np.float32(1.0 / (high - low))
    return values
