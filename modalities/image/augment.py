"""Train-time augmentation of 2-D images after the cache: small affine, brightness/contrast, noise, optional flips.

Radiographs come from one projection with the patient positioned to protocol, so the changes are small: rotation
of a few degrees, +-10 % scale, a 5 % shift, +-10 % brightness and contrast (exposure and processing differences),
a little noise. No left-right flips unless asked for (``horizontal_flip``): on a chest radiograph the heart is on
the left and reports name sides, so a flipped image contradicts its report (dextrocardia is a finding).

Every random number is drawn from the sample's own generator (``medclip.data.loader.sample_generator``: per sample
under the thread loader, else torch's global generator, seeded per DataLoader worker), never from NumPy's or
Python's global state, so augmentations are reproducible whatever the loader's timing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medclip.data.loader import sample_generator


class ImageAugmentation:
    """Random affine (rotation, scale, shift), flips, brightness/contrast and noise on (C, H, W) in [0, 1].

    Args:
        rotation_degrees: largest rotation either way.
        scale_range: largest relative zoom either way.
        translate_fraction: largest shift, as a fraction of the side.
        intensity_jitter: largest relative change of brightness (an offset) and of contrast (a gain around 0.5).
        noise_std: standard deviation of additive Gaussian noise.
        horizontal_flip: flip left-right with probability 0.5.
        vertical_flip: flip up-down with probability 0.5.
        pad_value: intensity shown where the moved image leaves the canvas.
    """

    def __init__(
        self,
        rotation_degrees: float = 10.0,
        scale_range: float = 0.1,
        translate_fraction: float = 0.05,
        intensity_jitter: float = 0.1,
        noise_std: float = 0.01,
        horizontal_flip: bool = False,
        vertical_flip: bool = False,
        pad_value: float = 0.0,
    ) -> None:
        self.rotation_degrees = rotation_degrees
        self.scale_range = scale_range
        self.translate_fraction = translate_fraction
        self.intensity_jitter = intensity_jitter
        self.noise_std = noise_std
        self.horizontal_flip = horizontal_flip
        self.vertical_flip = vertical_flip
        self.pad_value = pad_value

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """(C, H, W) float32 in [0, 1] -> (C, H, W) float32 in [0, 1]."""
        generator = sample_generator()
        draws = torch.rand(9, generator=generator, dtype=torch.float64).tolist()  # one draw per random choice
        signed = [2.0 * value - 1.0 for value in draws]  # uniform in [-1, 1]
        moved = self._affine(pixels, signed[0], signed[1], signed[2], signed[3])
        if self.horizontal_flip and draws[4] < 0.5:
            moved = moved.flip(-1)
        if self.vertical_flip and draws[5] < 0.5:
            moved = moved.flip(-2)
        if self.intensity_jitter > 0:
            gain = 1.0 + self.intensity_jitter * signed[6]
            offset = self.intensity_jitter * signed[7]
            moved = (moved - 0.5) * gain + 0.5 + offset
        if self.noise_std > 0 and draws[8] < 0.5:
            moved = moved + torch.randn(moved.shape, generator=generator, dtype=moved.dtype) * self.noise_std
        return moved.clamp_(0.0, 1.0)

    def _affine(self, pixels: torch.Tensor, rotation: float, scale: float, shift_x: float, shift_y: float):
        """Rotate/zoom about the centre and shift, in pixel geometry (a non-square image is not sheared)."""
        if self.rotation_degrees == 0 and self.scale_range == 0 and self.translate_fraction == 0:
            return pixels
        _, height, width = pixels.shape
        angle = math.radians(self.rotation_degrees * rotation)
        zoom = 1.0 + self.scale_range * scale
        cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom  # the inverse map: output -> input pixel
        # normalised coordinates run over [-1, 1] on each axis: convert the pixel-space inverse rotation into them
        theta = torch.tensor(
            [
                [cos, sin * height / width, -2.0 * self.translate_fraction * shift_x],
                [-sin * width / height, cos, -2.0 * self.translate_fraction * shift_y],
            ],
            dtype=pixels.dtype,
        )
        grid = F.affine_grid(theta[None], [1, *pixels.shape], align_corners=False)  # (1, H, W, 2)
        shifted = (pixels - self.pad_value)[None]  # (1, C, H, W): zeros outside the image become pad_value below
        sampled = F.grid_sample(shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return sampled[0] + self.pad_value  # (C, H, W)
