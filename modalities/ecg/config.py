"""``ECGConfig``: the options of the ECG modality (a ``modalities.ecg`` YAML section)."""

from __future__ import annotations

from dataclasses import dataclass, field

from medclip.config import ConfigError
from medclip.types import ModalityConfig

from .leads import STANDARD_LEADS
from .limits import SignalLimits
from .units import millivolt_factor

CACHE_DTYPES = ("int16", "float16")


@dataclass
class ECGConfig(ModalityConfig):
    """Options of the ECG plugin.

    Attributes:
        encoder: "resnet1d" (convolutional, fast on CPU) or "vit1d" (transformer over time patches).
        width: hidden size; the pooled output has this many features.
        depth: residual stages of the ResNet (each halves time) or transformer layers of the ViT.
        heads: attention heads of the ViT; must divide ``width``.
        dropout: dropout inside the encoder.
        patch_seconds: length of one ViT time patch (all leads of that span form one token).
        leads: the lead order of model inputs (a subset of I, II, III, aVR, aVL, aVF, V1-V6); other channels are
            ignored and absent leads are zero-filled and masked.
        lead_aliases: extra channel names -> standard lead, for names medclip refuses on purpose (bipolar Holter
            leads such as "CM5", channel numbers such as "ECG1": see docs/ecg.md) when you know what your recorder
            put there, e.g. {"CM5": "V5"}. Matched like the built-in names (case, spaces and punctuation ignored).
        sampling_rate: every record is resampled to this rate (Hz) with an anti-aliasing polyphase filter.
        seconds: model input length; longer records are cropped (centre at evaluation, random in training), shorter
            ones zero-padded with the padding masked.
        min_seconds: records shorter than this are rejected (``too_short``): they cannot show a rhythm.
        source_rate_range_hz: [lowest, highest] sampling rate a record may have (``implausible_sampling_rate``
            otherwise). ECG is recorded at 100-1000 Hz (some Holters at 50-128 Hz, research systems up to ~16 kHz);
            a rate outside this range is a header error, and a tiny one would be resampled into gigabytes.
        max_amplitude_mv: a lead whose absolute value, in millivolts, exceeds this is refused
            (``implausible_amplitude``): ECG is a few mV, electrode offsets of DC-coupled recorders a few hundred.
        bandpass_hz: [low, high] Butterworth band-pass (zero-phase) removing baseline wander and high-frequency noise;
            [] disables it. ``high`` must be below half ``sampling_rate``.
        filter_order: Butterworth order of the band-pass (applied forwards and backwards, so the effective order
            doubles).
        notch_hz: mains frequency removed by a notch filter at the source rate (50 in Europe/Asia, 60 in the
            Americas); 0 disables it.
        notch_quality: the notch's quality factor (bandwidth = notch_hz / notch_quality).
        normalization: per-lead normalisation of the model input: "zscore" or "none" (millivolts as they are).
        default_units: unit of CSV/NumPy records that state none ("" = such records are an error).
        cache_dir: folder for the preprocessed-record cache (memory-mapped arrays keyed by content + settings);
            "" disables caching.
        cache_dtype: "int16" (default: each lead scaled to its peak, so the error is at most peak / 65534, and it
            decodes ~20x faster than float16) or "float16" (~0.05 % relative error).
        augment: training-time augmentation on (the settings below); evaluation never augments.
        amplitude_jitter: each lead is scaled by a factor in [1 - j, 1 + j].
        noise_std: Gaussian noise added in normalised units.
        lead_dropout: probability of masking each present lead (at least one lead always stays).
        wander_amplitude: amplitude of an added slow sinusoidal baseline wander, in normalised units.
    """

    encoder: str = "resnet1d"
    width: int = 128
    depth: int = 4
    heads: int = 4
    dropout: float = 0.1
    patch_seconds: float = 0.2  # 0.2 s: a QRS complex (~0.1 s) fits inside one patch
    leads: list[str] = field(default_factory=lambda: list(STANDARD_LEADS))
    lead_aliases: dict[str, str] = field(default_factory=dict)
    sampling_rate: float = 500.0  # the rate of most resting-ECG carts and of PTB-XL's high-resolution set
    seconds: float = 10.0  # the standard resting ECG length
    min_seconds: float = 2.0  # about two beats at a normal rate
    source_rate_range_hz: list[float] = field(default_factory=lambda: [50.0, 32000.0])
    max_amplitude_mv: float = 1000.0  # 1 V: far above any ECG or electrode offset, far below a unit error's values
    bandpass_hz: list[float] = field(default_factory=lambda: [0.5, 40.0])  # a common deep-learning ECG band
    filter_order: int = 2
    notch_hz: float = 50.0
    notch_quality: float = 30.0
    normalization: str = "zscore"
    default_units: str = ""
    cache_dir: str = ""
    cache_dtype: str = "int16"
    augment: bool = True
    amplitude_jitter: float = 0.1
    noise_std: float = 0.02
    lead_dropout: float = 0.1
    wander_amplitude: float = 0.05

    def __post_init__(self) -> None:
        from .normalize import ECG_LEAD_NORMALIZATIONS  # late: normalize.py needs no config, this avoids a cycle

        unknown = [lead for lead in self.leads if lead not in STANDARD_LEADS]
        if unknown or not self.leads or len(set(self.leads)) != len(self.leads):
            raise ConfigError(
                f"ecg.leads must be distinct standard leads ({', '.join(STANDARD_LEADS)}); got {self.leads}"
            )
        unknown_targets = sorted({lead for lead in self.lead_aliases.values() if lead not in STANDARD_LEADS})
        if unknown_targets:
            raise ConfigError(f"ecg.lead_aliases must map names to standard leads; unknown targets {unknown_targets}")
        if len(self.source_rate_range_hz) != 2 or not 0 < self.source_rate_range_hz[0] < self.source_rate_range_hz[1]:
            raise ConfigError(
                f"ecg.source_rate_range_hz must be [low, high] with 0 < low < high, got {self.source_rate_range_hz}"
            )
        if not self.max_amplitude_mv > 0:
            raise ConfigError(f"ecg.max_amplitude_mv must be positive, got {self.max_amplitude_mv}")
        if not self.max_decoded_mb > 0:
            raise ConfigError(f"ecg.max_decoded_mb must be positive, got {self.max_decoded_mb}")
        for name in ("width", "depth", "heads", "filter_order"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ecg.{name} must be at least 1, got {getattr(self, name)}")
        if self.encoder == "vit1d" and self.width % self.heads:
            raise ConfigError(f"ecg.heads ({self.heads}) must divide ecg.width ({self.width})")
        if self.sampling_rate <= 0 or self.seconds <= 0 or self.patch_seconds <= 0:
            raise ConfigError("ecg.sampling_rate, ecg.seconds and ecg.patch_seconds must be positive")
        if not 0 < self.min_seconds <= self.seconds:
            raise ConfigError(f"ecg.min_seconds must be in (0, seconds={self.seconds}], got {self.min_seconds}")
        if round(self.patch_seconds * self.sampling_rate) < 1:
            raise ConfigError("ecg.patch_seconds is shorter than one sample at ecg.sampling_rate")
        if self.bandpass_hz:
            if len(self.bandpass_hz) != 2 or not 0 < self.bandpass_hz[0] < self.bandpass_hz[1]:
                raise ConfigError(f"ecg.bandpass_hz must be [low, high] with 0 < low < high, got {self.bandpass_hz}")
            if self.bandpass_hz[1] >= self.sampling_rate / 2:
                raise ConfigError(
                    f"ecg.bandpass_hz high edge {self.bandpass_hz[1]} must be below half the sampling rate "
                    f"({self.sampling_rate / 2})"
                )
        if self.notch_hz < 0 or self.notch_quality <= 0:
            raise ConfigError("ecg.notch_hz must be >= 0 (0 = off) and ecg.notch_quality positive")
        if self.normalization not in ECG_LEAD_NORMALIZATIONS:
            raise ConfigError(
                f"ecg.normalization {self.normalization!r} is unknown; use one of {ECG_LEAD_NORMALIZATIONS.names()}"
            )
        if self.default_units:
            try:
                millivolt_factor(self.default_units)
            except ValueError as error:
                raise ConfigError(f"ecg.default_units: {error}") from None
        if self.cache_dtype not in CACHE_DTYPES:
            raise ConfigError(f"ecg.cache_dtype must be one of {CACHE_DTYPES}, got {self.cache_dtype!r}")
        for name in ("amplitude_jitter", "lead_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"ecg.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.noise_std < 0 or self.wander_amplitude < 0:
            raise ConfigError("ecg.noise_std and ecg.wander_amplitude must be >= 0")

    @property
    def limits(self) -> SignalLimits:
        """The bounds every record is checked against (``limits.py``)."""
        low, high = self.source_rate_range_hz
        return SignalLimits(
            max_decoded_mb=self.max_decoded_mb,
            rate_range_hz=(float(low), float(high)),
            target_rate_hz=self.sampling_rate,
            max_amplitude_mv=self.max_amplitude_mv,
            leads=len(self.leads),
        )

    @property
    def n_samples(self) -> int:
        """Samples per lead of a model input."""
        return round(self.seconds * self.sampling_rate)

    @property
    def patch_samples(self) -> int:
        """Samples per lead in one ViT time patch."""
        return round(self.patch_seconds * self.sampling_rate)
