"""A 3-D masked autoencoder (He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners") around the volume
plugin's ViT, for pretraining the CT/OCT encoder on unpaired volumes before contrastive pretraining.

Each sample hides ``mask_ratio`` of its patches (a per-sample seeded draw, ``masking.py``); the encoder runs on the
visible patches only, through its ordinary ``forward`` (``visible_patches``), so its parameters and their names are
exactly those contrastive pretraining builds; a light decoder (a few narrow transformer blocks, a learned mask token,
positions of its own) predicts every patch's voxels; the ``mae`` loss (``medclip.losses.mae``) scores the hidden
patches. The encoder is ``encoders.<modality>`` as in ``ContrastiveModel``, so a checkpoint's
``model.encoders.<modality>.*`` weights are the ones pretraining's ``train.init_from`` reads.

``forward(batch)`` returns ``{"reconstruction": {...}}``, the keyword argument the ``mae`` loss takes, so the generic
``Trainer`` trains it like any other model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from monai.networks.blocks import TransformerBlock
from torch import Tensor, nn

from medclip.config import ConfigError
from medclip.types import Modality

from ..encoders import VolumeEncoderSpec
from ..modality import VolumeModality
from .masking import PatchGrid, draw_visible_patches, hidden_patches

DECODER_MAX_WIDTH = 512  # MAE's decoder width for ViT-B/L/H; the decoder stays narrow whatever the encoder
DECODER_HEAD_SIZE = 32  # MAE's decoder: 512 wide, 16 heads


@dataclass
class MaskedAutoencoderConfig:
    """The masked-autoencoder options (the ``mae:`` section of ``medclip mae``'s config).

    Attributes:
        mask_ratio: fraction of each volume's patches hidden from the encoder. MAE uses 0.75 on images; volumes are
            more redundant still (VideoMAE and 3-D medical MAEs use 0.75-0.9), and a higher ratio is also cheaper.
        decoder_width: decoder hidden size; 0 = the encoder's width, at most 512.
        decoder_layers: decoder transformer blocks. The decoder is thrown away after pretraining; a shallow one
            is enough when the encoder is later fine-tuned (MAE's ablation), which contrastive pretraining does.
        decoder_heads: decoder attention heads; 0 = decoder_width / 32 (at least 1).
        normalize_target: score each patch's voxels normalised to mean 0 and variance 1 (MAE's norm_pix_loss):
            the encoder must learn structure rather than brightness, which MAE found gives better representations.
    """

    mask_ratio: float = 0.75
    decoder_width: int = 0
    decoder_layers: int = 2
    decoder_heads: int = 0
    normalize_target: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ConfigError(f"mae.mask_ratio must be between 0 and 1 (exclusive), got {self.mask_ratio}")
        if self.decoder_width < 0 or self.decoder_heads < 0:
            raise ConfigError("mae.decoder_width and mae.decoder_heads must be >= 0 (0 = derived from the encoder)")
        if self.decoder_layers < 1:
            raise ConfigError(f"mae.decoder_layers must be >= 1, got {self.decoder_layers}")

    def decoder_shape(self, encoder_width: int) -> tuple[int, int]:
        """(width, heads) of the decoder for an encoder of ``encoder_width``.

        Raises:
            ConfigError: heads that do not divide the width.
        """
        width = self.decoder_width or min(encoder_width, DECODER_MAX_WIDTH)
        heads = self.decoder_heads or max(1, width // DECODER_HEAD_SIZE)
        if width % heads:
            raise ConfigError(f"mae.decoder_heads ({heads}) must divide the decoder width ({width})")
        return width, heads


class MaskedVolumeDecoder(nn.Module):
    """Encoded visible tokens -> predicted values of every patch (B, T, P).

    The visible tokens are projected to the decoder's width and put back at their patch positions; every hidden
    position gets the learned mask token; the decoder's own learned positions are added, so the decoder knows where
    each mask token is.
    """

    def __init__(self, encoder_width: int, patches: int, patch_values: int, width: int, layers: int, heads: int):
        super().__init__()
        self.embed = nn.Linear(encoder_width, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.positions = nn.Parameter(torch.zeros(1, patches, width))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.positions, std=0.02)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                hidden_size=width,
                mlp_dim=4 * width,
                num_heads=heads,
                dropout_rate=0.0,
                qkv_bias=True,
                use_flash_attention=True,  # torch scaled_dot_product_attention
            )
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, patch_values)

    def forward(self, encoded: Tensor, visible: Tensor, hidden: Tensor) -> Tensor:
        """(B, V, De) encoded visible tokens, (B, V) their patch indices, (B, T) hidden -> (B, T, P)."""
        tokens = self.embed(encoded)  # (B, V, D)
        batch, _, width = tokens.shape
        patches = hidden.shape[1]
        index = visible.unsqueeze(-1).expand(-1, -1, width)  # (B, V, D)
        placed = tokens.new_zeros(batch, patches, width).scatter(1, index, tokens)  # (B, T, D)
        tokens = torch.where(hidden.unsqueeze(-1), self.mask_token.to(tokens.dtype), placed)  # (B, T, D)
        tokens = tokens + self.positions.to(tokens.dtype)  # (B, T, D)
        for block in self.blocks:
            tokens = block(tokens)  # (B, T, D)
        return self.head(self.norm(tokens))  # (B, T, P)


class MaskedVolumeAutoencoder(nn.Module):
    """Masked autoencoder of one volume modality (see the module docstring).

    Args:
        modality: the modality name (its batch key and the encoder's key in ``encoders``).
        encoder: the modality's ViT, as its plugin builds it (``VolumeViT``).
        spec: the encoder's resolved architecture (volume size, patch size, channels, width).
        config: the masked-autoencoder options.
        seed: the mask seed; the masks of a run are a function of (seed, draw number, manifest row).

    The count of training forward passes (``mask_draws``) is a buffer, so it is saved with the checkpoint and a
    resumed run continues the same sequence of masks.
    """

    def __init__(
        self,
        modality: str,
        encoder: nn.Module,
        spec: VolumeEncoderSpec,
        config: MaskedAutoencoderConfig,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.modality = modality
        self.config = config
        self.seed = int(seed)
        self.encoders = nn.ModuleDict({modality: encoder})
        self.grid = PatchGrid(spec.image_size, spec.patch_size, spec.in_channels)
        self.visible = self.grid.visible_count(config.mask_ratio)
        width, heads = config.decoder_shape(spec.width)
        self.decoder = MaskedVolumeDecoder(
            spec.width, self.grid.patches, self.grid.patch_values, width, config.decoder_layers, heads
        )
        self.register_buffer("mask_draws", torch.zeros((), dtype=torch.int64))

    @property
    def encoder(self) -> nn.Module:
        return self.encoders[self.modality]

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """A collated batch -> ``{"reconstruction": ...}`` (``reconstruct``), with this step's masks.

        In training mode every call advances the draw number, so a volume seen again gets a new mask; in evaluation
        mode the current draw number is reused.
        """
        volumes = batch[self.modality]  # (B, C, I, J, K)
        rows = batch.get("row")
        rows = list(range(volumes.shape[0])) if rows is None else [int(row) for row in rows]
        draw = int(self.mask_draws)
        if self.training:
            self.mask_draws += 1
        visible = draw_visible_patches(rows, self.grid.patches, self.visible, self.seed, draw).to(volumes.device)
        return {"reconstruction": self.reconstruct(volumes, visible, batch.get(f"{self.modality}_mask"))}

    def reconstruct(self, volumes: Tensor, visible: Tensor, present: Tensor | None = None) -> dict[str, Tensor]:
        """Encode the visible patches, predict all of them.

        Args:
            volumes: (B, C, I, J, K).
            visible: (B, V) indices of the patches the encoder sees.
            present: (B,) bool, False for rows without this modality (zeros in the batch); all True when None.

        Returns:
            ``predicted`` (B, T, P) in the loss's target space (normalised patches with ``normalize_target``),
            ``target`` (B, T, P) the patches' voxel values, ``hidden`` (B, T) bool, ``present`` (B,) bool.
        """
        if present is None:
            present = torch.ones(volumes.shape[0], dtype=torch.bool, device=volumes.device)
        hidden = hidden_patches(visible, self.grid.patches)  # (B, T)
        encoded = self.encoder(volumes, visible_patches=visible).tokens  # (B, V, D)
        predicted = self.decoder(encoded, visible, hidden)  # (B, T, P)
        target = self.grid.patchify(volumes)  # (B, T, P)
        return {"predicted": predicted, "target": target, "hidden": hidden, "present": present}


def build_masked_autoencoder(
    plugin: Modality, config: MaskedAutoencoderConfig, seed: int = 0
) -> MaskedVolumeAutoencoder:
    """The masked autoencoder around the encoder ``plugin.build_encoder()`` builds (the same one pretraining builds).

    Raises:
        ConfigError: a modality that is not a volume, or an encoder other than the ViT (a ResNet has no patches to
            hide; use the "vit" encoder for MAE pretraining).
    """
    if not isinstance(plugin, VolumeModality):
        raise ConfigError(f"MAE pretraining needs a volume modality (ct, oct); {plugin.name!r} is not one")
    spec = plugin.config.encoder_spec(plugin.in_channels(), plugin.config.size)
    if spec.encoder != "vit":
        raise ConfigError(
            f"modalities.{plugin.name}.encoder is {spec.encoder!r}; MAE pretraining hides ViT patches: use encoder: vit"
        )
    try:
        PatchGrid(spec.image_size, spec.patch_size, spec.in_channels).visible_count(config.mask_ratio)
    except ValueError as error:  # a grid too small for the mask ratio
        raise ConfigError(f"mae: {error}") from error
    return MaskedVolumeAutoencoder(plugin.name, plugin.build_encoder(), spec, config, seed)
