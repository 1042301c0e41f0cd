"""The image transform on a loaded sample: (deterministic preprocessing unless cached) -> augmentation.

Output: ``sample["image"]`` becomes a (C, H, W) float16 array in [0, 1]: a tensor, or, when the sample comes
preprocessed from the cache and nothing is augmented, the cache's read-only memory map (the collate copies it into
the batch, the one copy a warm load makes). Multichannel samples also get ``sample["image_channels"]``: (C,) bool,
which configured channels the image has (channel dropout hides some in training). Normalisation with the
backbone's mean and standard deviation happens in the encoder, where it belongs to the weights.
"""

from __future__ import annotations

import numpy as np
import torch

from medclip.data.loader import sample_generator
from medclip.types import Sample

from .augment import ImageAugmentation
from .pipeline import ImagePreprocessing, ensure_preprocessed


class ImageTransform:
    """A picklable callable (DataLoader workers) applying the image transform to samples that have an image.

    Args:
        name: the sample key ("image").
        preprocessing: the deterministic steps (skipped when the sample comes preprocessed from the cache).
        augmentation: train-time augmentation, or None.
        multichannel: whether samples carry a per-channel presence mask.
        channel_dropout: in training, the probability of hiding each present channel (one always stays).
    """

    def __init__(
        self,
        name: str,
        preprocessing: ImagePreprocessing,
        augmentation: ImageAugmentation | None = None,
        multichannel: bool = False,
        channel_dropout: float = 0.0,
    ) -> None:
        self.name = name
        self.preprocessing = preprocessing
        self.augmentation = augmentation
        self.multichannel = multichannel
        self.channel_dropout = channel_dropout

    def __call__(self, sample: Sample) -> Sample:
        if self.name not in sample:
            return sample
        meta = sample[f"{self.name}_meta"]
        stored = ensure_preprocessed(sample[self.name], meta, self.preprocessing)  # (C, H, W) float16
        out = {**sample}
        present = None
        if self.multichannel:
            present = torch.tensor(meta.get("channels_present") or [True] * stored.shape[0], dtype=torch.bool)  # (C,)
        if self.augmentation is None and not (present is not None and self.channel_dropout > 0):
            out[self.name] = stored  # float16, often a read-only memory map: collate copies it
        else:
            pixels = torch.from_numpy(np.asarray(stored, dtype=np.float32))  # (C, H, W)
            if self.augmentation is not None:
                pixels = self.augmentation(pixels)
            if present is not None and self.channel_dropout > 0:
                present = self._drop_channels(present)
                pixels = pixels * present[:, None, None]
            out[self.name] = pixels.to(torch.float16)
        if present is not None:
            out[f"{self.name}_channels"] = present
        return out

    def _drop_channels(self, present: torch.Tensor) -> torch.Tensor:
        """Hide each present channel with probability ``channel_dropout``, keeping at least one."""
        draws = torch.rand(present.shape[0], generator=sample_generator())  # (C,)
        kept = present & (draws >= self.channel_dropout)
        if not kept.any():
            candidates = torch.nonzero(present).flatten()
            choice = torch.randint(0, candidates.numel(), (1,), generator=sample_generator())
            kept[candidates[choice]] = True
        return kept
