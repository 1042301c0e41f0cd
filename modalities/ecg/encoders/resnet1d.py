"""A 1-D residual network over the leads (as in Ribeiro et al., Nat. Commun. 2020 and many ECG models since).

The leads are the input channels of the first convolution; every stage halves time and widens the channels up to
``width``. The last feature map's time positions are the tokens; the pooled vector is their masked mean.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medclip.types import EncoderOutput

from ..config import ECGConfig

STEM_KERNEL = 15  # ~30 ms at 500 Hz: the stem sees a QRS upstroke
BLOCK_KERNEL = 7
MIN_CHANNELS = 16


class ResidualBlock1d(nn.Module):
    """conv-BN-ReLU-dropout-conv-BN plus a (strided, projected) shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__()
        padding = BLOCK_KERNEL // 2
        self.body = nn.Sequential(
            nn.Conv1d(in_channels, out_channels, BLOCK_KERNEL, stride=stride, padding=padding, bias=False),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Conv1d(out_channels, out_channels, BLOCK_KERNEL, padding=padding, bias=False),
            nn.BatchNorm1d(out_channels),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and in_channels == out_channels
            else nn.Sequential(
                nn.Conv1d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm1d(out_channels)
            )
        )
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.body(x) + self.shortcut(x))


class ResNet1d(nn.Module):
    """Leads x time -> pooled (B, width) and time tokens (B, T', width), T' = N / 2^(depth + 1).

    Args:
        cfg: ``leads`` (input channels), ``width``, ``depth`` (stages), ``dropout``.
    """

    def __init__(self, cfg: ECGConfig) -> None:
        super().__init__()
        self.output_dim = cfg.width
        channels = [max(cfg.width // 2 ** (cfg.depth - 1 - stage), MIN_CHANNELS) for stage in range(cfg.depth)]
        channels[-1] = cfg.width
        self.stem = nn.Sequential(
            nn.Conv1d(len(cfg.leads), channels[0], STEM_KERNEL, stride=2, padding=STEM_KERNEL // 2, bias=False),
            nn.BatchNorm1d(channels[0]),
            nn.ReLU(inplace=True),
        )
        blocks, previous = [], channels[0]
        for stage_channels in channels:
            blocks.append(ResidualBlock1d(previous, stage_channels, stride=2, dropout=cfg.dropout))
            previous = stage_channels
        self.blocks = nn.Sequential(*blocks)
        self.downsampling = 2 ** (cfg.depth + 1)  # stem + one stride-2 block per stage
        self.norm = nn.LayerNorm(cfg.width)

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        signal = inputs["signal"] * inputs["lead_mask"].unsqueeze(-1).to(inputs["signal"].dtype)  # (B, L, N)
        features = self.blocks(self.stem(signal))  # (B, W, T')
        tokens = self.norm(features.transpose(1, 2))  # (B, T', W)
        starts = torch.arange(tokens.shape[1], device=tokens.device) * self.downsampling  # (T',) first input sample
        token_mask = starts.unsqueeze(0) < inputs["valid_samples"].unsqueeze(1)  # (B, T')
        weights = token_mask.unsqueeze(-1).to(tokens.dtype)  # (B, T', 1)
        pooled = (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)  # (B, W)
        return EncoderOutput(pooled=pooled, tokens=tokens, token_mask=token_mask)
