"""Contrastive losses: pure functions + thin modules, registered by name, exact under torch.distributed.

Importing this package registers the built-in losses (``list_losses()``; docs/losses.md describes each); third-party losses register with
``@register_loss`` or through the ``medclip.losses`` entry-point group. ``build_loss(cfg.loss)`` turns the experiment
config's ``loss`` section into the ``CombinedLoss`` the trainer calls on ``ContrastiveModel`` outputs.
"""

from __future__ import annotations

from .base import (
    LOSSES,
    CombinedLoss,
    LossConfig,
    PairwiseContrastiveLoss,
    PairwiseLossConfig,
    build_loss,
    list_losses,
    register_loss,
    zero_loss_connected_to,
)
from .clip import ClipLoss, ClipLossConfig, clip_loss
from .siglip import SigLipLoss, SigLipLossConfig, siglip_loss
from .soft_label import (
    CwclLoss,
    CwclLossConfig,
    MultiPositiveLoss,
    MultiPositiveLossConfig,
    SoftLabelLoss,
    SoftLabelLossConfig,
    cwcl_loss,
    multi_positive_loss,
    soft_label_loss,
)
from .tiled import tiled_clip_loss, tiled_cross_entropy

__all__ = [
    "LOSSES",
    "ClipLoss",
    "ClipLossConfig",
    "CombinedLoss",
    "CwclLoss",
    "CwclLossConfig",
    "MultiPositiveLoss",
    "MultiPositiveLossConfig",
    "SoftLabelLoss",
    "SoftLabelLossConfig",
    "cwcl_loss",
    "multi_positive_loss",
    "soft_label_loss",
    "tiled_clip_loss",
    "tiled_cross_entropy",
    "LossConfig",
    "PairwiseContrastiveLoss",
    "PairwiseLossConfig",
    "SigLipLoss",
    "SigLipLossConfig",
    "build_loss",
    "clip_loss",
    "list_losses",
    "register_loss",
    "siglip_loss",
    "zero_loss_connected_to",
]
