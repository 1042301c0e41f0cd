"""The ECG transform: crop/pad to a fixed length, per-lead normalisation, training augmentation -> tensors.

Input: a loaded sample's ``ecg`` (L, T) float32 millivolts at the model rate and ``ecg_meta``. Output, under ``ecg``:
``{"signal": (L, N) float32, "lead_mask": (L,) bool, "valid_samples": () long}`` with N = ``cfg.n_samples``.
Longer records are cropped (centre at evaluation, a random window in training); shorter ones are zero-padded at the
end and ``valid_samples`` says where the padding starts, so encoders can mask it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from medclip.data.loader import sample_generator
from medclip.types import Sample

from .augment import ECGAugment
from .config import ECGConfig
from .normalize import ECG_LEAD_NORMALIZATIONS


def crop_or_pad(signal: np.ndarray, length: int, random_crop: bool) -> tuple[np.ndarray, int]:
    """(L, T) -> ((L, length), number of real samples)."""
    total = signal.shape[1]
    if total >= length:
        if random_crop:
            start = int(torch.randint(total - length + 1, (), generator=sample_generator()).item())
        else:
            start = (total - length) // 2
        return signal[:, start : start + length], length
    padded = np.zeros((signal.shape[0], length), dtype=signal.dtype)  # (L, length)
    padded[:, :total] = signal
    return padded, total


class ECGTransform:
    """Loaded sample -> model-ready tensors (a class, not a closure, so DataLoader workers can pickle it).

    Args:
        name: the modality's sample key.
        cfg: leads, sampling rate, length, normalisation and augmentation settings.
        train: random crops and augmentation (when ``cfg.augment``) instead of centre crops.
    """

    def __init__(self, name: str, cfg: ECGConfig, train: bool) -> None:
        self.name = name
        self.leads = list(cfg.leads)
        self.length = cfg.n_samples
        self.sampling_rate = cfg.sampling_rate
        self.normalize = ECG_LEAD_NORMALIZATIONS.get(cfg.normalization)
        self.train = train
        self.augment = ECGAugment(cfg) if train and cfg.augment else None

    def __call__(self, sample: Sample) -> Sample:
        if self.name not in sample:
            return sample
        meta = sample.get(f"{self.name}_meta")
        if not isinstance(meta, Mapping) or "leads_present" not in meta:
            raise ValueError(f"an {self.name!r} sample needs {self.name}_meta with leads_present: load it with load()")
        if meta.get("sampling_rate") != self.sampling_rate:
            raise ValueError(
                f"ECG sample is at {meta.get('sampling_rate')} Hz but the transform expects {self.sampling_rate} Hz: "
                "load it with the same plugin settings"
            )
        signal = np.asarray(sample[self.name], dtype=np.float32)  # (L, T)
        if signal.ndim != 2 or signal.shape[0] != len(self.leads):
            raise ValueError(f"ECG sample must be ({len(self.leads)}, T), got {signal.shape}")
        lead_mask = np.asarray([lead in meta["leads_present"] for lead in self.leads])  # (L,)
        window, valid_samples = crop_or_pad(signal, self.length, random_crop=self.train)  # (L, N)
        valid = np.arange(self.length) < valid_samples  # (N,)
        normalised = self.normalize(np.array(window, dtype=np.float32), valid)  # (L, N)
        normalised[~lead_mask] = 0.0
        if self.augment is not None:
            normalised, lead_mask = self.augment(normalised, lead_mask, valid)
        tensors = {
            "signal": torch.from_numpy(np.ascontiguousarray(normalised, dtype=np.float32)),
            "lead_mask": torch.from_numpy(lead_mask),
            "valid_samples": torch.tensor(valid_samples, dtype=torch.long),
        }
        return {**sample, self.name: tensors}
