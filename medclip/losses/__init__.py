"""Contrastive losses: pure functions + thin modules, registered by name, exact under torch.distributed.

Importing this package registers the built-in losses (``list_losses()``, described in docs/losses.md);
third-party losses register with ``@register_loss`` or through the ``medclip.losses`` entry-point group.
``build_loss(cfg.loss)`` turns the experiment config's ``loss`` section into the ``CombinedLoss`` the trainer calls
on ``ContrastiveModel`` outputs.
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
from .classification import ClassificationLoss, ClassificationLossConfig
from .clip import ClipLoss, ClipLossConfig, clip_loss
from .distill import DistillLoss, DistillLossConfig, distill_loss
from .mae import MaskedReconstructionLoss, MaskedReconstructionLossConfig, masked_reconstruction_loss
from .multimodal import GramLoss, GramLossConfig, SymileLoss, SymileLossConfig, gram_loss, symile_loss
from .prototype import PrototypeLoss, PrototypeLossConfig, prototype_loss, sinkhorn_knopp
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
from .token import (
    FilipLoss,
    FilipLossConfig,
    TokenAlignmentLoss,
    TokenAlignmentLossConfig,
    filip_loss,
    token_alignment_loss,
)
from .uniformity import UniformityLoss, UniformityLossConfig, uniformity_loss

__all__ = [
    "LOSSES",
    "ClassificationLoss",
    "ClassificationLossConfig",
    "ClipLoss",
    "ClipLossConfig",
    "CombinedLoss",
    "CwclLoss",
    "CwclLossConfig",
    "DistillLoss",
    "DistillLossConfig",
    "MultiPositiveLoss",
    "MultiPositiveLossConfig",
    "SoftLabelLoss",
    "SoftLabelLossConfig",
    "cwcl_loss",
    "distill_loss",
    "FilipLoss",
    "FilipLossConfig",
    "GramLoss",
    "GramLossConfig",
    "PrototypeLoss",
    "PrototypeLossConfig",
    "SymileLoss",
    "SymileLossConfig",
    "TokenAlignmentLoss",
    "TokenAlignmentLossConfig",
    "UniformityLoss",
    "UniformityLossConfig",
    "filip_loss",
    "gram_loss",
    "prototype_loss",
    "sinkhorn_knopp",
    "symile_loss",
    "token_alignment_loss",
    "uniformity_loss",
    "multi_positive_loss",
    "soft_label_loss",
    "tiled_clip_loss",
    "tiled_cross_entropy",
    "LossConfig",
    "MaskedReconstructionLoss",
    "MaskedReconstructionLossConfig",
    "masked_reconstruction_loss",
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
