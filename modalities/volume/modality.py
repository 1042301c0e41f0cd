"""``VolumeModality``: what the CT and OCT plugins share once a volume is read.

Both preprocess deterministically (its fingerprint keys the cache and the checkpoint), stack (C, I, J, K) float16
volumes, build the shared 3D encoders and save/check the same preprocessing state; they differ in readers,
preprocessing and transforms, which each subclass supplies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn

from medclip.data.cache import OwnsPreprocessCache
from medclip.explain.grid import GridLayout, infer_grid
from medclip.types import Modality, Sample

from .config import VolumeEncoderConfig
from .encoders import build_volume_encoder
from .pipeline import VolumePreprocessing, check_fingerprint


def _empty_batch(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised batch; in a DataLoader worker process it is allocated in shared memory (as torch's
    ``default_collate`` does), so handing it to the main process moves a file descriptor instead of copying it."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(math.prod(shape))
    return torch.empty(0, dtype=dtype).new(storage).view(shape)


class VolumeModality(OwnsPreprocessCache, Modality):
    """Base of the volume plugins: cache, collate, encoder and preprocessing state.

    Subclasses set ``name``, ``config_class`` (a ``VolumeEncoderConfig`` with a ``size``) and ``state_format``, and
    implement ``make_preprocessing``, ``in_channels``, ``load`` and ``transforms``.
    """

    state_format = ""
    # MONAI / MedicalNet 3-D ResNet weights fill the whole encoder (encoder: monai_resnet18, medicalnet_resnet10, ...)
    weight_slots = {"resnet3d": ""}

    def __init__(self, config: VolumeEncoderConfig | None = None) -> None:
        super().__init__(config)
        self.config: VolumeEncoderConfig
        self.preprocessing = self.make_preprocessing(self.config)

    def make_preprocessing(self, cfg: VolumeEncoderConfig) -> VolumePreprocessing:
        """The deterministic preprocessing ``cfg`` describes."""
        raise NotImplementedError

    def in_channels(self) -> int:
        """Input channels of the encoder (C of the collated (B, C, I, J, K) batch)."""
        raise NotImplementedError

    def collate(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """Stack: {name: (B, C, I, J, K) float16, f"{name}_mask": (B,) bool}; missing rows are zeros."""
        present = torch.tensor([sample.get(self.name) is not None for sample in samples], dtype=torch.bool)  # (B,)
        shape = (self.in_channels(), *self.config.size)
        # empty, not zeros: every present row is overwritten, so only missing rows are zero-filled (a batch of
        # volumes is hundreds of MB; a needless fill is a pass over all of it)
        batch = _empty_batch((len(samples), *shape), torch.float16)  # (B, C, I, J, K)
        for row, sample in enumerate(samples):
            if not present[row]:
                batch[row].zero_()
                continue
            volume = sample[self.name]
            if tuple(volume.shape) != shape:
                raise ValueError(
                    f"{self.name} volumes must be transformed before collate: got shape {tuple(volume.shape)}, "
                    f"expected {shape}"
                )
            if isinstance(volume, np.ndarray):  # e.g. a cache's read-only memory map: copied straight in
                batch[row].numpy()[...] = volume
            else:
                batch[row] = volume
        return {self.name: batch, f"{self.name}_mask": present}

    def build_encoder(self) -> nn.Module:
        """The ``cfg.encoder`` 3D encoder for (B, C, *size) inputs, sized by ``cfg.preset`` and overrides."""
        cfg = self.config
        return build_volume_encoder(cfg.encoder_spec(self.in_channels(), cfg.size))

    # --- grounding maps ----------------------------------------------------------------------------------------------
    # The axis montages cut slices along: the last one (axial for CT in RAS, the B-scans for OCT).
    slice_axis = -1

    def token_layout(self, inputs: torch.Tensor, token_count: int) -> GridLayout:
        """The encoder's tokens on a grid over the preprocessed volume: ViT patches (the configured patch size), or
        a ResNet's last feature map (one stride shared by the three axes, found from the token count)."""
        cfg = self.config
        size = tuple(int(value) for value in inputs.shape[-3:])
        patch = cfg.encoder_spec(self.in_channels(), size).patch_size if cfg.encoder == "vit" else ()
        grid, stride = infer_grid(size, token_count, patch)
        background = inputs[0, 0].float().cpu().numpy()  # (I, J, K) the first channel (CT: the first HU window)
        return GridLayout(grid, stride, background, slice_axis=self.slice_axis)

    # --- preprocessing fingerprint ---------------------------------------------------------------------------------
    def state_fingerprint(self) -> dict[str, Any]:
        """The fingerprint saved with a checkpoint; subclasses add settings applied outside the cached steps."""
        return self.preprocessing.fingerprint()

    def preprocess_state(self) -> dict[str, Any]:
        """The config plus the preprocessing fingerprint."""
        return {
            "format": self.state_format,
            "config": asdict(self.config),
            "fingerprint": self.state_fingerprint(),
            "fingerprint_hash": self.preprocessing.fingerprint_hash,
        }

    def load_preprocess_state(self, state: Mapping[str, Any]) -> None:
        """Check that the saved fingerprint is the one this config produces (the caller restored the config)."""
        if state.get("format") != self.state_format:
            raise ValueError(
                f"{self.name} preprocess state has format {state.get('format')!r}, expected {self.state_format}"
            )
        if state.get("fingerprint_hash") != self.preprocessing.fingerprint_hash:
            raise ValueError(
                f"{self.name} preprocess state: its fingerprint does not match the restored config's preprocessing"
            )

    def check_compatible(self, sample_meta: Mapping[str, Any]) -> None:
        """Refuse an input preprocessed (cached) with other settings than this model's (``preprocess_mismatch``)."""
        check_fingerprint(sample_meta, self.preprocessing)
