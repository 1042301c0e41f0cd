"""Supervised classification losses on findings, for fine-tuning an encoder with a linear head.

Registered like the contrastive losses (``loss: {classification: {mode: binary}}``) and called with the same keyword
convention: they take ``logits`` (B, K) and ``labels`` (B, K) with NaN for unknown and ignore everything else. A
missing label is never read as a negative: binary mode averages over the known entries only, and multi-class mode
scores only rows with exactly one known positive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ConfigError
from .base import LossConfig, register_loss


def masked_binary_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean BCE over the known (non-NaN) entries of (B, K) labels; 0 (with a gradient) when none is known."""
    known = ~torch.isnan(labels)
    if not known.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[known], labels[known])


def single_class_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy over rows with exactly one known positive; other rows do not count."""
    usable = ~torch.isnan(labels).any(dim=1) & (torch.nan_to_num(labels).sum(dim=1) == 1)
    if not usable.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[usable], labels[usable].argmax(dim=1))


CLASSIFICATION_MODES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "binary": masked_binary_cross_entropy,
    "multiclass": single_class_cross_entropy,
}


@dataclass
class ClassificationLossConfig(LossConfig):
    mode: str = "binary"  # binary: findings independent (BCE per finding) | multiclass: one class per row (softmax)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in CLASSIFICATION_MODES:
            raise ConfigError(
                f"classification mode must be one of {', '.join(CLASSIFICATION_MODES)}, got {self.mode!r}"
            )


@register_loss("classification")
class ClassificationLoss(nn.Module):
    """Cross-entropy of a classification head's ``logits`` against ``labels`` (see the module docstring)."""

    config_class = ClassificationLossConfig
    consumes = "logits"  # not contrastive: it scores a classification head (``list_losses(consumes="logits")``)

    def __init__(self, config: ClassificationLossConfig | None = None) -> None:
        super().__init__()
        self.config = config or ClassificationLossConfig()
        self.loss_fn = CLASSIFICATION_MODES[self.config.mode]

    def forward(self, logits: Tensor, labels: Tensor, **_: Any) -> dict[str, Tensor]:
        return {"classification_loss": self.loss_fn(logits, labels)}
