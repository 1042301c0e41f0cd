"""``EncoderOutput`` is a registered pytree: ``torch.export`` exports an encoder that returns it (issue 17: export
failed on it), and the exported program returns an ``EncoderOutput`` again."""

from __future__ import annotations

import torch
from torch import nn
from torch.export import Dim

from medclip.types import EncoderOutput


class TinyTokenEncoder(nn.Module):
    """(B, T, 4) -> pooled (B, 8) mean, tokens (B, T, 8), token_mask (B, T)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 8)

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        tokens = self.linear(x)  # (B, T, 8)
        return EncoderOutput(pooled=tokens.mean(dim=1), tokens=tokens, token_mask=x.abs().sum(-1) > 0)


class TinyPooledEncoder(TinyTokenEncoder):
    def forward(self, x: torch.Tensor) -> EncoderOutput:
        return EncoderOutput(pooled=self.linear(x).mean(dim=1))  # tokens and mask are None


def test_torch_export_sees_through_encoder_output():
    encoder = TinyTokenEncoder().eval()
    example = torch.randn(2, 5, 4)
    program = torch.export.export(encoder, (example,), dynamic_shapes=({0: Dim("batch"), 1: Dim("length")},))
    other = torch.randn(3, 7, 4)
    produced = program.module()(other)
    expected = encoder(other)
    assert isinstance(produced, EncoderOutput)
    torch.testing.assert_close(produced.pooled, expected.pooled)
    torch.testing.assert_close(produced.tokens, expected.tokens)
    assert torch.equal(produced.token_mask, expected.token_mask)


def test_an_output_without_tokens_round_trips():
    encoder = TinyPooledEncoder().eval()
    program = torch.export.export(encoder, (torch.randn(2, 5, 4),))
    produced = program.module()(torch.randn(2, 5, 4))
    assert isinstance(produced, EncoderOutput) and produced.tokens is None and produced.token_mask is None
