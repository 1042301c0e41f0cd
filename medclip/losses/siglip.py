"""SigLIP's pairwise sigmoid loss (Zhai et al. 2023), mask-aware and exact under torch.distributed.

Every (anchor, candidate) pair is an independent binary decision "do these match?", so no softmax over the batch is
needed and small batches work. Loss = -1/V * sum over valid anchors i and valid candidates j of
log sigmoid(z_ij * (scale * a_i . b_j + bias)), z_ij = +1 on the diagonal and -1 elsewhere, V = number of valid rows
(the paper divides by the batch size).

Distributed: each process scores its own valid rows against the valid candidates of the global batch (gathered with
gradient); the value/gradient convention is the one of ``clip_loss`` (exact global value on every process, gradient
of ``world_size * local share`` so that DistributedDataParallel's averaging gives the exact global gradient).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..distributed import all_gather_with_grad
from ..types import present_rows
from .base import Pair, PairwiseContrastiveLoss, PairwiseLossConfig, register_loss, zero_loss_connected_to
from .distributed import check_pair_inputs, exact_global_value, global_rows, matching_columns


def siglip_loss(
    features_a: Tensor,
    features_b: Tensor,
    logit_scale: Tensor,
    logit_bias: Tensor,
    mask: Tensor | None = None,
    distributed: bool = True,
) -> Tensor:
    """Sigmoid loss over every pair of valid rows, normalised by the number of valid anchor rows.

    Args:
        features_a: (B, D) L2-normalised embeddings of one modality (the anchors).
        features_b: (B, D) L2-normalised embeddings of the other, row i paired with row i of ``features_a``.
        logit_scale: scalar multiplier of the cosine similarity (already exponentiated).
        logit_bias: scalar added to every logit; the paper starts it at -10 so that the many negatives do not
            dominate the first steps.
        mask: (B,) bool, True where both modalities are present; other rows are neither anchors nor candidates.
        distributed: under an initialised process group with more than one process, use every process's rows as
            candidates (see ``medclip.losses.clip`` for the value/gradient convention).

    Returns:
        A scalar: the loss on the global batch. With no valid row on any process, a zero connected to the inputs
        (so that backward reaches every parameter and DistributedDataParallel does not hang).
    """
    mask = check_pair_inputs(features_a, features_b, mask)
    all_masks, offset, use_distributed = global_rows(features_a, mask, distributed)  # (N,)
    num_valid = int(all_masks.sum())
    if num_valid == 0:  # decided from global counts, so every process takes this branch together
        return zero_loss_connected_to(features_a, features_b, logit_scale, logit_bias)
    all_b = all_gather_with_grad(features_b) if use_distributed else features_b  # (N, D)
    columns = present_rows(all_masks)  # (V,)
    local = present_rows(mask)  # (P,)
    matches = matching_columns(all_masks, local, offset)  # (P,)
    logits = logit_scale * features_a[local] @ all_b[columns].T + logit_bias  # (P, V)
    signs = -torch.ones_like(logits)  # (P, V) z = -1 for non-matching pairs
    signs[torch.arange(local.numel(), device=logits.device), matches] = 1.0  # z = +1 for the matching pair
    local_sum = -F.logsigmoid(signs * logits).sum()
    return exact_global_value(local_sum / num_valid, use_distributed)


@dataclass
class SigLipLossConfig(PairwiseLossConfig):
    """Options of the ``siglip`` loss: those of PairwiseLossConfig plus the initial bias.

    Attributes:
        init_logit_bias: starting value of the learnable bias (the paper's -10, with a logit scale of ~10).
    """

    init_logit_bias: float = -10.0


@register_loss("siglip")
class SigLipLoss(PairwiseContrastiveLoss):
    """SigLIP loss over pairs of modalities (see ``PairwiseContrastiveLoss``).

    Owns one learnable ``logit_bias`` shared by every pair; the scale is the model's logit scale (SigLIP starts it
    at 10, i.e. ``model.init_temperature: 0.1``). Under DistributedDataParallel, wrap this module together with the
    model (or average its gradient too) so that the bias gets the same averaged gradient as the model.
    Config: ``loss: {siglip: {weight: 1.0, init_logit_bias: -10}}``.
    """

    config_class: ClassVar[type[SigLipLossConfig]] = SigLipLossConfig
    config: SigLipLossConfig

    def __init__(self, config: SigLipLossConfig | None = None) -> None:
        super().__init__(config)
        self.logit_bias = nn.Parameter(torch.tensor(float(self.config.init_logit_bias)))

    def pair_loss(
        self, features_a: Tensor, features_b: Tensor, logit_scale: Tensor, mask: Tensor, pair: Pair
    ) -> Tensor:
        bias = self.logit_bias.to(features_a.dtype)
        return siglip_loss(features_a, features_b, logit_scale, bias, mask, distributed=self.config.distributed)

    def extra_metrics(self) -> dict[str, Tensor]:
        return {f"{self.name}/logit_bias": self.logit_bias.detach().clone()}
