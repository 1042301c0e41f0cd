"""A 1-D Vision Transformer over time patches of all leads, with a learned lead embedding.

A token is one time patch (``patch_seconds``) of every lead. Each lead's samples in the patch are projected with that
lead's own weights and get a lead embedding; the token is the mean over the leads the record has, so a record missing
leads is embedded from the leads it has instead of from zeros that look like flat-line leads. A CLS token gives the
pooled vector; the patch tokens are returned for fine-grained losses, with padding patches masked.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medclip.types import EncoderOutput

from ..config import ECGConfig


class LeadPatchEmbedding(nn.Module):
    """(B, L, N) signal + (B, L) lead mask -> (B, P, D) patch tokens, P = ceil(N / patch)."""

    def __init__(self, leads: int, patch: int, width: int) -> None:
        super().__init__()
        self.patch = patch
        self.weight = nn.Parameter(torch.empty(leads, patch, width))  # per-lead patch projection
        self.bias = nn.Parameter(torch.zeros(leads, width))
        self.lead_embedding = nn.Parameter(torch.zeros(leads, width))
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(patch))
        nn.init.normal_(self.lead_embedding, std=0.02)

    def forward(self, signal: Tensor, lead_mask: Tensor) -> Tensor:
        batch, leads, length = signal.shape
        patches = math.ceil(length / self.patch)
        signal = F.pad(signal, (0, patches * self.patch - length))  # (B, L, P * patch)
        windows = signal.reshape(batch, leads, patches, self.patch)  # (B, L, P, patch)
        per_lead = torch.einsum("blps,lsd->blpd", windows, self.weight)  # (B, L, P, D)
        per_lead = per_lead + (self.bias + self.lead_embedding)[None, :, None, :]  # (B, L, P, D)
        weights = lead_mask.to(per_lead.dtype)[:, :, None, None]  # (B, L, 1, 1)
        return (per_lead * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)  # (B, P, D)


class ViT1d(nn.Module):
    """Time-patch transformer: pooled (B, width) from the CLS token, tokens (B, P, width) per patch.

    Args:
        cfg: ``leads``, ``width``, ``depth`` (layers), ``heads``, ``dropout``, ``patch_seconds``, ``seconds`` and
            ``sampling_rate`` (which fix the number of patches and so the positional embedding).
    """

    def __init__(self, cfg: ECGConfig) -> None:
        super().__init__()
        self.output_dim = cfg.width
        self.patch = cfg.patch_samples
        self.max_patches = math.ceil(cfg.n_samples / self.patch)
        self.embed = LeadPatchEmbedding(len(cfg.leads), self.patch, cfg.width)
        self.position = nn.Parameter(torch.zeros(1, self.max_patches + 1, cfg.width))
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.width))
        nn.init.normal_(self.position, std=0.02)
        nn.init.normal_(self.cls, std=0.02)
        layer = nn.TransformerEncoderLayer(  # self-attention runs through scaled_dot_product_attention
            d_model=cfg.width,
            nhead=cfg.heads,
            dim_feedforward=4 * cfg.width,
            dropout=cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, num_layers=cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        tokens = self.embed(inputs["signal"], inputs["lead_mask"])  # (B, P, D)
        batch, patches, _ = tokens.shape
        if patches > self.max_patches:
            raise ValueError(
                f"ECG input has {patches} patches, more than the {self.max_patches} this encoder was built for"
            )
        starts = torch.arange(patches, device=tokens.device) * self.patch  # (P,)
        token_mask = starts.unsqueeze(0) < inputs["valid_samples"].unsqueeze(1)  # (B, P)
        sequence = torch.cat([self.cls.expand(batch, -1, -1), tokens], dim=1) + self.position[:, : patches + 1]
        keep = torch.cat([token_mask.new_ones(batch, 1), token_mask], dim=1)  # (B, 1 + P); CLS always attended
        hidden = self.norm(self.transformer(sequence, src_key_padding_mask=~keep))  # (B, 1 + P, D)
        return EncoderOutput(pooled=hidden[:, 0], tokens=hidden[:, 1:], token_mask=token_mask)
