"""The wsi sample transform: uint8 patches -> normalised tensors (with dihedral augmentation), or cached features.

Histology has no canonical orientation, so training flips and rotates each patch by a random element of the
dihedral group (8 orientations); colour is left alone (stain augmentation is dataset-specific). Bags of cached
features are randomly subsampled to ``max_patches`` in training, the feature-space crop TITAN and CONCH train with.
Random draws come from the sample's own generator (``medclip.data.loader.sample_generator``), as in CT and images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from medclip.data.loader import sample_generator
from medclip.types import Sample

from .normalisation import IMAGENET_MEAN, IMAGENET_STD

# ImageNet statistics: the default when the backbone's own are unknown (normalisation.py picks the backbone's).
PIXEL_MEAN = IMAGENET_MEAN
PIXEL_STD = IMAGENET_STD


def to_tensor(
    patches: np.ndarray, mean: Sequence[float] = PIXEL_MEAN, std: Sequence[float] = PIXEL_STD
) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float32 normalised with the patch encoder's ``mean`` / ``std``."""
    pixels = torch.from_numpy(np.ascontiguousarray(patches)).permute(0, 3, 1, 2).float().div_(255.0)  # (N, 3, S, S)
    mean_ = torch.tensor(tuple(mean), dtype=torch.float32).view(1, 3, 1, 1)
    std_ = torch.tensor(tuple(std), dtype=torch.float32).view(1, 3, 1, 1)
    return (pixels - mean_) / std_


def dihedral(pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each (3, S, S) patch of (N, 3, S, S) turned by a random one of the 8 flips/rotations."""
    choices = torch.randint(0, 8, (pixels.shape[0],), generator=generator)
    turned = []
    for patch, choice in zip(pixels, choices.tolist(), strict=True):
        patch = torch.rot90(patch, k=choice % 4, dims=(1, 2))
        turned.append(patch.flip(2) if choice >= 4 else patch)
    return torch.stack(turned)  # (N, 3, S, S)


class WSITransform:
    """Patches -> ``{"wsi": (N, 3, S, S) float, "wsi_coords": (N, 2) int64}``; features -> ``(N, F)`` float.

    A class rather than a closure, so DataLoader workers can pickle it.

    Args:
        name: the modality's sample key.
        train: augment (dihedral turns; random feature subsets).
        augment: whether dihedral turns are on in training.
        max_patches: patches kept per cached-feature bag in training (0 = all).
        mean: per-channel mean of the patch encoder's training pixels (``normalisation.py``).
        std: per-channel standard deviation of the same.
    """

    def __init__(
        self,
        name: str,
        train: bool,
        augment: bool,
        max_patches: int,
        mean: Sequence[float] = PIXEL_MEAN,
        std: Sequence[float] = PIXEL_STD,
    ) -> None:
        self.name = name
        self.train = train
        self.augment = augment
        self.max_patches = max_patches
        self.mean = tuple(mean)
        self.std = tuple(std)

    def __call__(self, sample: Sample) -> Sample:
        if self.name not in sample:
            return sample
        meta: Mapping = sample.get(f"{self.name}_meta") or {}
        data = sample[self.name]
        coords = torch.as_tensor(np.asarray(sample[f"{self.name}_coords"]), dtype=torch.int64).reshape(-1, 2)
        if meta.get("kind") == "features":
            features = torch.as_tensor(np.asarray(data), dtype=torch.float32)  # (N, F)
            if self.train and 0 < self.max_patches < features.shape[0]:
                keep = torch.randperm(features.shape[0], generator=sample_generator())[: self.max_patches].sort().values
                features, coords = features[keep], coords[keep]
            return {**sample, self.name: features, f"{self.name}_coords": coords}
        if isinstance(data, torch.Tensor) and data.is_floating_point():
            return sample  # already transformed
        pixels = to_tensor(np.asarray(data), self.mean, self.std)  # (N, 3, S, S)
        if self.train and self.augment:
            pixels = dihedral(pixels, sample_generator())
        return {**sample, self.name: pixels, f"{self.name}_coords": coords}
