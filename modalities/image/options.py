"""``ReadOptions``: what the readers need from the config, and the conversions every reader shares.

Readers decode their format; this module turns the decoded values into the configured image type (grayscale, RGB,
named channels) and the configured intensity scale, with the same refusals for every format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medclip.types import ModalityError

from .config import ImageConfig

AMBIGUOUS_BELOW = 4096  # a 16-bit image whose values all fit in 12 bits is probably a 12-bit image stored in 16 bits
EQUAL_CHANNELS_TOLERANCE = 0  # grayscale saved as RGB has exactly equal channels; anything else is colour


@dataclass(frozen=True)
class ReadOptions:
    """The reader settings of an ``ImageConfig`` (all of them are part of the preprocessing fingerprint)."""

    image_type: str
    channels: tuple[str, ...]
    intensity: str
    percentiles: tuple[float, float]
    stored_bits: int
    voi_index: int
    min_side: int
    max_decoded_mb: float
    quarantine: bool
    allow_for_processing: bool
    dicom_modalities: tuple[str, ...]

    @classmethod
    def from_config(cls, cfg: ImageConfig) -> ReadOptions:
        return cls(
            image_type=cfg.image_type,
            channels=tuple(cfg.channels),
            intensity=cfg.intensity,
            percentiles=(float(cfg.percentiles[0]), float(cfg.percentiles[1])),
            stored_bits=cfg.stored_bits,
            voi_index=cfg.voi_index,
            min_side=cfg.min_side,
            max_decoded_mb=cfg.max_decoded_mb,
            quarantine=cfg.quarantine,
            allow_for_processing=cfg.allow_for_processing,
            dicom_modalities=tuple(name.upper() for name in cfg.dicom_modalities),
        )

    def fingerprint(self) -> dict:
        """The settings that change what a reader returns (the budget and quarantine change only what is refused)."""
        return {
            "image_type": self.image_type,
            "channels": list(self.channels),
            "intensity": self.intensity,
            "percentiles": list(self.percentiles),
            "stored_bits": self.stored_bits,
            "voi_index": self.voi_index,
        }

    # --- shared conversions ----------------------------------------------------------------------------------------
    def check_size(self, height: int, width: int) -> None:
        if min(height, width) < self.min_side:
            raise ModalityError("too_small", f"the image is {height} x {width} pixels, under min_side {self.min_side}")

    def to_image_type(self, display: np.ndarray) -> np.ndarray:
        """(C, H, W) display values of a grayscale (C=1) or colour (C=3) file -> the configured image type.

        Grayscale saved as RGB (three equal channels) becomes one channel, and grayscale becomes RGB by repetition:
        both are exact. A colour image read as grayscale is refused (``not_grayscale``): a coloured radiograph
        usually carries coloured annotations, and which mix of colours to keep is not ours to guess.
        """
        channels = display.shape[0]
        if self.image_type == "multichannel":
            raise ModalityError(
                "unnamed_channels", "multichannel images are read from TIFF or NumPy stacks with named channels"
            )
        if self.image_type == "grayscale":
            if channels == 1:
                return display
            if channels == 3 and np.array_equal(display[0], display[1]) and np.array_equal(display[0], display[2]):
                return np.ascontiguousarray(display[:1])
            raise ModalityError("not_grayscale", "the image has colour; read it with image_type: rgb")
        if channels == 3:
            return display
        return np.repeat(display, 3, axis=0)  # (3, H, W) from (1, H, W)

    def scale(self, values: np.ndarray) -> np.ndarray:
        """(C, H, W) stored values of a non-DICOM file -> float32 in [0, 1] by ``intensity`` (module rules)."""
        if values.dtype == np.bool_ or values.dtype.kind not in "uif":
            raise ModalityError("unsupported_bit_depth", f"pixels of type {values.dtype} are not an intensity image")
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise ModalityError("non_finite_values", "the image holds NaN or infinite values")
        if self.intensity == "percentile":
            scaled = _percentile_scale(values, self.percentiles)
        else:
            scaled = values.astype(np.float32) * np.float32(1.0 / self._full_range(values))
        if float(scaled.max()) - float(scaled.min()) <= 1e-6:
            raise ModalityError("blank_image", "every pixel of the image has the same value")
        return scaled

    def _full_range(self, values: np.ndarray) -> float:
        """The value that is white: 255 for 8 bits, 2**stored_bits - 1 for 16 bits, 1.0 for floats."""
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if values.dtype.kind == "f":
            if low < 0.0 or high > 1.0:
                raise ModalityError(
                    "values_out_of_range", "float pixels outside [0, 1]: use intensity: percentile for such files"
                )
            return 1.0
        if low < 0:
            raise ModalityError("unsupported_bit_depth", "signed pixel values: use intensity: percentile")
        if values.dtype.itemsize == 1:
            return 255.0
        if high > 65535:
            raise ModalityError("unsupported_bit_depth", "pixel values above 16 bits: use intensity: percentile")
        bits = self.stored_bits or 16
        if high > 2**bits - 1:
            raise ModalityError(
                "values_exceed_stored_bits", f"pixel values exceed the {bits} stored bits the config declares"
            )
        if not self.stored_bits and high < AMBIGUOUS_BELOW:
            raise ModalityError(
                "ambiguous_bit_depth",
                "a 16-bit image whose values all fit in 12 bits: set modalities.image.stored_bits to the detector's "
                "bit depth (e.g. 12), or to 16 if the image really is that dark",
            )
        return float(2**bits - 1)

    def place_channels(self, stack: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, list[bool]]:
        """(N, H, W) named channels -> (C, H, W) in the configured order (absent channels zero) + presence mask."""
        if len(names) != stack.shape[0]:
            raise ModalityError(
                "bad_channel_names", f"{len(names)} channel names for a stack of {stack.shape[0]} channels"
            )
        if len(set(names)) != len(names):
            raise ModalityError("bad_channel_names", "the stack names a channel twice")
        unknown = [name for name in names if name not in self.channels]
        if unknown:
            raise ModalityError(
                "unknown_channel",
                f"{len(unknown)} channel(s) of the stack are not among the configured channels "
                f"({', '.join(self.channels)})",
            )
        placed = np.zeros((len(self.channels), *stack.shape[1:]), dtype=np.float32)  # (C, H, W)
        for index, name in enumerate(names):
            placed[self.channels.index(name)] = stack[index]
        present = [name in names for name in self.channels]
        return placed, present


def _percentile_scale(values: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    """Each channel stretched between its low and high percentile and clipped; a constant channel becomes 0."""
    scaled = np.empty(values.shape, dtype=np.float32)  # (C, H, W)
    for channel, source in zip(scaled, values, strict=True):
        low, high = np.percentile(source, percentiles)
        if high <= low:
            channel[...] = 0.0  # no signal in this channel: nothing to stretch
            continue
        np.subtract(source, np.float32(low), out=channel, dtype=np.float32)
        channel *= np.float32(1.0 / (high - low))
        np.clip(channel, 0.0, 1.0, out=channel)
    return scaled
