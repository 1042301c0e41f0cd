"""``CTConfig``: the options of the ``ct`` modality (the ``modalities.ct`` section of a run's YAML)."""

from __future__ import annotations

from dataclasses import dataclass, field

from medclip.config import ConfigError
from modalities.volume.config import VolumeEncoderConfig
from modalities.volume.geometry import check_orientation_code
from modalities.volume.limits import VolumeLimits

from .windows import parse_window

# Plausible CT voxel sizes: micro-CT reaches 0.01 mm, the thickest clinical slabs 10 mm; 25 mm leaves room for
# downsampled research data. A 90 mm "voxel" is a damaged header, and resampling it to 3 mm multiplies the volume by
# 27 000.
CT_SPACING_MM = (0.01, 25.0)
# Plausible Hounsfield units: everything 16-bit CT pixels produce with the usual rescales (stored -32768..65535,
# intercept -1024..0). Air is -1000, dense metal up to ~30 000 on extended scales, padding as low as -32768 - 1024.
HU_RANGE = (-33792.0, 65535.0)


@dataclass
class CTConfig(VolumeEncoderConfig):
    """Options of the CT plugin (the encoder options, ``encoder`` to ``gradient_checkpointing``, are
    ``VolumeEncoderConfig``'s).

    Attributes:
        orientation: axis code every volume is reoriented to; RAS is nibabel's and most NIfTI tools' convention.
        spacing: target voxel size in mm along the three output axes.
        size: output volume shape after resampling (centre crop / pad with air, -1024 HU).
        hu_windows: one input channel per window: names ("lung", "mediastinum", "bone", ...) or "level:width".
        augment: train-time augmentation (small rotations/shifts/scaling, HU offset, noise); never left-right flips,
            because reports name sides.
        hu_shift: the largest random HU offset of the augmentation (scanner calibration differences).
        cache_dir: folder of the preprocessing cache; empty = no cache (preprocess on every load).
        quarantine: refuse DICOM series flagged BurnedInAnnotation=YES or of Modality US/SC/OT, whose pixels may show
            patient data (counted in the run summary); set false only for data already screened (then nothing is
            cached).
    """

    orientation: str = "RAS"
    spacing: list[float] = field(default_factory=lambda: [3.0, 3.0, 3.0])  # 3 mm keeps the tiny preset CPU-sized
    size: list[int] = field(default_factory=lambda: [112, 112, 96])  # ~34 x 34 x 29 cm at 3 mm: a whole chest
    hu_windows: list[str] = field(default_factory=lambda: ["lung", "mediastinum", "bone"])
    augment: bool = True
    hu_shift: float = 20.0
    cache_dir: str = ""
    quarantine: bool = True

    def __post_init__(self) -> None:
        try:
            check_orientation_code(self.orientation)
            for window in self.hu_windows:
                parse_window(window)
            self.encoder_spec(max(1, len(self.hu_windows)), self.size)
        except (ValueError, KeyError) as error:
            raise ConfigError(f"modalities.ct: {error}") from error
        if not 1 <= len(self.hu_windows) <= 8:
            raise ConfigError("modalities.ct.hu_windows must name 1 to 8 windows (one input channel each)")
        if len(self.spacing) != 3 or any(value <= 0 for value in self.spacing):
            raise ConfigError(f"modalities.ct.spacing must be three positive numbers (mm), got {self.spacing}")
        if len(self.size) != 3 or any(value < 1 for value in self.size):
            raise ConfigError(f"modalities.ct.size must be three positive integers, got {self.size}")
        if self.hu_shift < 0:
            raise ConfigError("modalities.ct.hu_shift must be >= 0")
        if not self.max_decoded_mb > 0:
            raise ConfigError("modalities.ct.max_decoded_mb must be positive")

    def limits(self) -> VolumeLimits:
        """What CT readers accept: the ``max_decoded_mb`` budget, ``CT_SPACING_MM`` and ``HU_RANGE``."""
        return VolumeLimits(
            max_decoded_mb=self.max_decoded_mb,
            spacing_mm=CT_SPACING_MM,
            values=HU_RANGE,
            values_name="Hounsfield units",
        )
