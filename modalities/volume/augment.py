"""Train-time 3D augmentation after the cache: small random affine, intensity noise. Never flips.

MONAI's random transforms keep their own NumPy generator, seeded identically in every DataLoader worker; here each
call draws its seed from torch: the sample's own generator under a thread loader (``medclip.data.loader``), else the
global generator, which PyTorch seeds differently per worker and per epoch, so workers do not repeat each other's
augmentations. MONAI's transforms hold their random state between seeding and use, so each loader thread works on
its own copy of them.
"""

from __future__ import annotations

import copy
import threading

import numpy as np
import torch
from monai.transforms import RandAffine, RandGaussianNoise

from medclip.data.loader import sample_generator


class VolumeAugmentation:
    """Random rotation (+-5 degrees), shift (+-4 voxels) and scaling (+-5 %), then Gaussian noise, on (C, I, J, K).

    Args:
        affine_probability: how often the spatial transform applies.
        noise_std: standard deviation of the noise, in the units of the input.
        clamp: (low, high) the output is clipped to (the range of windowed inputs), or None.
    """

    def __init__(
        self, affine_probability: float = 0.5, noise_std: float = 0.01, clamp: tuple[float, float] | None = (0.0, 1.0)
    ) -> None:
        self.clamp = clamp
        self.spatial = RandAffine(
            prob=affine_probability,
            rotate_range=(np.deg2rad(5.0),) * 3,
            translate_range=(4, 4, 4),
            scale_range=(0.05, 0.05, 0.05),
            padding_mode="border",  # volumes are padded with air already: repeat the edge instead of inventing zeros
            mode="bilinear",
        )
        self.noise = RandGaussianNoise(prob=0.5, mean=0.0, std=noise_std)
        self._per_thread = threading.local()

    def _transforms(self) -> tuple[RandAffine, RandGaussianNoise]:
        """This thread's (spatial, noise) pair: seeding and applying must not interleave with another thread's."""
        pair = getattr(self._per_thread, "pair", None)
        if pair is None:
            pair = self._per_thread.pair = (copy.deepcopy(self.spatial), copy.deepcopy(self.noise))
        return pair

    def __getstate__(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if key != "_per_thread"}  # (worker processes)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._per_thread = threading.local()

    def __call__(self, channels: np.ndarray) -> torch.Tensor:
        seed = int(torch.randint(0, 2**31 - 1, (), generator=sample_generator()).item())
        spatial, noise = self._transforms()
        spatial.set_random_state(seed)
        noise.set_random_state(seed + 1)
        moved = spatial(torch.from_numpy(channels))  # (C, I, J, K)
        noisy = noise(moved)  # (C, I, J, K)
        result = torch.as_tensor(noisy)  # (C, I, J, K)
        return result.clamp_(*self.clamp) if self.clamp is not None else result
