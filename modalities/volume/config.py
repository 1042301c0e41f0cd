"""``VolumeEncoderConfig``: the 3D-encoder options the CT and OCT configs share (each adds its own preprocessing)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from medclip.types import ModalityConfig

from .encoders import VolumeEncoderSpec, resolve_spec


@dataclass
class VolumeEncoderConfig(ModalityConfig):
    """Encoder options of a volume plugin; subclasses add their preprocessing fields after these.

    Attributes:
        encoder: "vit" (3D ViT, patch tokens) or "resnet" (3D ResNet, feature-map tokens), or a ResNet laid out as
            MONAI's for pretrained weights: "monai_resnet{10,18,34,50}" / "medicalnet_resnet{10,18,34,50}"
            (``resnet3d.py``; width and layers are fixed by the name, ``weights:`` from ``medclip convert-weights``).
        preset: "tiny" (CPU tests and demos) or "base" (GPUs); width/layers/heads/patch_size override it when set.
        width: encoder hidden size; 0 = the preset's.
        layers: ViT blocks / ResNet blocks per stage; 0 = the preset's.
        heads: ViT attention heads; 0 = the preset's.
        patch_size: ViT patch in voxels, one number or three; empty = the preset's.
        dropout: dropout inside the transformer.
        gradient_checkpointing: trade compute for memory in the ViT (large volumes on one GPU).
    """

    encoder: str = "vit"
    preset: str = "tiny"
    width: int = 0
    layers: int = 0
    heads: int = 0
    patch_size: list[int] = field(default_factory=list)
    dropout: float = 0.0
    gradient_checkpointing: bool = False

    def encoder_spec(self, in_channels: int, size: Sequence[int]) -> VolumeEncoderSpec:
        """The validated encoder spec for (B, in_channels, *size) inputs: the preset with this config's overrides.

        Raises:
            ValueError: unknown preset, heads not dividing width, patches not dividing ``size``.
            KeyError: unknown encoder (the registry's error).
        """
        return resolve_spec(
            self.encoder,
            self.preset,
            in_channels,
            size,
            width=self.width,
            layers=self.layers,
            heads=self.heads,
            patch_size=self.patch_size,
            dropout=self.dropout,
            gradient_checkpointing=self.gradient_checkpointing,
        )
