"""``Volume``: voxels + RAS affine + the few facts about an input that may leave the reader.

Readers return a ``Volume``; plugins turn it into ``{name: array, f"{name}_meta": meta}``. The metadata is built here
from an allow-list (geometry, shape, source kind, counts, reason codes): nothing a reader saw in a header can reach
an output unless it is named in ``ALLOWED_DETAILS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .geometry import orientation_code, spacing_of

# Header-derived facts a reader may pass on. Each is geometry, a count, a code or a reason: never an identifier, a
# date, a UID, a description or a file name.
ALLOWED_DETAILS = frozenset(
    {
        "n_slices",  # DICOM files in the loaded series
        "n_series_in_folder",
        "rejected_series",  # [{"series_number": int | None, "reason": str}]
        "transfer_syntax",  # the syntax's name, e.g. "JPEG Baseline (Process 1)"
        "affine_source",  # NIfTI: "sform" or "qform"
        "intensity",  # what the values mean: "hounsfield", "raw"
        "sop_class",  # e.g. "CT Image Storage"
        "frames",
        "spacing_known",  # False when the format carries no voxel size (e.g. plain TIFF): spacing is 1 voxel unit
    }
)


@dataclass
class Volume:
    """A 3D image in patient space.

    Attributes:
        data: (I, J, K) voxels; CT readers give Hounsfield units (int16 when exact, else float32).
        affine: (4, 4) RAS+ affine, array index -> millimetres (see ``geometry``).
        source: reader kind: "dicom", "nifti", "numpy", "tiff", "vendor".
        study_key: what identifies the study to the reader (StudyInstanceUID, resolved path); only ever stored as
            its pseudonym.
        details: facts from ``ALLOWED_DETAILS``.
    """

    data: np.ndarray
    affine: np.ndarray
    source: str
    study_key: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.details) - ALLOWED_DETAILS
        if unknown:  # a programming error, not bad input: the allow-list is the only gate to outputs
            raise ValueError(f"volume details {sorted(unknown)} are not allow-listed (ALLOWED_DETAILS)")


def geometry_meta(array_shape: tuple[int, ...], affine: np.ndarray) -> dict[str, Any]:
    """Spacing (mm per array axis), RAS affine, orientation code and shape, as JSON-able values."""
    return {
        "spacing": [round(value, 6) for value in spacing_of(affine)],
        "affine": np.asarray(affine, dtype=np.float64).round(6).tolist(),
        "affine_convention": "RAS",
        "orientation": orientation_code(affine),
        "shape": [int(size) for size in array_shape],
    }


def volume_meta(volume: Volume, study_pseudonym: str) -> dict[str, Any]:
    """The allow-listed metadata of a loaded volume."""
    return {
        **geometry_meta(volume.data.shape[-3:], volume.affine),
        "source": volume.source,
        "study_pseudonym": study_pseudonym,
        **volume.details,
    }
