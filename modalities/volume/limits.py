"""``VolumeLimits``: what a volume reader accepts, checked before decoding and again after conversion (issue 14).

A small crafted file can declare a volume of gigabytes, a voxel size that resampling turns into gigabytes, or values
(NaN, 1e30, complex numbers) that the compact storage of the cache (int16 HU, float16 intensities) would silently turn
into finite garbage. So every reader checks, from the header and before allocating anything:

- the decoded size: voxels x 4 bytes (float32, the type preprocessing works in) within ``max_decoded_mb``
  (``too_large``), and no empty axis (``empty_volume``);
- the voxel type: real numbers only (``complex_data`` for complex voxels, ``unsupported_dtype`` for records, RGB
  triplets, objects or booleans);
- the voxel size: finite and positive (``bad_affine``), within the modality's plausible range
  (``implausible_spacing``);

and after decoding and conversion (HU after the rescale, intensities after scaling):

- finite values (``non_finite``), within the modality's plausible range (``implausible_values``).

The preprocessing checks the size of the resampled grid against the same budget before resampling
(``modalities.volume.pipeline``). Messages give counts and limits, never a value read from the file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medclip.data.safe_io import MEGABYTE, check_decoded_size
from medclip.types import ModalityError

FLOAT32_BYTES = 4  # decoded volumes are budgeted as float32: what reorientation and resampling work in
DEFAULT_BUDGET_MB = 2048.0  # ModalityConfig.max_decoded_mb's default, for readers called without a config

# Reason codes of this module (docs/ct.md lists every reader's codes).
EMPTY_VOLUME = "empty_volume"
COMPLEX_DATA = "complex_data"
UNSUPPORTED_DTYPE = "unsupported_dtype"
NON_FINITE = "non_finite"
IMPLAUSIBLE_VALUES = "implausible_values"
IMPLAUSIBLE_SPACING = "implausible_spacing"
BAD_AFFINE = "bad_affine"


@dataclass(frozen=True)
class VolumeLimits:
    """The limits one modality's readers enforce.

    Attributes:
        max_decoded_mb: the most one decoded volume may take, counted as float32 voxels.
        spacing_mm: (smallest, largest) plausible voxel size in mm along any axis.
        values: (lowest, highest) plausible value after conversion (HU for CT, intensity for OCT).
        values_name: what the values are, for messages ("Hounsfield units", "OCT intensities").
    """

    max_decoded_mb: float = DEFAULT_BUDGET_MB
    spacing_mm: tuple[float, float] = (1e-4, 25.0)
    values: tuple[float, float] = (-math.inf, math.inf)
    values_name: str = "values"

    @property
    def max_bytes(self) -> int:
        """The budget in bytes (also the largest single input file accepted)."""
        return int(self.max_decoded_mb * MEGABYTE)

    def check_size(self, shape: Sequence[int], what: str = "volume", itemsize: int = FLOAT32_BYTES) -> None:
        """Refuse a decoded size over the budget (``too_large``), from a header, before anything is allocated.

        Counted as float32 voxels, or at the decoded item size when larger (int64, float64, scaled NIfTI).
        """
        dims = [int(size) for size in shape]
        check_decoded_size(dims, max(int(itemsize), FLOAT32_BYTES), self.max_decoded_mb, what)  # negative: bad_header

    def check_shape(self, shape: Sequence[int], what: str = "volume", itemsize: int = FLOAT32_BYTES) -> None:
        """``check_size``, and no empty axis (``empty_volume``)."""
        self.check_size(shape, what, itemsize)
        if any(int(size) == 0 for size in shape):
            raise ModalityError(EMPTY_VOLUME, f"the {what} has an axis of size 0 ({len(shape)} axes declared)")

    @staticmethod
    def check_dtype(dtype: np.dtype, what: str = "volume") -> None:
        """Real numbers only: complex voxels would lose their imaginary part in every later step."""
        dtype = np.dtype(dtype)
        if dtype.kind == "c":
            raise ModalityError(COMPLEX_DATA, f"the {what} holds complex numbers; export magnitudes (or phases) first")
        if dtype.kind not in "iuf":
            kind = "records or colour triplets" if dtype.fields else f"values of kind '{dtype.kind}'"
            raise ModalityError(UNSUPPORTED_DTYPE, f"the {what} holds {kind}, not one real number per voxel")

    def check_spacing(self, spacing: Sequence[float], what: str = "voxel") -> None:
        """Finite positive voxel sizes (``bad_affine``) within the plausible range (``implausible_spacing``)."""
        values = np.asarray(spacing, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ModalityError(BAD_AFFINE, f"the {what} size is not finite (NaN or infinite)")
        if (values <= 0).any():
            raise ModalityError(BAD_AFFINE, f"the {what} size must be positive")
        low, high = self.spacing_mm
        if (values < low).any() or (values > high).any():
            raise ModalityError(
                IMPLAUSIBLE_SPACING,
                f"a {what} size lies outside the plausible range of {low:g} to {high:g} mm for this modality",
            )

    def check_values(self, data: np.ndarray, what: str = "volume") -> None:
        """After conversion: finite values (``non_finite``) within the plausible range (``implausible_values``)."""
        values = np.asarray(data)
        self.check_dtype(values.dtype, what)
        if values.size == 0:
            raise ModalityError(EMPTY_VOLUME, f"the {what} holds no voxels")
        if values.dtype.kind == "f":
            finite = np.isfinite(values)
            if not finite.all():
                count = int(values.size - np.count_nonzero(finite))
                raise ModalityError(NON_FINITE, f"the {what} has {count} NaN or infinite voxel(s)")
        low, high = self.values
        lowest, highest = values.min(), values.max()
        if lowest < low or highest > high:
            raise ModalityError(
                IMPLAUSIBLE_VALUES,
                f"the {what} has {self.values_name} outside the plausible range of {low:g} to {high:g}",
            )
