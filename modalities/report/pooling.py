"""Pooling token states into one report vector and into one vector per sentence."""

from __future__ import annotations

import torch
from torch import Tensor


def masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean of the real token states: (B, T, D), (B, T) bool -> (B, D); rows without tokens give zeros."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def sentence_means(hidden: Tensor, mask: Tensor, sentence_ids: Tensor, max_sentences: int) -> tuple[Tensor, Tensor]:
    """Per-sentence mean of token states, padded to a fixed number of sentences.

    A fixed ``max_sentences`` (rather than the batch's largest count) keeps the shape static: no host sync to read
    the count, and fine-grained losses can all-gather sentence tokens across processes without re-padding.

    Args:
        hidden: (B, T, D) token states.
        mask: (B, T) bool, True for real tokens.
        sentence_ids: (B, T) long, sentence index per token, -1 for special and padding tokens.
        max_sentences: S, the number of sentence slots.

    Returns:
        tokens: (B, S, D) the mean state of each sentence's tokens, zeros for empty slots.
        token_mask: (B, S) bool, True where the sentence exists.
    """
    slots = torch.arange(max_sentences, device=hidden.device)  # (S,)
    membership = (sentence_ids.unsqueeze(1) == slots.view(1, -1, 1)) & mask.unsqueeze(1)  # (B, S, T)
    weights = membership.to(hidden.dtype)  # (B, S, T)
    counts = weights.sum(dim=-1)  # (B, S)
    tokens = torch.bmm(weights, hidden) / counts.clamp(min=1.0).unsqueeze(-1)  # (B, S, T) @ (B, T, D) -> (B, S, D)
    return tokens, counts > 0
