"""``OCTConfig``: the options of the ``oct`` modality (the ``modalities.oct`` section of a run's YAML)."""

from __future__ import annotations

from dataclasses import dataclass, field

from medclip.config import ConfigError
from modalities.volume.config import VolumeEncoderConfig
from modalities.volume.limits import VolumeLimits

from .normalize import OCT_NORMALIZATIONS

# Plausible OCT voxel sizes: axial pixels are ~2-7 um, B-scans ~0.01-0.5 mm apart; formats without a voxel size use 1
# "voxel unit", which lies inside too.
OCT_SPACING_MM = (1e-4, 10.0)
# Plausible OCT intensities: far beyond any detector's counts or dB values; larger magnitudes overflow the float32
# sums of the per-volume normalisation.
OCT_INTENSITY_RANGE = (-1e12, 1e12)


@dataclass
class OCTConfig(VolumeEncoderConfig):
    """Options of the OCT plugin (the encoder options, ``encoder`` to ``gradient_checkpointing``, are
    ``VolumeEncoderConfig``'s, as for CT).

    Attributes:
        n_bscans: B-scans per volume after resampling (volumes differ: 25, 49, 97, 128 are common).
        bscan_size: (lateral, axial) pixels of each B-scan after resampling.
        normalization: per-volume intensity normalisation: "percentile" (low/high percentiles -> 0/1, clipped) or
            "zscore" (mean 0, standard deviation 1). Devices differ in gain, so a fixed scale would not transfer.
        percentiles: the low/high percentiles of "percentile".
        augment: train-time augmentation (small affine, noise).
        cache_dir: folder of the preprocessing cache; empty = none.
    """

    n_bscans: int = 32
    bscan_size: list[int] = field(default_factory=lambda: [128, 128])
    normalization: str = "percentile"
    percentiles: list[float] = field(default_factory=lambda: [1.0, 99.0])
    augment: bool = True
    cache_dir: str = ""

    @property
    def size(self) -> tuple[int, int, int]:
        """Output volume shape (lateral, axial, B-scans)."""
        return (int(self.bscan_size[0]), int(self.bscan_size[1]), int(self.n_bscans))

    def __post_init__(self) -> None:
        if len(self.bscan_size) != 2 or any(value < 1 for value in self.bscan_size) or self.n_bscans < 1:
            raise ConfigError("modalities.oct: bscan_size must be two positive integers and n_bscans positive")
        if self.normalization not in OCT_NORMALIZATIONS:
            raise ConfigError(
                f"modalities.oct.normalization {self.normalization!r} is unknown; use one of "
                f"{', '.join(OCT_NORMALIZATIONS.names())}"
            )
        if len(self.percentiles) != 2 or not 0 <= self.percentiles[0] < self.percentiles[1] <= 100:
            raise ConfigError("modalities.oct.percentiles must be [low, high] with 0 <= low < high <= 100")
        try:
            self.encoder_spec(1, self.size)
        except (ValueError, KeyError) as error:
            raise ConfigError(f"modalities.oct: {error}") from error
        if not self.max_decoded_mb > 0:
            raise ConfigError("modalities.oct.max_decoded_mb must be positive")

    def limits(self) -> VolumeLimits:
        """What OCT readers accept: the ``max_decoded_mb`` budget, ``OCT_SPACING_MM`` and ``OCT_INTENSITY_RANGE``."""
        return VolumeLimits(
            max_decoded_mb=self.max_decoded_mb,
            spacing_mm=OCT_SPACING_MM,
            values=OCT_INTENSITY_RANGE,
            values_name="OCT intensities",
        )
