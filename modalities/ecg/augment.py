"""Training-time ECG augmentation: amplitude jitter, lead dropout, baseline wander, noise.

Each mimics a real source of variation between recordings of the same heart: electrode contact and body habitus change
lead amplitudes, leads fall off or are not recorded, breathing moves the baseline, and muscles add noise. Random numbers
come from the sample's own generator under the thread loader (``medclip.data.loader.sample_generator``), else from
torch's global generator, which the trainer seeds per process and DataLoader worker.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from medclip.data.loader import sample_generator

from .config import ECGConfig


class ECGAugment:
    """Augments one normalised (L, T) input in place of a copy; absent leads and padding stay zero.

    Args:
        cfg: ``amplitude_jitter``, ``lead_dropout``, ``wander_amplitude``, ``noise_std`` and the sampling rate.
    """

    def __init__(self, cfg: ECGConfig) -> None:
        self.amplitude_jitter = cfg.amplitude_jitter
        self.lead_dropout = cfg.lead_dropout
        self.wander_amplitude = cfg.wander_amplitude
        self.noise_std = cfg.noise_std
        self.sampling_rate = cfg.sampling_rate

    def __call__(self, signal: np.ndarray, lead_mask: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(L, T) signal, (L,) lead mask, (T,) valid samples -> augmented signal and lead mask."""
        leads, length = signal.shape
        generator = sample_generator()
        signal = signal.copy()
        lead_mask = lead_mask.copy()
        if self.amplitude_jitter > 0:
            factors = 1.0 + self.amplitude_jitter * (2.0 * torch.rand(leads, generator=generator).numpy() - 1.0)  # (L,)
            signal *= factors[:, None].astype(signal.dtype)
        if self.lead_dropout > 0 and lead_mask.sum() > 1:
            drop = (torch.rand(leads, generator=generator).numpy() < self.lead_dropout) & lead_mask  # (L,)
            if drop.sum() == lead_mask.sum():  # keep at least one lead
                kept = int(torch.randint(int(lead_mask.sum()), (), generator=generator).item())
                drop[np.flatnonzero(lead_mask)[kept]] = False
            lead_mask &= ~drop
        if self.wander_amplitude > 0:
            frequency = 0.15 + 0.35 * float(torch.rand((), generator=generator))  # breathing: 0.15-0.5 Hz
            phase = 2.0 * math.pi * float(torch.rand((), generator=generator))
            time = np.arange(length, dtype=np.float32) / self.sampling_rate  # (T,)
            signal += (self.wander_amplitude * np.sin(2.0 * math.pi * frequency * time + phase))[None, :]
        if self.noise_std > 0:
            signal += self.noise_std * torch.randn(leads, length, generator=generator).numpy()
        signal[~lead_mask] = 0.0
        signal[:, ~valid] = 0.0
        return signal.astype(np.float32, copy=False), lead_mask
