"""Voxel geometry: affine checks, spacing, orientation codes and exact reorientation.

Convention of every medclip volume: the array is indexed ``(i, j, k)`` and its 4x4 ``affine`` maps ``(i, j, k, 1)``
to patient coordinates in millimetres in **RAS+**, the NIfTI/nibabel convention: coordinates increase towards the
patient's Right, Anterior and Superior. DICOM uses LPS+ (increasing towards Left, Posterior, Superior); ``LPS_TO_RAS``
negates the first two axes. The orientation code of an array (e.g. "RAS", "LPS") names, per array axis, the direction
in which that index increases (nibabel's ``aff2axcodes``).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel import orientations

from medclip.types import ModalityError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
SINGULAR_TOLERANCE = 1e-6  # |det| of the 3x3 part, relative to the product of the column norms


def check_affine(affine: np.ndarray) -> np.ndarray:
    """Return ``affine`` as float64 (4, 4), refusing one that cannot place voxels in the patient.

    Raises:
        ModalityError: ``bad_affine`` for a wrong shape, non-finite values, an all-zero or singular 3x3 part, or a
            last row other than (0, 0, 0, 1). Such affines are never silently replaced by an identity.
    """
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ModalityError("bad_affine", f"the affine must be 4x4, got shape {affine.shape}")
    if not np.isfinite(affine).all():
        raise ModalityError("bad_affine", "the affine has non-finite (NaN or infinite) values")
    linear = affine[:3, :3]
    if not linear.any():
        raise ModalityError("bad_affine", "the affine's 3x3 part is all zero: voxels have no position")
    norms = np.linalg.norm(linear, axis=0)  # (3,) voxel size along each array axis
    if (norms == 0).any() or abs(np.linalg.det(linear)) <= SINGULAR_TOLERANCE * float(np.prod(norms)):
        raise ModalityError("bad_affine", "the affine is singular: two array axes point the same way or have size 0")
    if not np.allclose(affine[3], [0.0, 0.0, 0.0, 1.0]):
        raise ModalityError("bad_affine", "the affine's last row must be 0 0 0 1")
    return affine


def spacing_of(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along each array axis (the column norms of the 3x3 part)."""
    return tuple(float(value) for value in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


def orientation_code(affine: np.ndarray) -> str:
    """Three letters, e.g. "RAS": the direction in which each array index increases (nibabel ``aff2axcodes``)."""
    return "".join(nib.aff2axcodes(np.asarray(affine)))


def check_orientation_code(code: str) -> str:
    """Validate a target orientation such as "RAS" or "LPS" (one of R/L, A/P, S/I each, in any order)."""
    code = code.upper()
    pairs = [{"R", "L"}, {"A", "P"}, {"S", "I"}]
    if len(code) != 3 or any(sum(letter in pair for letter in code) != 1 for pair in pairs):
        raise ValueError(f"orientation {code!r} must use one of R/L, A/P and S/I each, e.g. 'RAS' or 'LPS'")
    return code


def reorient(array: np.ndarray, affine: np.ndarray, target: str = "RAS") -> tuple[np.ndarray, np.ndarray]:
    """Flip and transpose the last three axes of ``array`` so its axes follow ``target`` (exact, no interpolation).

    Args:
        array: (..., I, J, K); leading (channel) axes are kept.
        affine: the RAS affine of the spatial axes.
        target: orientation code of the result.

    Returns:
        The reoriented array (a view when possible) and its affine.
    """
    spatial = array.shape[-3:]
    current = orientations.io_orientation(affine)
    wanted = orientations.axcodes2ornt(tuple(check_orientation_code(target)))
    transform = orientations.ornt_transform(current, wanted)
    if np.array_equal(transform, [[0, 1], [1, 1], [2, 1]]):
        return array, np.asarray(affine, dtype=np.float64)
    lead = array.ndim - 3
    moved = np.moveaxis(array, range(lead), range(-lead, 0)) if lead else array  # (I, J, K, ...)
    reoriented = orientations.apply_orientation(moved, transform)
    if lead:
        reoriented = np.moveaxis(reoriented, range(-lead, 0), range(lead))  # (..., I', J', K')
    new_affine = np.asarray(affine, dtype=np.float64) @ orientations.inv_ornt_aff(transform, spatial)
    return reoriented, new_affine
