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

from medclip.registry import Registry
from medclip.types import EncoderOutput

from .config import WSIConfig

SLIDE_ENCODERS: Registry[Callable[[int, WSIConfig], nn.Module]] = Registry("wsi slide encoder")


def projection(input_dim: int, cfg: WSIConfig) -> nn.Module:
    """Patch embedding -> slide-encoder width."""
    return nn.Sequential(nn.Linear(input_dim, cfg.width), nn.GELU(), nn.Dropout(cfg.dropout))


@SLIDE_ENCODERS.register("mean")
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


@SLIDE_ENCODERS.register("abmil")
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


@SLIDE_ENCODERS.register("transformer")
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
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.width))
        nn.init.normal_(self.cls, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=cfg.width,
            nhead=cfg.heads,
            dim_feedforward=4 * cfg.width,
            dropout=cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, num_layers=cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)

    def forward(self, features: Tensor, positions: Tensor, mask: Tensor) -> EncoderOutput:
        tokens = self.project(features) + sincos_2d(positions, self.width).to(features.dtype)  # (B, N, W)
        cls = self.cls.expand(features.shape[0], -1, -1)  # (B, 1, W)
        sequence = torch.cat([cls, tokens], dim=1)  # (B, 1 + N, W)
        keep = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1)  # (B, 1 + N): CLS always attends
        hidden = self.norm(self.transformer(sequence, src_key_padding_mask=~keep))  # (B, 1 + N, W)
        return EncoderOutput(pooled=hidden[:, 0], tokens=hidden[:, 1:], token_mask=mask)
