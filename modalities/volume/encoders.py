"""3D encoders shared by the CT and OCT plugins: (B, C, I, J, K) volumes -> ``EncoderOutput``.

- "vit": a 3D Vision Transformer from MONAI blocks (conv patch embedding + learnable positions, transformer blocks
  whose attention runs through ``torch.nn.functional.scaled_dot_product_attention``, i.e. flash / memory-efficient
  kernels on GPUs), optional gradient checkpointing. Tokens: one per patch.
- "resnet": a 3D ResNet with basic blocks and GroupNorm (batch-size independent, so a batch with one present row or
  a DDP shard behaves the same). Tokens: one per voxel of the last feature map.

Both pool by averaging their tokens, and cast their input to their parameters' dtype, so float16 volumes from the
preprocessing pipeline go straight in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from monai.networks.blocks import PatchEmbeddingBlock, TransformerBlock
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from medclip.registry import Registry
from medclip.types import EncoderOutput


@dataclass(frozen=True)
class VolumeEncoderSpec:
    """A resolved encoder architecture (preset values with the config's overrides applied).

    Attributes:
        encoder: "vit" or "resnet".
        in_channels: input channels (HU windows for CT, 1 for OCT).
        image_size: (I, J, K) of the preprocessed volumes.
        width: ViT hidden size / ResNet output channels; the pooled output has this many features.
        layers: transformer blocks (ViT) or residual blocks per stage (ResNet, 4 stages).
        heads: attention heads (ViT).
        patch_size: (pi, pj, pk) voxels per ViT patch; must divide ``image_size``.
        dropout: dropout in the transformer blocks.
        gradient_checkpointing: recompute block activations in backward to save memory (ViT).
    """

    encoder: str
    in_channels: int
    image_size: tuple[int, int, int]
    width: int
    layers: int
    heads: int
    patch_size: tuple[int, int, int]
    dropout: float = 0.0
    gradient_checkpointing: bool = False


# preset -> architecture values; "tiny" trains on a laptop CPU in minutes, "base" is a ViT-B / ResNet-18 for GPUs.
PRESETS: dict[str, dict[str, dict[str, object]]] = {
    "tiny": {
        "vit": {"width": 64, "layers": 2, "heads": 2, "patch_size": (16, 16, 16)},
        "resnet": {"width": 64, "layers": 1, "heads": 1, "patch_size": (1, 1, 1)},
    },
    "base": {
        "vit": {"width": 768, "layers": 12, "heads": 12, "patch_size": (16, 16, 16)},
        "resnet": {"width": 512, "layers": 2, "heads": 1, "patch_size": (1, 1, 1)},
    },
}

# Encoders whose architecture is fixed by their name (the MONAI / MedicalNet ResNets of resnet3d.py) take no preset
# values: a width or layer count set in the config is refused by the encoder.
FIXED_ARCHITECTURE: dict[str, object] = {"width": 0, "layers": 0, "heads": 1, "patch_size": (1, 1, 1)}

VOLUME_ENCODERS: Registry[Callable[[VolumeEncoderSpec], nn.Module]] = Registry("volume encoder")


def resolve_spec(
    encoder: str,
    preset: str,
    in_channels: int,
    image_size: Sequence[int],
    *,
    width: int = 0,
    layers: int = 0,
    heads: int = 0,
    patch_size: Sequence[int] = (),
    dropout: float = 0.0,
    gradient_checkpointing: bool = False,
) -> VolumeEncoderSpec:
    """Preset values, overridden by every non-zero / non-empty argument, validated.

    Raises:
        ValueError: unknown encoder or preset, heads not dividing width, patches not dividing the image size.
    """
    VOLUME_ENCODERS.get(encoder)  # unknown names list the registered ones
    if preset not in PRESETS:
        raise ValueError(f"unknown volume encoder preset {preset!r}; known: {', '.join(PRESETS)}")
    values = dict(PRESETS[preset].get(encoder, FIXED_ARCHITECTURE))
    patch = tuple(int(size) for size in (patch_size or values["patch_size"]))
    if len(patch) == 1:
        patch = patch * 3
    spec = VolumeEncoderSpec(
        encoder=encoder,
        in_channels=int(in_channels),
        image_size=tuple(int(size) for size in image_size),
        width=int(width or values["width"]),
        layers=int(layers or values["layers"]),
        heads=int(heads or values["heads"]),
        patch_size=patch,
        dropout=dropout,
        gradient_checkpointing=gradient_checkpointing,
    )
    if encoder == "vit":
        if spec.width % spec.heads:
            raise ValueError(f"vit heads ({spec.heads}) must divide width ({spec.width})")
        if len(spec.patch_size) != 3 or any(i % p for i, p in zip(spec.image_size, spec.patch_size, strict=True)):
            raise ValueError(
                f"vit patch_size {list(spec.patch_size)} must divide the volume size {list(spec.image_size)}"
            )
    return spec


@VOLUME_ENCODERS.register("vit")
class VolumeViT(nn.Module):
    """3D ViT: patches -> transformer -> mean-pooled vector + patch tokens (see the module docstring)."""

    def __init__(self, spec: VolumeEncoderSpec) -> None:
        super().__init__()
        self.output_dim = spec.width
        self.gradient_checkpointing = spec.gradient_checkpointing
        self.patch_embedding = PatchEmbeddingBlock(
            in_channels=spec.in_channels,
            img_size=spec.image_size,
            patch_size=spec.patch_size,
            hidden_size=spec.width,
            num_heads=spec.heads,
            proj_type="conv",
            pos_embed_type="learnable",
            dropout_rate=spec.dropout,
            spatial_dims=3,
        )
        self.blocks = nn.ModuleList(
            TransformerBlock(
                hidden_size=spec.width,
                mlp_dim=4 * spec.width,
                num_heads=spec.heads,
                dropout_rate=spec.dropout,
                qkv_bias=True,
                use_flash_attention=True,  # MONAI's switch for torch scaled_dot_product_attention
            )
            for _ in range(spec.layers)
        )
        self.norm = nn.LayerNorm(spec.width)

    def forward(self, volumes: Tensor, visible_patches: Tensor | None = None) -> EncoderOutput:
        """Encode every patch, or only ``visible_patches`` (masked-autoencoder pretraining).

        Args:
            volumes: (B, C, I, J, K).
            visible_patches: optional (B, V) patch indices (in the row-major order of the patch grid) to keep after
                the patch embedding and its positions; the transformer then sees only those V tokens, which is what
                makes MAE pretraining cheap. The same parameters serve both calls, so weights learned this way load
                unchanged into the encoder of contrastive pretraining. Passed through ``__call__`` (not a separate
                method) so module hooks (FSDP's parameter gathering, ``torch.compile``) apply to it too.

        Returns:
            tokens (B, T, D), or (B, V, D) of the visible patches, and their mean as ``pooled``.
        """
        dtype = self.norm.weight.dtype
        tokens = self.patch_embedding(volumes.to(dtype))  # (B, T, D), T = prod(image_size / patch_size)
        if visible_patches is not None:
            index = visible_patches.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])  # (B, V, D)
            tokens = torch.gather(tokens, 1, index)  # (B, V, D)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, use_reentrant=False)  # (B, T, D)
            else:
                tokens = block(tokens)  # (B, T, D)
        tokens = self.norm(tokens)  # (B, T, D)
        return EncoderOutput(pooled=tokens.mean(dim=1), tokens=tokens, token_mask=None)


class BasicBlock3D(nn.Module):
    """Two 3x3x3 convolutions with GroupNorm and a residual (projected when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        groups = min(8, out_channels)
        self.body = nn.Sequential(
            nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.GroupNorm(groups, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.GroupNorm(groups, out_channels),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and in_channels == out_channels
            else nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride=stride, bias=False), nn.GroupNorm(groups, out_channels)
            )
        )
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.body(x) + self.shortcut(x))


@VOLUME_ENCODERS.register("resnet")
class VolumeResNet(nn.Module):
    """3D ResNet: stem (stride 2 + max-pool) and 4 stages of basic blocks at widths w/8, w/4, w/2, w."""

    def __init__(self, spec: VolumeEncoderSpec) -> None:
        super().__init__()
        if spec.width % 8:
            raise ValueError(f"resnet width must be a multiple of 8, got {spec.width}")
        widths = [spec.width // 8, spec.width // 4, spec.width // 2, spec.width]
        self.output_dim = spec.width
        self.stem = nn.Sequential(
            nn.Conv3d(spec.in_channels, widths[0], 7, stride=2, padding=3, bias=False),
            nn.GroupNorm(min(8, widths[0]), widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(3, stride=2, padding=1),
        )
        stages, channels = [], widths[0]
        for index, out_channels in enumerate(widths):
            blocks = [BasicBlock3D(channels, out_channels, stride=1 if index == 0 else 2)]
            blocks += [BasicBlock3D(out_channels, out_channels, stride=1) for _ in range(spec.layers - 1)]
            stages.append(nn.Sequential(*blocks))
            channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(spec.width)

    def forward(self, volumes: Tensor) -> EncoderOutput:
        features = self.stages(self.stem(volumes.to(self.norm.weight.dtype)))  # (B, D, I', J', K')
        tokens = self.norm(features.flatten(2).transpose(1, 2))  # (B, I'*J'*K', D)
        return EncoderOutput(pooled=tokens.mean(dim=1), tokens=tokens, token_mask=None)


def build_volume_encoder(spec: VolumeEncoderSpec) -> nn.Module:
    """The encoder ``spec.encoder`` (registered in ``VOLUME_ENCODERS``) built from ``spec``."""
    return VOLUME_ENCODERS.get(spec.encoder)(spec)
