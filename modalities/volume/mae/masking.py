"""Patches of a volume and which of them a masked autoencoder hides.

``PatchGrid`` cuts (B, C, I, J, K) volumes into the ViT's patches in the order its patch embedding flattens them
(row-major over the (I/pi, J/pj, K/pk) grid), so token t of the encoder and patch t of the reconstruction target are
the same voxels. ``draw_visible_patches`` chooses the patches each sample keeps: a seeded permutation per sample,
from a generator of its own keyed by (seed, draw, manifest row). The choice therefore depends on neither the global
RNG (dropout, augmentation), nor the loader's worker kind, nor the batch composition or the number of processes, and
a resumed run draws exactly the masks the uninterrupted run would have drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

SEED_BITS = 2**64  # torch.Generator takes 64-bit seeds; SeedSequence takes non-negative integers


class PatchGrid:
    """The patch layout of a volume: (B, C, I, J, K) <-> (B, T, P), T = patches, P = voxels per patch x channels.

    Args:
        image_size: (I, J, K) of the volumes.
        patch_size: (pi, pj, pk); divides ``image_size``.
        channels: C.
    """

    def __init__(self, image_size: Sequence[int], patch_size: Sequence[int], channels: int) -> None:
        self.image_size = tuple(int(size) for size in image_size)
        self.patch_size = tuple(int(size) for size in patch_size)
        self.channels = int(channels)
        if len(self.image_size) != 3 or len(self.patch_size) != 3:
            raise ValueError(f"a 3-D patch grid needs three sizes, got {self.image_size} and {self.patch_size}")
        if any(size % patch for size, patch in zip(self.image_size, self.patch_size, strict=True)):
            raise ValueError(f"patch size {list(self.patch_size)} must divide the volume size {list(self.image_size)}")
        self.grid = tuple(size // patch for size, patch in zip(self.image_size, self.patch_size, strict=True))

    @property
    def patches(self) -> int:
        """T: patches per volume."""
        return math.prod(self.grid)

    @property
    def patch_values(self) -> int:
        """P: values per patch (voxels x channels)."""
        return math.prod(self.patch_size) * self.channels

    def patchify(self, volumes: Tensor) -> Tensor:
        """(B, C, I, J, K) -> (B, T, P), patches in the encoder's token order, values ordered (pi, pj, pk, C)."""
        batch = volumes.shape[0]
        (gi, gj, gk), (pi, pj, pk) = self.grid, self.patch_size
        cells = volumes.reshape(batch, self.channels, gi, pi, gj, pj, gk, pk)  # (B, C, gi, pi, gj, pj, gk, pk)
        cells = cells.permute(0, 2, 4, 6, 3, 5, 7, 1)  # (B, gi, gj, gk, pi, pj, pk, C)
        return cells.reshape(batch, self.patches, self.patch_values)  # (B, T, P)

    def unpatchify(self, patches: Tensor) -> Tensor:
        """(B, T, P) -> (B, C, I, J, K): the inverse of ``patchify``."""
        batch = patches.shape[0]
        (gi, gj, gk), (pi, pj, pk) = self.grid, self.patch_size
        cells = patches.reshape(batch, gi, gj, gk, pi, pj, pk, self.channels)  # (B, gi, gj, gk, pi, pj, pk, C)
        cells = cells.permute(0, 7, 1, 4, 2, 5, 3, 6)  # (B, C, gi, pi, gj, pj, gk, pk)
        return cells.reshape(batch, self.channels, *self.image_size)  # (B, C, I, J, K)

    def visible_count(self, mask_ratio: float) -> int:
        """Patches each sample keeps at ``mask_ratio``; at least one is kept and at least one hidden.

        Raises:
            ValueError: when the grid is too small for the ratio to leave both (e.g. 2 patches at 0.9).
        """
        hidden = round(self.patches * mask_ratio)
        if not 1 <= hidden <= self.patches - 1:
            raise ValueError(
                f"mask ratio {mask_ratio} hides {hidden} of {self.patches} patches; the encoder needs at least one "
                "visible patch and the loss at least one hidden one (use smaller patches or another ratio)"
            )
        return self.patches - hidden


def mask_seed(seed: int, draw: int, row: int) -> int:
    """A 64-bit seed for one sample's mask: a hash of (run seed, draw number, manifest row), never colliding by
    arithmetic the way ``a * k + b`` schemes do once rows outnumber ``k``."""
    entropy = [int(seed) % SEED_BITS, int(draw) % SEED_BITS, int(row) % SEED_BITS]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


def draw_visible_patches(rows: Sequence[int], patches: int, visible: int, seed: int, draw: int) -> Tensor:
    """The patches each sample keeps: (B, V) int64 indices, sorted, each row a uniform random V-subset of T.

    Args:
        rows: each sample's manifest row number (its identity in the data set, stable across runs).
        patches: T.
        visible: V, patches kept per sample.
        seed: the run's mask seed.
        draw: the draw number (the model's count of training forward passes), so a row seen again gets a new mask.
    """
    kept = torch.empty(len(rows), visible, dtype=torch.int64)  # (B, V)
    for position, row in enumerate(rows):
        generator = torch.Generator().manual_seed(mask_seed(seed, draw, row))
        kept[position] = torch.randperm(patches, generator=generator)[:visible].sort().values
    return kept


def hidden_patches(visible: Tensor, patches: int) -> Tensor:
    """(B, V) kept indices -> (B, T) bool, True where the patch is hidden (the loss scores these)."""
    hidden = torch.ones(visible.shape[0], patches, dtype=torch.bool, device=visible.device)  # (B, T)
    return hidden.scatter(1, visible, False)
