"""Slide encoders over patch embeddings: (B, N, F) + positions + mask -> ``EncoderOutput``.

Both real aggregators return the pooled slide vector and the patch tokens (for fine-grained and prototype losses):

- ``abmil``: gated attention-MIL (Ilse et al., 2018), the standard weakly supervised slide pooling: a learned
  attention weight per patch, softmax over the slide's patches, weighted sum.
- ``transformer``: a small transformer over the patch tokens with 2-D sine-cosine positions of each patch on the
  slide's grid (as in TITAN / HIPT), pooled by a CLS token; positions are in patch units, so they mean the same
  physical distance at any scan resolution.
- ``mean``: masked mean of projected patch embeddings (the baseline; for one-patch spot samples it is the patch).

Padded patches (mask False) never receive attention and never enter a pooled vector.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from medclip.nn import cls_token, encode_with_cls, pre_norm_encoder
from medclip.registry import Registry
from medclip.types import EncoderOutput

from .config import WSIConfig

WSI_SLIDE_ENCODERS: Registry[Callable[[int, WSIConfig], nn.Module]] = Registry("wsi slide encoder")


def projection(input_dim: int, cfg: WSIConfig) -> nn.Module:
    """Patch embedding -> slide-encoder width."""
    return nn.Sequential(nn.Linear(input_dim, cfg.width), nn.GELU(), nn.Dropout(cfg.dropout))


@WSI_SLIDE_ENCODERS.register("mean")
class MeanPooling(nn.Module):
    """Masked mean of the projected patch embeddings."""

    def __init__(self, input_dim: int, cfg: WSIConfig) -> None:
        super().__init__()
        self.output_dim = cfg.width
        self.project = projection(input_dim, cfg)
        self.norm = nn.LayerNorm(cfg.width)

    def forward(self, features: Tensor, positions: Tensor, mask: Tensor) -> EncoderOutput:
        tokens = self.norm(self.project(features))  # (B, N, W)
        weights = mask.unsqueeze(-1).to(tokens.dtype)  # (B, N, 1)
        pooled = (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)  # (B, W)
        return EncoderOutput(pooled=pooled, tokens=tokens, token_mask=mask)


@WSI_SLIDE_ENCODERS.register("abmil")
class GatedAttentionMIL(nn.Module):
    """Gated attention-MIL: a_i = softmax_i(w^T (tanh(V h_i) * sigmoid(U h_i))), slide = sum_i a_i h_i."""

    def __init__(self, input_dim: int, cfg: WSIConfig) -> None:
        super().__init__()
        self.output_dim = cfg.width
        attention_dim = max(cfg.width // 2, 1)  # Ilse et al. use a hidden attention size below the feature size
        self.project = projection(input_dim, cfg)
        self.attention_tanh = nn.Sequential(nn.Linear(cfg.width, attention_dim), nn.Tanh())
        self.attention_gate = nn.Sequential(nn.Linear(cfg.width, attention_dim), nn.Sigmoid())
        self.attention_score = nn.Linear(attention_dim, 1)
        self.norm = nn.LayerNorm(cfg.width)

    def attention(self, hidden: Tensor, mask: Tensor) -> Tensor:
        """(B, N, W) hidden patches and (B, N) mask -> (B, N) attention weights summing to 1 over real patches."""
        scores = self.attention_score(self.attention_tanh(hidden) * self.attention_gate(hidden)).squeeze(-1)  # (B, N)
        scores = scores.masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=1).nan_to_num(0.0)  # an all-padding row (never encoded) stays finite

    def forward(self, features: Tensor, positions: Tensor, mask: Tensor) -> EncoderOutput:
        hidden = self.project(features)  # (B, N, W)
        weights = self.attention(hidden, mask)  # (B, N)
        pooled = torch.einsum("bn,bnw->bw", weights, hidden)  # (B, W)
        return EncoderOutput(pooled=self.norm(pooled), tokens=self.norm(hidden), token_mask=mask)


def sincos_2d(positions: Tensor, width: int, max_period: float = 10000.0) -> Tensor:
    """2-D sine-cosine embedding: (B, N, 2) positions (x, y) in patch units -> (B, N, width), width/2 per axis."""
    quarter = width // 4
    frequencies = torch.exp(
        -math.log(max_period) * torch.arange(quarter, device=positions.device, dtype=torch.float32) / quarter
    )  # (width/4,)
    angles = positions.float().unsqueeze(-1) * frequencies  # (B, N, 2, width/4)
    embedding = torch.cat([angles.sin(), angles.cos()], dim=-1)  # (B, N, 2, width/2)
    return embedding.flatten(start_dim=2)  # (B, N, width)


@WSI_SLIDE_ENCODERS.register("transformer")
class PositionalTransformer(nn.Module):
    """A pre-norm transformer over patch tokens + 2-D sine-cosine positions, pooled by a CLS token."""

    def __init__(self, input_dim: int, cfg: WSIConfig) -> None:
        super().__init__()
        if cfg.width % 4:
            raise ValueError(
                f"wsi transformer width must be divisible by 4 (2-D sine-cosine positions), got {cfg.width}"
            )
        self.output_dim = cfg.width
        self.width = cfg.width
        self.project = projection(input_dim, cfg)
        self.cls = cls_token(cfg.width)
        self.transformer = pre_norm_encoder(cfg.width, cfg.heads, cfg.layers, cfg.dropout)
        self.norm = nn.LayerNorm(cfg.width)

    def forward(self, features: Tensor, positions: Tensor, mask: Tensor) -> EncoderOutput:
        tokens = self.project(features) + sincos_2d(positions, self.width).to(features.dtype)  # (B, N, W)
        return encode_with_cls(self.transformer, self.norm, self.cls, tokens, mask)
