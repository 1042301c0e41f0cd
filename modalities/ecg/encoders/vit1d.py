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

from medclip.nn import cls_token, encode_with_cls, pre_norm_encoder
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
        nn.init.normal_(self.position, std=0.02)
        self.cls = cls_token(cfg.width)
        self.transformer = pre_norm_encoder(cfg.width, cfg.heads, cfg.depth, cfg.dropout)
        self.norm = nn.LayerNorm(cfg.width)

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        tokens = self.embed(inputs["signal"], inputs["lead_mask"])  # (B, P, D)
        patches = tokens.shape[1]
        if patches > self.max_patches:
            raise ValueError(
                f"ECG input has {patches} patches, more than the {self.max_patches} this encoder was built for"
            )
        starts = torch.arange(patches, device=tokens.device) * self.patch  # (P,)
        token_mask = starts.unsqueeze(0) < inputs["valid_samples"].unsqueeze(1)  # (B, P)
        position = self.position[:, : patches + 1]  # (1, 1 + P, D): CLS position included
        return encode_with_cls(self.transformer, self.norm, self.cls, tokens, token_mask, position)
