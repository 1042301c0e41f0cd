"""Train-time 3D augmentation after the cache: small random affine, intensity noise. Never flips.

MONAI's random transforms keep their own NumPy generator, seeded identically in every DataLoader worker; here each
call draws its seed from torch's generator, which PyTorch seeds differently per worker and per epoch, so workers do
not repeat each other's augmentations.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import RandAffine, RandGaussianNoise


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

    def __call__(self, channels: np.ndarray) -> torch.Tensor:
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        self.spatial.set_random_state(seed)
        self.noise.set_random_state(seed + 1)
        moved = self.spatial(torch.from_numpy(channels))  # (C, I, J, K)
        noisy = self.noise(moved)  # (C, I, J, K)
        result = torch.as_tensor(noisy)  # (C, I, J, K)
        return result.clamp_(*self.clamp) if self.clamp is not None else result
