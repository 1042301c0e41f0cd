"""The pre-norm transformer encoder and CLS-token pooling that the ECG, expression, slide and report encoders share.

These are functions rather than one wrapping module so that each encoder keeps its own attribute (and so state-dict)
names - ``cls``, ``transformer``, ``norm`` - and its parameter initialisation order.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medclip.types import EncoderOutput


def cls_token(width: int) -> nn.Parameter:
    """A learned (1, 1, width) CLS token, initialised N(0, 0.02) as in ViT and BERT."""
    token = nn.Parameter(torch.zeros(1, 1, width))
    nn.init.normal_(token, std=0.02)
    return token


def pre_norm_encoder(
    width: int, heads: int, layers: int, dropout: float, norm: nn.Module | None = None
) -> nn.TransformerEncoder:
    """``layers`` pre-norm blocks (GELU, 4x MLP expansion), batch-first; attention runs through PyTorch SDPA.

    Pre-norm (``norm_first=True``) trains stably without learning-rate warm-up tricks at small scale. Nested tensors
    do not support ``norm_first``, so padding is handled by the key padding mask instead.

    Args:
        width: model width (d_model).
        heads: attention heads; must divide ``width``.
        layers: number of blocks.
        dropout: dropout inside each block.
        norm: optional final normalisation applied by the encoder itself (e.g. ``nn.LayerNorm(width)``).
    """
    layer = nn.TransformerEncoderLayer(
        d_model=width,
        nhead=heads,
        dim_feedforward=4 * width,
        dropout=dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerEncoder(layer, num_layers=layers, norm=norm, enable_nested_tensor=False)


def encode_with_cls(
    transformer: nn.TransformerEncoder,
    norm: nn.Module,
    cls: Tensor,
    tokens: Tensor,
    token_mask: Tensor,
    position: Tensor | None = None,
) -> EncoderOutput:
    """Prepend the CLS token, encode with padding masked, normalise: pooled = CLS output, tokens = the rest.

    The CLS token is always attended, so a row whose tokens are all padding never yields an all-masked attention row.

    Args:
        transformer: a batch-first encoder (``pre_norm_encoder``).
        norm: the final normalisation of every output position.
        cls: (1, 1, D) CLS token.
        tokens: (B, N, D) input tokens.
        token_mask: (B, N) True where a token is real.
        position: optional (1 or B, 1 + N, D) embedding added to the whole sequence, CLS position included.

    Returns:
        ``EncoderOutput(pooled=(B, D), tokens=(B, N, D), token_mask=token_mask)``.
    """
    batch = tokens.shape[0]
    sequence = torch.cat([cls.expand(batch, -1, -1), tokens], dim=1)  # (B, 1 + N, D)
    if position is not None:
        sequence = sequence + position
    keep = torch.cat([token_mask.new_ones(batch, 1), token_mask], dim=1)  # (B, 1 + N)
    hidden = norm(transformer(sequence, src_key_padding_mask=~keep))  # (B, 1 + N, D)
    return EncoderOutput(pooled=hidden[:, 0], tokens=hidden[:, 1:], token_mask=token_mask)
