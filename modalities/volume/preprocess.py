"""The deterministic part of volume preprocessing: reorient -> resample to a target spacing -> centre crop/pad.

It runs once per input and its result is what the preprocessing cache stores; random augmentation runs afterwards.
Reorientation is exact (flips and transposes). Resampling is trilinear over the volume's extent (voxel edges stay
where they were, as MONAI's ``Spacing`` with ``align_corners=False`` keeps them), done by ``torch.nn.functional.
interpolate`` because it is several times faster on CPU than a general grid sample; the affine is updated with the
exact voxel size achieved (``round(n * spacing / target)`` voxels). Every step updates the affine, so the output still
says where each voxel lies in the patient.

Resampling allocates the whole resampled grid before the crop: 32^3 voxels of 90 mm resampled to 3 mm are 960^3 float32
(3.5 GB) for a 100 KB input. Each spec therefore says which grid it will allocate (``planned_shape``), from the shape
and affine alone, and the pipeline checks it against the budget before resampling (``VolumePreprocessing``).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from nibabel import orientations

from .geometry import check_orientation_code, reorient, spacing_of


@dataclass(frozen=True)
class GeometrySpec:
    """Where preprocessing puts every volume.

    Attributes:
        orientation: axis code of the output array (e.g. "RAS").
        spacing: output voxel size in mm along the three output axes; 0 on an axis keeps that axis' spacing.
        size: output shape; the resampled volume is centre-cropped or padded to it.
        pad_value: value of padded voxels (-1024 HU, air, for CT; 0 for OCT).
    """

    orientation: str
    spacing: tuple[float, float, float]
    size: tuple[int, int, int]
    pad_value: float

    def __post_init__(self) -> None:
        check_orientation_code(self.orientation)
        if len(self.spacing) != 3 or any(value < 0 for value in self.spacing):
            raise ValueError(f"spacing must be three non-negative numbers (mm), got {list(self.spacing)}")
        if len(self.size) != 3 or any(value < 1 for value in self.size):
            raise ValueError(f"size must be three positive integers, got {list(self.size)}")

    def apply(self, array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reorient, resample to ``spacing`` and crop/pad to ``size``: (I, J, K) -> float32 ``size`` + affine."""
        return apply_geometry(array, affine, self)

    def planned_shape(self, shape: Sequence[int], affine: np.ndarray) -> tuple[int, int, int]:
        """The resampled grid ``apply`` allocates before cropping, from the input's shape and affine (no data)."""
        oriented_shape, oriented_affine = reoriented_grid(shape, affine, self.orientation)
        return resampled_shape(oriented_shape, oriented_affine, self.spacing)

    def fingerprint(self) -> dict[str, Any]:
        return {
            "geometry": "spacing",
            "orientation": self.orientation.upper(),
            "spacing": [float(value) for value in self.spacing],
            "size": [int(value) for value in self.size],
            "pad_value": float(self.pad_value),
        }


@dataclass(frozen=True)
class ResizeSpec:
    """Resize every volume to a fixed shape, whatever its spacing (OCT: a fixed number of B-scans of a fixed size).

    Attributes:
        size: output shape (I, J, K).
    """

    size: tuple[int, int, int]

    def __post_init__(self) -> None:
        if len(self.size) != 3 or any(value < 1 for value in self.size):
            raise ValueError(f"size must be three positive integers, got {list(self.size)}")

    def apply(self, array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Trilinear resize of (I, J, K) to ``size`` over the same extent; float32 + the affine of the new grid."""
        old_shape = np.asarray(array.shape[-3:], dtype=np.float64)
        spacing = np.asarray(spacing_of(affine))
        return resample(array, affine, spacing * old_shape / np.asarray(self.size), exact_shape=self.size)

    def planned_shape(self, shape: Sequence[int], affine: np.ndarray) -> tuple[int, int, int]:
        """The grid ``apply`` allocates: always ``size``."""
        return tuple(int(value) for value in self.size)

    def fingerprint(self) -> dict[str, Any]:
        return {"geometry": "resize", "size": [int(value) for value in self.size]}


def fingerprint_hash(fingerprint: dict[str, Any]) -> str:
    """A short stable hash of a JSON-able preprocessing fingerprint."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def reoriented_grid(shape: Sequence[int], affine: np.ndarray, target: str) -> tuple[tuple[int, ...], np.ndarray]:
    """The (I, J, K) shape and affine ``reorient`` gives an array of ``shape``, without touching data."""
    current = orientations.io_orientation(affine)
    wanted = orientations.axcodes2ornt(tuple(check_orientation_code(target)))
    transform = orientations.ornt_transform(current, wanted)
    spatial = tuple(int(size) for size in shape[-3:])
    new_shape = [0, 0, 0]
    for axis, (destination, _) in enumerate(transform):
        new_shape[int(destination)] = spatial[axis]
    new_affine = np.asarray(affine, dtype=np.float64) @ orientations.inv_ornt_aff(transform, spatial)
    return tuple(new_shape), new_affine


def resampled_shape(shape: Sequence[int], affine: np.ndarray, target: Sequence[float]) -> tuple[int, int, int]:
    """``round(n * spacing / target)`` voxels per axis (at least 1; 0 in ``target`` keeps an axis), as Python ints.

    Python integers: an absurd voxel size gives an absurd but exact count for the budget check, never an overflow.
    """
    spacing = np.asarray(spacing_of(affine))
    requested = np.asarray(target, dtype=np.float64)
    wanted = np.where(requested > 0, requested, spacing)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        sizes = np.maximum(1.0, np.round(np.asarray(shape[-3:], dtype=np.float64) * spacing / wanted))
    return tuple(int(size) if np.isfinite(size) else sys.maxsize for size in sizes)


def resample(
    array: np.ndarray, affine: np.ndarray, target: Sequence[float], exact_shape: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Trilinear resampling of (I, J, K) to voxel size ``target`` (0 keeps an axis); returns float32 and the affine.

    ``exact_shape`` forces the output shape (the voxel size then follows from the unchanged extent).
    """
    spacing = np.asarray(spacing_of(affine))
    old_shape = np.asarray(array.shape[-3:])
    if exact_shape is not None:
        new_shape = np.asarray(exact_shape, dtype=int)
    else:
        new_shape = np.asarray(resampled_shape(old_shape, affine, target), dtype=int)
    if np.array_equal(new_shape, old_shape):
        return np.asarray(array, dtype=np.float32), np.asarray(affine, dtype=np.float64)
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]  # (1, 1, I, J, K)
    resized = F.interpolate(tensor, size=tuple(int(n) for n in new_shape), mode="trilinear", align_corners=False)
    achieved = spacing * old_shape / new_shape  # (3,) exact voxel size of the new grid
    scale = achieved / spacing
    new_affine = np.asarray(affine, dtype=np.float64).copy()
    new_affine[:3, :3] = affine[:3, :3] * scale  # columns scaled to the new voxel size
    # The first voxel centre moves from half an old voxel to half a new voxel inside the (unchanged) edge.
    new_affine[:3, 3] = affine[:3, 3] + affine[:3, :3] @ ((scale - 1.0) / 2.0)
    return resized[0, 0].numpy(), new_affine


def crop_or_pad(
    array: np.ndarray, affine: np.ndarray, size: Sequence[int], pad_value: float
) -> tuple[np.ndarray, np.ndarray]:
    """Centre-crop or pad the last three axes to ``size``; the affine's origin follows the first voxel."""
    shape = array.shape[-3:]
    output = np.full((*array.shape[:-3], *size), pad_value, dtype=array.dtype)
    source, target, offset = [], [], np.zeros(3)
    for axis, (have, want) in enumerate(zip(shape, size, strict=True)):
        if have >= want:  # crop: keep the centre
            start = (have - want) // 2
            source.append(slice(start, start + want))
            target.append(slice(0, want))
            offset[axis] = start
        else:  # pad: centre the data
            start = (want - have) // 2
            source.append(slice(0, have))
            target.append(slice(start, start + have))
            offset[axis] = -start
    output[(..., *target)] = array[(..., *source)]
    new_affine = np.asarray(affine, dtype=np.float64).copy()
    new_affine[:3, 3] = affine[:3, 3] + affine[:3, :3] @ offset
    return output, new_affine


def apply_geometry(array: np.ndarray, affine: np.ndarray, spec: GeometrySpec) -> tuple[np.ndarray, np.ndarray]:
    """Reorient, resample and crop/pad (I, J, K) -> float32 ``spec.size`` with its new affine."""
    oriented, affine = reorient(array, affine, spec.orientation)
    resampled, affine = resample(oriented, affine, spec.spacing)
    return crop_or_pad(resampled, affine, spec.size, spec.pad_value)
