"""A tiny ContrastiveModel and batch for the training tests: an encoder with a trained linear, BatchNorm (float and
integer buffers), dropout (randomness) and a frozen linear, so EMA, freezing and optimizer code meet every case.

A plain module (not a test file) imported by the tests of ``medclip.train``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medclip.model import ContrastiveModel, ProjectionHead
from medclip.types import EncoderOutput


class TinyEncoder(nn.Module):
    """Linear -> BatchNorm -> dropout, plus a frozen linear: parameters, float and integer buffers, randomness."""

    def __init__(self, input_dim: int, width: int) -> None:
        super().__init__()
        self.output_dim = width
        self.linear = nn.Linear(input_dim, width)
        self.norm = nn.BatchNorm1d(width)
        self.dropout = nn.Dropout(0.5)
        self.fixed = nn.Linear(width, width)
        self.fixed.requires_grad_(False)

    def forward(self, inputs: Tensor) -> EncoderOutput:
        return EncoderOutput(pooled=self.fixed(self.dropout(self.norm(self.linear(inputs)))))


def tiny_model() -> ContrastiveModel:
    torch.manual_seed(0)
    encoders = {"ecg": TinyEncoder(5, 4), "report": TinyEncoder(6, 4)}
    return ContrastiveModel(encoders, {name: ProjectionHead(4, 3) for name in encoders})


def tiny_batch(rows: int = 6) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        "ecg": torch.randn(rows, 5, generator=generator),
        "report": torch.randn(rows, 6, generator=generator),
        "ecg_mask": torch.tensor([True, True, False, True, True, True][:rows]),
        "report_mask": torch.ones(rows, dtype=torch.bool),
        "batch_size": rows,
    }
