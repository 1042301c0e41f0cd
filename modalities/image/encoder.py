"""The image encoder: any timm backbone, its patch tokens or feature map as tokens, normalised as its weights expect.

Module layout (what a warm start loads into; the lead's shared mechanism finds it by these names):

- ``backbone``: the timm model ``timm_model_name``, built with ``pretrained=False`` and ``num_classes=0`` (no
  classifier): its state-dict keys are exactly timm's, so timm or open_clip (timm towers) weights map onto
  ``backbone.*`` by name. Nothing is ever downloaded.
- ``pixel_mean`` / ``pixel_std`` buffers: the backbone's own normalisation constants, from timm's pretrained config
  (available offline in timm's registry): ImageNet's for most CNNs, 0.5/0.5 for the original ViTs, OpenAI CLIP's for
  CLIP towers. Grayscale images are repeated to three channels first, as RGB-pretrained weights expect.
- ``channel_stem`` (multichannel only): per-channel input embedding (``ChannelAdaptiveStem``) mapping any subset of the
  configured channels to the backbone's three input channels.
- ``token_projection`` (only for backbones whose pooled width differs from their feature-map width, e.g.
  MobileNetV3): maps tokens to the pooled width so both share the projection head.

Tokens: ViTs (and other token models) give their patch tokens, the class/register tokens dropped: (B, N, D). CNNs
(ResNet, ConvNeXt, EfficientNet) and hierarchical transformers (Swin) give their last feature map flattened:
(B, H' * W', D). Every token is real, so the token mask is None.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medclip.registry import lazy_import
from medclip.types import EncoderOutput

from .config import ImageConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def create_backbone(name: str, size: Sequence[int]) -> nn.Module:
    """A randomly initialised timm model without classifier, sized for ``size`` inputs where the model takes a size.

    Raises:
        ValueError: an unknown model name (with the closest timm names).
    """
    timm = lazy_import("timm", "the image encoder")
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        raise ValueError(f"unknown timm model {name!r} for modalities.image.encoder; close: {', '.join(close) or '-'}")
    try:  # ViT-style models build their position embeddings for the input size
        return timm.create_model(name, pretrained=False, num_classes=0, img_size=tuple(size))
    except TypeError as error:
        if "img_size" not in str(error):
            raise
    return timm.create_model(name, pretrained=False, num_classes=0)  # CNNs take any size


def normalisation_constants(backbone: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per RGB channel from the backbone's timm pretrained config, ImageNet's when it has none."""
    config = getattr(backbone, "pretrained_cfg", None) or {}
    mean, std = config.get("mean") or IMAGENET_MEAN, config.get("std") or IMAGENET_STD
    if len(mean) != 3 or len(std) != 3:  # e.g. a single-channel model's config
        mean, std = (float(mean[0]),) * 3, (float(std[0]),) * 3
    return tuple(float(value) for value in mean), tuple(float(value) for value in std)


def feature_tokens(backbone: nn.Module, features: Tensor) -> Tensor:
    """``forward_features`` output -> (B, T, D) tokens (class/register tokens dropped)."""
    if features.ndim == 3:  # (B, prefix + N, D) token models
        return features[:, int(getattr(backbone, "num_prefix_tokens", 0) or 0) :]
    if features.ndim == 4:
        if getattr(backbone, "output_fmt", "NCHW") == "NHWC":  # Swin and friends: (B, H', W', D)
            return features.flatten(1, 2)  # (B, H' * W', D)
        return features.flatten(2).transpose(1, 2)  # (B, D, H', W') -> (B, H' * W', D)
    raise ValueError(f"the backbone's features have {features.ndim} axes; expected tokens or a feature map")


class ChannelAdaptiveStem(nn.Module):
    """(B, C, H, W) channels + (B, C) presence -> (B, 3, H, W): a per-channel embedding that accepts any subset.

    Every channel goes through the same small convolution (so a channel is encoded the same way whichever others
    are present), is modulated by its own learned scale and shift (its embedding: which stain it is), and the present
    channels are averaged before a 1x1 convolution mixes them into the backbone's three input channels. A model
    trained on five channels therefore runs on any subset of them (absent channels simply leave the average), and
    channel dropout in training teaches it to.

    Args:
        n_channels: the configured channels.
        width: feature maps per channel.
        out_channels: the backbone's input channels.
    """

    def __init__(self, n_channels: int, width: int, out_channels: int = 3) -> None:
        super().__init__()
        self.width = width
        self.shared = nn.Conv2d(1, width, kernel_size=3, padding=1)
        self.channel_embedding = nn.Parameter(torch.zeros(n_channels, 2, width))  # (C, scale/shift, F)
        self.mix = nn.Conv2d(width, out_channels, kernel_size=1)

    def forward(self, pixels: Tensor, present: Tensor) -> Tensor:
        batch, channels, height, width = pixels.shape
        features = self.shared(pixels.reshape(batch * channels, 1, height, width))  # (B * C, F, H, W)
        features = features.view(batch, channels, self.width, height, width)  # (B, C, F, H, W)
        scale = 1.0 + self.channel_embedding[:, 0].view(1, channels, self.width, 1, 1)
        shift = self.channel_embedding[:, 1].view(1, channels, self.width, 1, 1)
        features = F.gelu(features * scale + shift)
        weights = present.to(features.dtype)  # (B, C)
        weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
        pooled = torch.einsum("bcfhw,bc->bfhw", features, weights)  # (B, F, H, W) mean over present channels
        return self.mix(pooled)  # (B, 3, H, W)


class ImageEncoder(nn.Module):
    """``batch["image"]`` -> ``EncoderOutput(pooled (B, D), tokens (B, T, D), None)``.

    Input: (B, C, H, W) float16/float32 in [0, 1] (C = 1 grayscale, 3 RGB), or for multichannel images
    ``{"pixels": (B, C, H, W), "channels": (B, C) bool}``.

    Attributes:
        timm_model_name: the backbone's timm name (what a warm start looks its weights up by).
        output_dim: width of the pooled vector and of every token.
    """

    def __init__(self, cfg: ImageConfig) -> None:
        super().__init__()
        self.timm_model_name = cfg.encoder
        self.multichannel = cfg.image_type == "multichannel"
        self.backbone = create_backbone(cfg.encoder, cfg.size)
        mean, std = normalisation_constants(self.backbone)
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.channel_stem = ChannelAdaptiveStem(len(cfg.channels), cfg.stem_width) if self.multichannel else None
        token_dim = int(self.backbone.num_features)
        self.output_dim = int(getattr(self.backbone, "head_hidden_size", None) or token_dim)
        self.token_projection = nn.Linear(token_dim, self.output_dim) if token_dim != self.output_dim else None

    def backbone_input(self, inputs: Tensor | Mapping[str, Tensor]) -> Tensor:
        """The (B, 3, H, W) tensor the backbone sees: normalised pixels, or the channel stem's output."""
        if self.multichannel:
            pixels = inputs["pixels"].to(self.pixel_mean.dtype)  # (B, C, H, W)
            return self.channel_stem(pixels, inputs["channels"])
        pixels = inputs.to(self.pixel_mean.dtype)  # (B, C, H, W)
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)  # (B, 3, H, W) grayscale as RGB-pretrained weights expect
        return (pixels - self.pixel_mean) / self.pixel_std

    def forward(self, inputs: Tensor | Mapping[str, Tensor]) -> EncoderOutput:
        features = self.backbone.forward_features(self.backbone_input(inputs))
        pooled = self.backbone.forward_head(features, pre_logits=True)  # (B, D)
        tokens = feature_tokens(self.backbone, features)  # (B, T, D')
        if self.token_projection is not None:
            tokens = self.token_projection(tokens)  # (B, T, D)
        return EncoderOutput(pooled=pooled, tokens=tokens, token_mask=None)
