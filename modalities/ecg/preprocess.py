"""The deterministic part of ECG preprocessing: a ``RawRecord`` -> (L, T) millivolts at the model's rate.

Order matters and is fixed:

1. validate (plausible rate, real samples, long enough, within the memory budget as read and once resampled);
2. pick and order the configured leads (absent ones zero, listed in ``leads_present``), convert each to millivolts,
   then check the millivolts: finite and within ``max_amplitude_mv`` (``limits.py``);
3. notch the mains frequency at the *source* rate, where the hum is still a separate frequency;
4. resample to the target rate (polyphase, anti-aliased);
5. band-pass at the target rate.

The result depends only on the record and the settings in ``preprocessing_fingerprint``, which is why it can be cached
(``cache.py``). Cropping, per-lead normalisation and augmentation happen later, in the transform.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from medclip.types import ModalityError

from .config import ECGConfig
from .filtering import bandpass, notch
from .leads import arrange_leads, lead_layout
from .limits import check_declared_size, check_millivolts, check_real_samples, check_sampling_rate
from .record import RawRecord
from .resample import resample
from .units import MILLIVOLTS, canonical_unit, millivolt_factor

PIPELINE_VERSION = 1  # bump whenever the meaning of a cached record changes

# The only metadata an ECG sample carries (never anything from header comments or patient tags).
META_KEYS = (
    "format",
    "sampling_rate",
    "source_sampling_rate",
    "leads_present",
    "duration_s",
    "units",
    "source_units",
    "unmapped_channels",
)


def preprocessing_fingerprint(cfg: ECGConfig) -> dict[str, Any]:
    """Every setting that changes a preprocessed record (and so a cache entry)."""
    return {
        "pipeline": PIPELINE_VERSION,
        "leads": list(cfg.leads),
        "sampling_rate": float(cfg.sampling_rate),
        "units": MILLIVOLTS,
        "bandpass_hz": [float(edge) for edge in cfg.bandpass_hz],
        "filter_order": cfg.filter_order,
        "notch_hz": float(cfg.notch_hz),
        "notch_quality": float(cfg.notch_quality),
        "default_units": cfg.default_units,
        "resampler": "scipy.signal.resample_poly",
        # Only when set, so that fingerprints (and checkpoints) made before the option existed stay valid.
        **({"lead_aliases": dict(sorted(cfg.lead_aliases.items()))} if cfg.lead_aliases else {}),
    }


def fingerprint_digest(cfg: ECGConfig) -> str:
    """sha256 of the fingerprint's canonical JSON."""
    text = json.dumps(preprocessing_fingerprint(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def check_duration(duration_s: float, cfg: ECGConfig) -> None:
    """Raises ``too_short`` for records shorter than ``cfg.min_seconds``."""
    if duration_s < cfg.min_seconds:
        raise ModalityError(
            "too_short", f"record lasts {duration_s:.2f} s, shorter than ecg.min_seconds = {cfg.min_seconds:g} s"
        )


def validate(record: RawRecord, cfg: ECGConfig) -> None:
    """Reject records that cannot be preprocessed meaningfully (whatever reader produced them).

    Raises:
        ModalityError: ``implausible_sampling_rate``, ``complex_values``, ``unsupported_dtype``,
            ``header_data_mismatch``, ``too_short``, ``too_large``.
    """
    check_sampling_rate(record.sampling_rate, cfg.limits)
    check_real_samples(np.asarray(record.signal).dtype)
    if record.signal.ndim != 2 or record.signal.shape[0] != len(record.channel_names):
        raise ModalityError("header_data_mismatch", "record's sample array does not match its channel list")
    check_duration(record.duration_s, cfg)
    check_declared_size(record.signal.shape[0], record.signal.shape[1], record.sampling_rate, cfg.limits)


def preprocess(record: RawRecord, cfg: ECGConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """A raw record -> ((L, T) float32 millivolts at ``cfg.sampling_rate``, allow-listed metadata).

    Raises:
        ModalityError: ``implausible_sampling_rate``, ``header_data_mismatch``, ``too_short``, ``too_large``,
            ``non_finite``, ``implausible_amplitude``, ``duplicate_lead``, ``no_known_leads``, ``unknown_units``.
    """
    validate(record, cfg)
    layout = lead_layout(record.channel_names, cfg.leads, cfg.lead_aliases)
    units = [record.units[channel] or cfg.default_units for channel in layout.source_channels.tolist()]
    factors = np.asarray([millivolt_factor(unit) for unit in units])[:, None]  # (M, 1)
    millivolts = arrange_leads(record.signal, layout, len(cfg.leads)).astype(np.float64, copy=False)  # (L, T)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow becomes inf, refused just below
        millivolts[layout.target_rows] *= factors
    check_millivolts(millivolts[layout.target_rows], cfg.limits)  # after the unit conversion, never before
    filtered = notch(millivolts, cfg.notch_hz, record.sampling_rate, cfg.notch_quality)  # (L, T)
    resampled = resample(filtered, record.sampling_rate, cfg.sampling_rate)  # (L, T')
    if cfg.bandpass_hz:
        resampled = bandpass(resampled, *cfg.bandpass_hz, cfg.sampling_rate, cfg.filter_order)
    resampled[~layout.lead_mask] = 0.0  # absent leads are exactly zero, whatever the filters did
    meta = {
        "format": record.source_format,
        "sampling_rate": float(cfg.sampling_rate),
        "source_sampling_rate": float(record.sampling_rate),
        "leads_present": [lead for lead, present in zip(cfg.leads, layout.lead_mask.tolist(), strict=True) if present],
        "duration_s": round(record.duration_s, 4),
        "units": MILLIVOLTS,
        "source_units": sorted({canonical_unit(unit) for unit in units}),
        "unmapped_channels": layout.unmapped_channels + record.ignored_channels,
    }
    return np.ascontiguousarray(resampled, dtype=np.float32), meta
