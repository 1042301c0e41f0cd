"""``ImageConfig``: the options of the 2-D ``image`` modality (the ``modalities.image`` section of a run's YAML)."""

from __future__ import annotations

from dataclasses import dataclass, field

from medclip.config import ConfigError
from medclip.types import ModalityConfig

IMAGE_TYPES = ("grayscale", "rgb", "multichannel")
INTENSITIES = ("full_range", "percentile")


@dataclass
class ImageConfig(ModalityConfig):
    """Options of the image plugin: radiographs, mammograms, fundus photographs, multichannel microscopy.

    Attributes:
        encoder: any timm model name (``timm.list_models()``), built offline with random weights; ViTs give their
            patch tokens, CNNs their last feature map as tokens. Warm starts load weights into it by this name.
        width: unused (the backbone decides its width); kept for the shared option set.
        image_type: "grayscale" (radiographs: CR/DX/MG, 1 channel), "rgb" (fundus and other photographs, 3 channels)
            or "multichannel" (fluorescence stacks with named ``channels``, e.g. Cell Painting).
        channels: for "multichannel", the channel names in the order the encoder sees them; an input may hold any
            subset of them (the others are masked), never a channel outside the list.
        size: output (height, width) in pixels: the image is resized to fit (aspect kept) and padded.
        spacing: target pixel size in mm (0 = none): resample to it using PixelSpacing / ImagerPixelSpacing, then
            centre-crop/pad to ``size``; inputs without a pixel size are refused (``unknown_spacing``).
        pad_value: intensity of the padding in [0, 1] (0 = black, the background of a displayed radiograph).
        intensity: for files without display rules (PNG/TIFF/NumPy; DICOM always follows its own VOI LUT / window):
            "full_range" divides by the largest value of the bit depth, "percentile" stretches each channel between
            its ``percentiles`` (the usual scaling of fluorescence microscopy).
        percentiles: (low, high) percentiles of ``intensity: percentile``.
        stored_bits: significant bits of 16-bit PNG/TIFF/NumPy inputs (e.g. 12 for most detectors' exports); 0 = 16,
            but a 16-bit file whose values all fit in 12 bits is then refused (``ambiguous_bit_depth``) instead of
            being read as an almost black image.
        voi_index: which of several DICOM windows / VOI LUTs to apply (they are alternative views).
        min_side: inputs smaller than this many pixels along a side are refused (``too_small``).
        augment: train-time augmentation (small rotation, scale, shift, brightness/contrast, noise).
        rotation_degrees / scale_range / translate_fraction: the largest random rotation, relative scaling and shift.
        intensity_jitter: the largest random relative change of brightness and of contrast.
        noise_std: standard deviation of the additive Gaussian noise (intensities in [0, 1]).
        horizontal_flip: random left-right flips. Off by default: a chest radiograph's left and right are anatomy
            (the heart is on the left; reports name sides), so a flipped image no longer matches its report. Turn it
            on for fundus photographs of mixed eyes or for microscopy, which have no handedness.
        vertical_flip: random up-down flips (microscopy).
        channel_dropout: in training, the probability of hiding each channel of a multichannel image (at least one
            stays), so the encoder learns to work on any subset of ``channels``.
        cache_dir: folder of the preprocessing cache (decode, display transform, resize/pad run once); empty = none.
        quarantine: refuse DICOM images flagged BurnedInAnnotation=YES or of Modality US/SC/OT (as for CT); set false
            only for data already screened (then nothing is cached).
        allow_for_processing: read DICOM "FOR PROCESSING" images (raw detector data, not meant for display); refused
            (``for_processing``) by default.
        dicom_modalities: the DICOM Modality values read as images (CR, DX, MG radiographs; IO/PX dental; OP and XC
            photographs); others (a CT slice in an X-ray column) are refused with ``unsupported_dicom_modality``.
        stem_width: feature maps per channel in the channel-adaptive stem of multichannel images.
    """

    encoder: str = "resnet18"
    width: int = 0
    image_type: str = "grayscale"
    channels: list[str] = field(default_factory=list)
    size: list[int] = field(default_factory=lambda: [224, 224])
    spacing: float = 0.0
    pad_value: float = 0.0
    intensity: str = "full_range"
    percentiles: list[float] = field(default_factory=lambda: [0.5, 99.5])
    stored_bits: int = 0
    voi_index: int = 0
    min_side: int = 16
    augment: bool = True
    rotation_degrees: float = 10.0
    scale_range: float = 0.1
    translate_fraction: float = 0.05
    intensity_jitter: float = 0.1
    noise_std: float = 0.01
    horizontal_flip: bool = False  # laterality matters for radiographs: see the docstring
    vertical_flip: bool = False
    channel_dropout: float = 0.0
    cache_dir: str = ""
    quarantine: bool = True
    allow_for_processing: bool = False
    dicom_modalities: list[str] = field(default_factory=lambda: ["CR", "DX", "MG", "IO", "PX", "OP", "XC"])
    stem_width: int = 8  # x channels x pixels of activations: kept small (a 5-channel 224 image -> 2M values)

    def __post_init__(self) -> None:
        where = "modalities.image"
        if self.image_type not in IMAGE_TYPES:
            raise ConfigError(f"{where}.image_type must be one of {', '.join(IMAGE_TYPES)}, got {self.image_type!r}")
        if self.image_type == "multichannel":
            if not self.channels:
                raise ConfigError(f"{where}.channels must name the channels of multichannel images")
            if len(set(self.channels)) != len(self.channels) or any(not name.strip() for name in self.channels):
                raise ConfigError(f"{where}.channels must be distinct, non-empty names")
        elif self.channels:
            raise ConfigError(f"{where}.channels is only used with image_type: multichannel")
        if len(self.size) != 2 or any(side < 8 for side in self.size):
            raise ConfigError(f"{where}.size must be (height, width), each at least 8 pixels, got {self.size}")
        if self.spacing < 0:
            raise ConfigError(f"{where}.spacing must be 0 (no resampling) or a positive size in mm")
        if not 0.0 <= self.pad_value <= 1.0:
            raise ConfigError(f"{where}.pad_value must lie in [0, 1]")
        if self.intensity not in INTENSITIES:
            raise ConfigError(f"{where}.intensity must be one of {', '.join(INTENSITIES)}, got {self.intensity!r}")
        low, high = self.percentiles if len(self.percentiles) == 2 else (-1.0, -1.0)
        if not 0.0 <= low < high <= 100.0:
            raise ConfigError(f"{where}.percentiles must be two numbers 0 <= low < high <= 100")
        if self.stored_bits != 0 and not 9 <= self.stored_bits <= 16:
            raise ConfigError(f"{where}.stored_bits must be 0 (16) or 9 to 16")
        if self.voi_index < 0 or self.min_side < 1 or self.stem_width < 1:
            raise ConfigError(f"{where}: voi_index must be >= 0, min_side and stem_width >= 1")
        for name in ("rotation_degrees", "scale_range", "translate_fraction", "intensity_jitter", "noise_std"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}.{name} must be >= 0")
        if self.scale_range >= 1.0 or self.translate_fraction >= 0.5 or self.intensity_jitter >= 1.0:
            raise ConfigError(f"{where}: scale_range and intensity_jitter must be < 1, translate_fraction < 0.5")
        if not self.dicom_modalities:
            raise ConfigError(f"{where}.dicom_modalities must name at least one DICOM Modality (e.g. CR, DX)")
        if not 0.0 <= self.channel_dropout < 1.0:
            raise ConfigError(f"{where}.channel_dropout must lie in [0, 1)")

    @property
    def in_channels(self) -> int:
        """Channels of a transformed image: 1 (grayscale), 3 (rgb) or one per named channel."""
        return {"grayscale": 1, "rgb": 3}.get(self.image_type, len(self.channels))
