"""Shared 3D imaging code of the CT and OCT plugins: readers (DICOM series, NIfTI, NumPy) and their limits (budgets,
plausible ranges), geometry, deterministic preprocessing, the cache-aware loading pipeline, augmentation, 3D encoders,
the chest CT phantom, and the ``VolumeModality`` / ``VolumeEncoderConfig`` bases both plugins derive from."""

from .config import VolumeEncoderConfig
from .encoders import PRESETS, VOLUME_ENCODERS, VolumeEncoderSpec, build_volume_encoder, resolve_spec
from .geometry import LPS_TO_RAS, check_affine, orientation_code, reorient, spacing_of
from .limits import VolumeLimits
from .modality import VolumeModality
from .preprocess import GeometrySpec, apply_geometry
from .resnet3d import VARIANTS as RESNET3D_VARIANTS  # registers the MONAI / MedicalNet ResNets
from .volume import Volume

__all__ = [
    "LPS_TO_RAS",
    "PRESETS",
    "RESNET3D_VARIANTS",
    "VOLUME_ENCODERS",
    "GeometrySpec",
    "Volume",
    "VolumeEncoderConfig",
    "VolumeEncoderSpec",
    "VolumeLimits",
    "VolumeModality",
    "apply_geometry",
    "build_volume_encoder",
    "check_affine",
    "orientation_code",
    "reorient",
    "resolve_spec",
    "spacing_of",
]
