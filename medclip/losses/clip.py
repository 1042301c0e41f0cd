"""CLIP's symmetric InfoNCE loss (Radford et al. 2021), mask-aware and exact under torch.distributed.

Distributed, it follows the convention of ``medclip.losses.distributed``: each process scores its own valid rows
against the valid rows of the global batch, in both directions, and the result equals the single-process loss on the
concatenated batch in value and gradient. Logits are (local valid rows, global valid rows): memory grows with the
global batch once, not with its square; above ``tiled_above`` rows the tiled path (``tiled.py``) keeps it O(B * D).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from ..config import ConfigError
from ..distributed import all_gather_with_grad, get_world_size
from ..types import present_rows
from .base import Pair, PairwiseContrastiveLoss, PairwiseLossConfig, register_loss, zero_loss_connected_to
from .distributed import check_pair_inputs, exact_global_value, global_rows, matching_columns
from .tiled import tiled_clip_loss


def clip_loss(
    features_a: Tensor,
    features_b: Tensor,
    logit_scale: Tensor,
    mask: Tensor | None = None,
    distributed: bool = True,
) -> Tensor:
    """Symmetric InfoNCE: mean of cross-entropy a->b and b->a, the matching row being the target.

    Equals open_clip's ``(CE(s * a @ b.T, arange) + CE(s * b @ a.T, arange)) / 2`` on the valid rows.

    Args:
        features_a: (B, D) L2-normalised embeddings of one modality.
        features_b: (B, D) L2-normalised embeddings of the other, row i paired with row i of ``features_a``.
        logit_scale: scalar inverse temperature (already exponentiated).
        mask: (B,) bool, True where both modalities are present; other rows are neither anchors nor negatives.
        distributed: under an initialised process group with more than one process, use every process's rows as
            negatives (see the module docstring for the value/gradient convention).

    Returns:
        A scalar: the loss on the global batch. With no valid row on any process, a zero connected to the inputs
        (so that backward reaches every parameter and DistributedDataParallel does not hang).
    """
    mask = check_pair_inputs(features_a, features_b, mask)
    all_masks, offset, use_distributed = global_rows(features_a, mask, distributed)  # (N,)
    num_valid = int(all_masks.sum())
    if num_valid == 0:  # decided from global counts, so every process takes this branch together
        return zero_loss_connected_to(features_a, features_b, logit_scale)
    all_a = all_gather_with_grad(features_a) if use_distributed else features_a  # (N, D)
    all_b = all_gather_with_grad(features_b) if use_distributed else features_b  # (N, D)
    columns = present_rows(all_masks)  # (V,)
    local = present_rows(mask)  # (P,)
    targets = matching_columns(all_masks, local, offset)  # (P,)
    logits_a_to_b = logit_scale * features_a[local] @ all_b[columns].T  # (P, V)
    logits_b_to_a = logit_scale * features_b[local] @ all_a[columns].T  # (P, V)
    local_sum = F.cross_entropy(logits_a_to_b, targets, reduction="sum") + F.cross_entropy(
        logits_b_to_a, targets, reduction="sum"
    )
    return exact_global_value(local_sum / (2 * num_valid), use_distributed)


@dataclass
class ClipLossConfig(PairwiseLossConfig):
    """Options of the ``clip`` loss: ``weight``, ``pairs``, ``anchor``, ``distributed`` (see PairwiseLossConfig).

    The temperature is not here: it is the model's learnable logit scale, shared by every loss.

    Attributes:
        tiled_above: when the global batch (local batch x processes) is larger than this, use ``tiled_clip_loss``
            (same value and gradients, O(B * D) memory instead of O(B^2)); 0 = always tiled.
        tile_size: block edge of the tiled path.
    """

    tiled_above: int = 4096  # below, plain logits are small and autograd is as fast
    tile_size: int = 1024  # a 1024 x 1024 fp32 block is 4 MiB

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tiled_above < 0 or self.tile_size < 1:
            raise ConfigError(f"need tiled_above >= 0 and tile_size >= 1, got {self.tiled_above}, {self.tile_size}")


@register_loss("clip")
class ClipLoss(PairwiseContrastiveLoss):
    """CLIP loss over pairs of modalities (see ``PairwiseContrastiveLoss``); temperature = the model's logit scale.

    Config: ``loss: {clip: 1.0}`` or ``loss: {clip: {weight: 1.0, anchor: report, distributed: true}}``.
    """

    config_class: ClassVar[type[ClipLossConfig]] = ClipLossConfig
    config: ClipLossConfig

    def pair_loss(
        self, features_a: Tensor, features_b: Tensor, logit_scale: Tensor, mask: Tensor, pair: Pair
    ) -> Tensor:
        global_batch = features_a.shape[0] * (get_world_size() if self.config.distributed else 1)
        if global_batch > self.config.tiled_above:  # equal local batch sizes: every rank takes the same path
            return tiled_clip_loss(
                features_a, features_b, logit_scale, mask, self.config.distributed, self.config.tile_size
            )
        return clip_loss(features_a, features_b, logit_scale, mask, distributed=self.config.distributed)
