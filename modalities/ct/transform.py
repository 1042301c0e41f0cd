"""The CT transform on a loaded sample: (deterministic preprocessing unless cached) -> HU windows -> augmentation.

Output: ``sample["ct"]`` becomes a (C, I, J, K) float16 array in [0, 1], C = number of HU windows: a tensor, or, when
the windows were cached with the preprocessing and nothing is augmented, the cache's read-only memory map (the
collate copies it into the batch, the one copy a warm load makes). float16 halves the memory of batches and of worker
transfers; the encoders cast to their own dtype.
"""

from __future__ import annotations

import numpy as np
import torch

from medclip.data.loader import sample_generator
from medclip.types import Sample
from modalities.volume.augment import VolumeAugmentation
from modalities.volume.pipeline import VolumePreprocessing, ensure_preprocessed

from .windows import HUWindow, apply_windows, windows_to_float16

WINDOWED_NDIM = 4  # (C, I, J, K): preprocessing that already windowed; (I, J, K) HU otherwise


class CTTransform:
    """A picklable callable (DataLoader workers) applying the CT transform to samples that have a CT.

    Args:
        name: the sample key ("ct").
        preprocessing: the deterministic steps (skipped when the sample comes preprocessed from the cache).
        windows: HU windows, one channel each.
        augmentation: train-time augmentation, or None.
        hu_shift: largest random HU offset applied before windowing when augmenting.
    """

    def __init__(
        self,
        name: str,
        preprocessing: VolumePreprocessing,
        windows: list[HUWindow],
        augmentation: VolumeAugmentation | None = None,
        hu_shift: float = 0.0,
    ) -> None:
        self.name = name
        self.preprocessing = preprocessing
        self.windows = windows
        self.augmentation = augmentation
        self.hu_shift = hu_shift

    def __call__(self, sample: Sample) -> Sample:
        if self.name not in sample:
            return sample
        meta = sample[f"{self.name}_meta"]
        stored = ensure_preprocessed(sample[self.name], meta, self.preprocessing)  # (I, J, K) int16 or (C, I, J, K)
        if stored.ndim == WINDOWED_NDIM:  # the windows were part of the (cached) preprocessing: already the input
            if self.augmentation is None:
                return {**sample, self.name: stored}  # float16, often a read-only memory map: collate copies it
            channels = np.asarray(stored, dtype=np.float32)  # (C, I, J, K)
            return {**sample, self.name: self.augmentation(channels).to(torch.float16)}
        hounsfield = stored  # (I, J, K) int16
        if self.augmentation is not None and self.hu_shift > 0:
            draw = torch.empty(()).uniform_(-self.hu_shift, self.hu_shift, generator=sample_generator())
            shift = np.float32(draw.item())
            hounsfield = np.asarray(hounsfield, dtype=np.float32) + shift
        if self.augmentation is None:
            return {**sample, self.name: windows_to_float16(hounsfield, self.windows)}  # (C, I, J, K)
        channels = apply_windows(hounsfield, self.windows)  # (C, I, J, K) float32
        return {**sample, self.name: self.augmentation(channels).to(torch.float16)}
