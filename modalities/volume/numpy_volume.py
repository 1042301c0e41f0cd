"""NumPy ``.npy`` volumes with a JSON sidecar for their geometry.

``scan.npy`` needs ``scan.json`` next to it holding either ``{"affine": 4x4 RAS}`` or ``{"spacing": [si, sj, sk]}``
(mm per array axis) with an optional ``"orientation"`` code (default "RAS": the array axes already point to
Right, Anterior, Superior). Arrays are read with ``allow_pickle=False``.

Both files must be regular files (``not_regular_file``); the sidecar is read up to ``MAX_SIDECAR_BYTES``
(``too_large``). The array's header (shape, dtype) is read first and checked before any voxel is: real numbers only
(``complex_data``, ``unsupported_dtype``), three non-empty axes within the budget (``not_3d``, ``empty_volume``,
``too_large``), and exactly as many bytes as the header declares (``truncated_file`` when fewer,
``header_data_mismatch`` when more). A sidecar that is not a JSON object with numbers where numbers belong is
``bad_sidecar``; one without geometry ``missing_geometry``; an unknown orientation code ``bad_orientation``. Messages
never quote the sidecar (it is free text).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
from nibabel import orientations

from medclip.data.safe_io import read_limited, require_regular_file
from medclip.types import ModalityError

from .geometry import check_affine, check_orientation_code, spacing_of
from .limits import VolumeLimits
from .volume import Volume

MAX_SIDECAR_BYTES = 1024 * 1024  # a sidecar holds a few numbers; a megabyte is already absurd
NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def sidecar_path(path: Path) -> Path:
    return path.with_suffix(".json")


def numpy_files(path: Path) -> list[Path]:
    """The files ``read_numpy_volume`` reads: the .npy and, when there is one, its sidecar (the cache keys both)."""
    sidecar = sidecar_path(path)
    return [path, sidecar] if sidecar.exists() or sidecar.is_symlink() else [path]


def _is_number(value: object) -> bool:
    """A JSON number: int or float, never a boolean (``True`` is an ``int`` in Python)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def affine_from_sidecar(sidecar: dict, shape: tuple[int, ...]) -> np.ndarray:
    """The RAS affine a sidecar describes (see the module docstring).

    Raises:
        ModalityError: ``bad_sidecar`` (an affine that is not 4 x 4 numbers, spacing that is not three numbers),
            ``missing_geometry``, ``bad_orientation``, ``bad_affine``.
    """
    if "affine" in sidecar:
        rows = sidecar["affine"]
        if (
            not isinstance(rows, list)
            or len(rows) != 4
            or not all(isinstance(row, list) and len(row) == 4 and all(map(_is_number, row)) for row in rows)
        ):
            raise ModalityError("bad_sidecar", "the sidecar's 'affine' must be 4 rows of 4 numbers")
        return check_affine(np.asarray(rows, dtype=np.float64))
    spacing = sidecar.get("spacing")
    if spacing is None:
        raise ModalityError("missing_geometry", "the sidecar needs 'affine' (4x4) or 'spacing' (three numbers in mm)")
    if not isinstance(spacing, list) or len(spacing) != 3 or not all(map(_is_number, spacing)):
        raise ModalityError("bad_sidecar", "the sidecar's 'spacing' must be three numbers (mm)")
    if not all(math.isfinite(value) for value in spacing):
        raise ModalityError("bad_affine", "sidecar spacing must be finite")
    if any(value <= 0 for value in spacing):
        raise ModalityError("bad_affine", "sidecar spacing must be positive")
    orientation = sidecar.get("orientation", "RAS")
    try:
        if not isinstance(orientation, str):
            raise ValueError
        code = check_orientation_code(orientation)
    except ValueError:
        raise ModalityError(
            "bad_orientation", "the sidecar's 'orientation' must use one of R/L, A/P and S/I each, e.g. 'RAS'"
        ) from None
    # An array whose axes follow `code`: build the affine of that orientation with the given voxel sizes.
    transform = orientations.axcodes2ornt(tuple(code))  # how each array axis maps onto R, A, S
    affine = np.eye(4)
    linear = np.zeros((3, 3))
    for axis, (target, flip) in enumerate(transform):
        linear[int(target), axis] = flip * spacing[axis]
    affine[:3, :3] = linear
    return check_affine(affine)


def read_sidecar(path: Path) -> dict:
    """The sidecar's JSON object (``missing_sidecar``, ``not_regular_file``, ``too_large``, ``bad_sidecar``)."""
    if not path.exists() and not path.is_symlink():
        raise ModalityError("missing_sidecar", "a .npy volume needs a .json sidecar with its spacing or affine")
    text = read_limited(path, MAX_SIDECAR_BYTES, "sidecar")
    try:
        sidecar = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested deeper than the parser's stack
        raise ModalityError("bad_sidecar", "the sidecar is not valid JSON") from None
    if not isinstance(sidecar, dict):
        raise ModalityError("bad_sidecar", "the sidecar must hold a JSON object")
    return sidecar


def read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of a .npy file, from its header alone (no voxel is read).

    Raises:
        ModalityError: ``unreadable`` (not a .npy file, an unsupported format version), ``unsupported_dtype``
            (Python objects: they need unpickling).
    """
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            reader = NPY_HEADER_READERS.get(version)
            if reader is None:
                raise ModalityError("unreadable", "the .npy file uses a format version this reader does not take")
            shape, _, dtype = reader(handle)
            offset = handle.tell()
    except ModalityError:
        raise
    except Exception as error:  # a damaged magic string or header dictionary
        raise ModalityError("unreadable", f"the .npy header could not be read ({type(error).__name__})") from None
    if dtype.hasobject:
        raise ModalityError("unsupported_dtype", "the .npy file holds Python objects, which are never unpickled")
    return tuple(int(size) for size in shape), dtype, offset


def check_npy_size(shape: tuple[int, ...], dtype: np.dtype, offset: int, file_size: int) -> None:
    """The file holds exactly the bytes its header declares (``truncated_file`` / ``header_data_mismatch``)."""
    expected = offset + math.prod(shape) * dtype.itemsize
    if file_size < expected:
        raise ModalityError("truncated_file", "the .npy file ends before the voxels its header declares")
    if file_size > expected:
        raise ModalityError("header_data_mismatch", "the .npy file holds more bytes than its header declares")


def read_numpy_volume(path: str | os.PathLike, intensity: str = "raw", limits: VolumeLimits | None = None) -> Volume:
    """Load ``path`` (.npy) and its JSON sidecar.

    Raises:
        ModalityError: ``missing_file``, ``not_regular_file``, ``missing_sidecar``, ``too_large``, ``bad_sidecar``,
            ``unreadable``, ``truncated_file``, ``header_data_mismatch``, ``complex_data``, ``unsupported_dtype``,
            ``not_3d``, ``empty_volume``, ``missing_geometry``, ``bad_orientation``, ``bad_affine``,
            ``implausible_spacing``, ``non_finite``, ``implausible_values``.
    """
    path = Path(path)
    limits = limits or VolumeLimits()
    file_size = require_regular_file(path, ".npy").st_size
    sidecar = read_sidecar(sidecar_path(path))
    shape, dtype, offset = read_npy_header(path)
    limits.check_dtype(dtype, ".npy volume")
    if len(shape) != 3:
        raise ModalityError("not_3d", f"expected a 3D array, got shape {list(shape)}")
    limits.check_size(shape, ".npy volume", itemsize=dtype.itemsize)  # declared gigabytes: too_large, not truncated
    check_npy_size(shape, dtype, offset, file_size)
    limits.check_shape(shape, ".npy volume")  # empty_volume
    affine = affine_from_sidecar(sidecar, shape)
    limits.check_spacing(spacing_of(affine), "voxel")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as error:
        raise ModalityError("unreadable", f"the .npy volume is unreadable ({type(error).__name__})") from None
    limits.check_values(data, ".npy volume")
    return Volume(
        data=data, affine=affine, source="numpy", study_key=str(path.resolve()), details={"intensity": intensity}
    )
