"""Synthetic retinal OCT: bright and dark retinal layers following a curved fovea, with speckle, as uint16 B-scans."""

from __future__ import annotations

import numpy as np

LAYERS = ((0.00, 0.06, 0.9), (0.06, 0.20, 0.45), (0.20, 0.30, 0.7), (0.30, 0.42, 0.3), (0.42, 0.48, 1.0))


def synthetic_oct_volume(seed: int, shape: tuple[int, int, int] = (64, 96, 12)) -> np.ndarray:
    """(lateral, axial, B-scan) uint16 volume: layers (fraction of depth from the inner surface, brightness)."""
    rng = np.random.default_rng(seed)
    lateral, axial, bscans = shape
    x = np.linspace(-1, 1, lateral)[:, None, None]  # (I, 1, 1)
    z = np.linspace(-1, 1, bscans)[None, None, :]  # (1, 1, K)
    depth = np.linspace(0, 1, axial)[None, :, None]  # (1, J, 1)
    fovea = rng.uniform(0.05, 0.12) * np.exp(-(x**2 + z**2) / 0.1)  # the foveal pit
    surface = 0.3 + fovea + rng.uniform(-0.03, 0.03)  # (I, 1, K) depth of the inner retina
    relative = depth - surface  # (I, J, K)
    image = np.zeros(shape, dtype=np.float32)
    for start, stop, brightness in LAYERS:
        image += brightness * ((relative >= start) & (relative < stop))
    speckle = rng.gamma(shape=4.0, scale=0.25, size=shape).astype(np.float32)  # multiplicative speckle
    image = (image * speckle + 0.05 * rng.random(shape)) * 20000.0
    return np.clip(image, 0, 65535).astype(np.uint16)
