"""NumPy ``.npy`` volumes with a JSON sidecar for their geometry.

``scan.npy`` needs ``scan.json`` next to it holding either ``{"affine": 4x4 RAS}`` or ``{"spacing": [si, sj, sk]}``
(mm per array axis) with an optional ``"orientation"`` code (default "RAS": the array axes already point to
Right, Anterior, Superior). Arrays are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from nibabel import orientations

from medclip.types import ModalityError

from .geometry import check_affine, check_orientation_code
from .volume import Volume


def sidecar_path(path: Path) -> Path:
    return path.with_suffix(".json")


def affine_from_sidecar(sidecar: dict, shape: tuple[int, ...]) -> np.ndarray:
    """The RAS affine a sidecar describes (see the module docstring)."""
    if "affine" in sidecar:
        return check_affine(np.asarray(sidecar["affine"], dtype=np.float64))
    spacing = sidecar.get("spacing")
    if not isinstance(spacing, list) or len(spacing) != 3 or not all(isinstance(v, int | float) for v in spacing):
        raise ModalityError("missing_geometry", "the sidecar needs 'affine' (4x4) or 'spacing' (three numbers in mm)")
    if any(value <= 0 for value in spacing):
        raise ModalityError("bad_affine", "sidecar spacing must be positive")
    try:
        code = check_orientation_code(str(sidecar.get("orientation", "RAS")))
    except ValueError as error:
        raise ModalityError("bad_affine", str(error)) from error
    # An array whose axes follow `code`: build the affine of that orientation with the given voxel sizes.
    transform = orientations.axcodes2ornt(tuple(code))  # how each array axis maps onto R, A, S
    affine = np.eye(4)
    linear = np.zeros((3, 3))
    for axis, (target, flip) in enumerate(transform):
        linear[int(target), axis] = flip * spacing[axis]
    affine[:3, :3] = linear
    return check_affine(affine)


def read_numpy_volume(path: str | os.PathLike, intensity: str = "raw") -> Volume:
    """Load ``path`` (.npy) and its JSON sidecar.

    Raises:
        ModalityError: ``missing_file``, ``missing_sidecar``, ``unreadable``, ``missing_geometry``, ``bad_affine``,
            ``not_3d``, ``non_finite``.
    """
    path = Path(path)
    if not path.is_file():
        raise ModalityError("missing_file", "the .npy file does not exist")
    sidecar_file = sidecar_path(path)
    if not sidecar_file.is_file():
        raise ModalityError("missing_sidecar", "a .npy volume needs a .json sidecar with its spacing or affine")
    try:
        sidecar = json.loads(sidecar_file.read_text())
        data = np.load(path, allow_pickle=False)
    except Exception as error:
        raise ModalityError(
            "unreadable", f"the .npy volume or its sidecar is unreadable ({type(error).__name__})"
        ) from error
    if not isinstance(sidecar, dict):
        raise ModalityError("missing_geometry", "the sidecar must hold a JSON object")
    if data.ndim != 3:
        raise ModalityError("not_3d", f"expected a 3D array, got shape {list(data.shape)}")
    if data.dtype.kind not in "iuf":
        raise ModalityError("unreadable", f"the array has non-numeric dtype {data.dtype}")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise ModalityError("non_finite", "the volume has NaN or infinite voxels")
    affine = affine_from_sidecar(sidecar, data.shape)
    return Volume(
        data=data, affine=affine, source="numpy", study_key=str(path.resolve()), details={"intensity": intensity}
    )
