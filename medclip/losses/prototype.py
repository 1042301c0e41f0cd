"""Prototype (disease-level) alignment: learnable prototypes, Sinkhorn-Knopp assignments, cross-modal consistency.

Follows MGCA's cross-modal prototype alignment (Wang et al., NeurIPS 2022, disease-level), itself SwAV's swapped
prediction (Caron et al., NeurIPS 2020) across modalities, and the prototype idea of SongCi: K learnable unit vectors
("prototypes") live in the shared embedding space; each modality's embedding is softly assigned to them with an
equipartition constraint (Sinkhorn-Knopp, so that no prototype collapses), and each modality must predict the other
modality's assignment of the same sample:

    loss = mean over valid samples of -1/2 [ q_b . log softmax(a C^T / temperature) + q_a . log softmax(b C^T / t) ]

The assignments q are targets (no gradient), as in SwAV. Deviations: MGCA uses 500 prototypes, here
``num_prototypes`` (default 128) is configurable; prototypes are L2-normalised in the forward pass instead of being
renormalised in place after each optimizer step (same geometry, no hook in the training loop).

Exact under torch.distributed: Sinkhorn's per-prototype sums are all-reduced over processes (as in SwAV), so every
process gets the assignments the single process would compute on the concatenated batch; the loss follows the
value/gradient convention of ``medclip.losses.clip``. The trainer averages the prototypes' gradients over processes
and starts every process from rank 0's prototypes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ConfigError
from ..distributed import all_reduce_sum_no_grad, is_distributed
from ..types import present_rows
from .base import Pair, PairwiseContrastiveLoss, PairwiseLossConfig, register_loss, zero_loss_connected_to
from .distributed import check_pair_inputs, exact_global_value


@torch.no_grad()
def sinkhorn_knopp(
    scores: Tensor, mask: Tensor | None = None, epsilon: float = 0.05, iterations: int = 3, distributed: bool = True
) -> Tensor:
    """Soft assignments of samples to prototypes with equal prototype mass (SwAV's Sinkhorn-Knopp).

    Args:
        scores: (B, K) similarities of samples to prototypes.
        mask: (B,) bool, rows that take part (others get all-zero assignments and count nowhere).
        epsilon: entropy regularisation (smaller = sharper assignments).
        iterations: Sinkhorn iterations (SwAV: 3).
        distributed: normalise over the global batch (per-prototype sums all-reduced).

    Returns:
        (B, K) assignments; each valid row sums to 1, each prototype receives 1/K of the global mass.
    """
    mask = mask if mask is not None else torch.ones(scores.shape[0], dtype=torch.bool, device=scores.device)
    use_distributed = distributed and is_distributed()

    def global_sum(tensor: Tensor) -> Tensor:
        return all_reduce_sum_no_grad(tensor) if use_distributed else tensor

    # Subtracting one global constant changes nothing (the first step divides by the total) and avoids overflow.
    logits = scores / epsilon
    top = logits.max().detach().reshape(1)
    if use_distributed:
        torch.distributed.all_reduce(top, op=torch.distributed.ReduceOp.MAX)
    assignments = (logits - top).exp() * mask[:, None]  # (B, K)
    num_rows = global_sum(mask.sum().to(scores.dtype))
    num_prototypes = scores.shape[1]
    assignments = assignments / global_sum(assignments.sum())
    for _ in range(iterations):
        assignments = assignments / global_sum(assignments.sum(dim=0, keepdim=True)) / num_prototypes  # columns
        row_sums = assignments.sum(dim=1, keepdim=True)  # (B, 1)
        assignments = assignments / row_sums.clamp_min(torch.finfo(scores.dtype).tiny) / num_rows  # rows
    return assignments * num_rows


def prototype_loss(
    features_a: Tensor,
    features_b: Tensor,
    prototypes: Tensor,
    mask: Tensor | None = None,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    iterations: int = 3,
    distributed: bool = True,
) -> Tensor:
    """Swapped prototype prediction between two modalities (see the module docstring).

    Args:
        features_a: (B, D) L2-normalised embeddings of one modality; features_b: (B, D) of the other.
        prototypes: (K, D) prototype vectors (normalised here).
        mask: (B,) bool, True where both modalities are present.
        temperature: of the prototype softmax (SwAV / MGCA: 0.1).
        epsilon: Sinkhorn entropy regularisation (SwAV: 0.05).
        iterations: Sinkhorn iterations.
        distributed: global Sinkhorn normalisation and global mean under torch.distributed.

    Returns:
        A scalar: the mean over valid samples of the swapped cross-entropy.
    """
    mask = check_pair_inputs(features_a, features_b, mask)
    use_distributed = distributed and is_distributed()
    num_valid = int(all_reduce_sum_no_grad(mask.sum()) if use_distributed else mask.sum())
    if num_valid == 0:
        return zero_loss_connected_to(features_a, features_b, prototypes)
    centers = F.normalize(prototypes, dim=-1).to(features_a.dtype)  # (K, D)
    scores_a, scores_b = features_a @ centers.T, features_b @ centers.T  # (B, K)
    # Sinkhorn runs on every process (collectives), also on one without valid rows
    targets_a = sinkhorn_knopp(scores_a.detach(), mask, epsilon, iterations, distributed)  # (B, K)
    targets_b = sinkhorn_knopp(scores_b.detach(), mask, epsilon, iterations, distributed)  # (B, K)
    local = present_rows(mask)  # (P,)
    log_predicted_a = F.log_softmax(scores_a[local] / temperature, dim=1)  # (P, K)
    log_predicted_b = F.log_softmax(scores_b[local] / temperature, dim=1)  # (P, K)
    swapped = (targets_b[local] * log_predicted_a).sum() + (targets_a[local] * log_predicted_b).sum()
    local_share = -swapped / (2 * num_valid) + zero_loss_connected_to(features_a, features_b, prototypes)
    return exact_global_value(local_share, use_distributed)


@dataclass
class PrototypeLossConfig(PairwiseLossConfig):
    """Options of ``prototype`` (plus those of PairwiseLossConfig).

    Attributes:
        embed_dim: the model's embedding size (``model.embed_dim``); the prototypes live in that space.
        num_prototypes: number of prototypes K (MGCA: 500).
        temperature: of the prototype softmax.
        epsilon: Sinkhorn entropy regularisation.
        sinkhorn_iterations: Sinkhorn-Knopp iterations.
        seed: of the prototypes' random initialisation (the trainer broadcasts rank 0's anyway).
    """

    embed_dim: int = 128  # must equal model.embed_dim
    num_prototypes: int = 128
    temperature: float = 0.1
    epsilon: float = 0.05
    sinkhorn_iterations: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.embed_dim < 1 or self.num_prototypes < 2 or self.sinkhorn_iterations < 1:
            raise ConfigError("need embed_dim >= 1, num_prototypes >= 2 and sinkhorn_iterations >= 1")
        if not (self.temperature > 0 and self.epsilon > 0):
            raise ConfigError("temperature and epsilon must be > 0")


@register_loss("prototype")
class PrototypeLoss(PairwiseContrastiveLoss):
    """Cross-modal prototype assignment consistency over pairs of modalities (see ``prototype_loss``).

    Owns the learnable (num_prototypes, embed_dim) ``prototypes``. The logit scale is not used.
    Config: ``loss: {clip: 1.0, prototype: {weight: 0.2, embed_dim: 256, num_prototypes: 128}}``.
    """

    config_class: ClassVar[type[PrototypeLossConfig]] = PrototypeLossConfig
    config: PrototypeLossConfig

    def __init__(self, config: PrototypeLossConfig | None = None) -> None:
        super().__init__(config)
        generator = torch.Generator().manual_seed(self.config.seed)
        initial = torch.randn(self.config.num_prototypes, self.config.embed_dim, generator=generator)
        self.prototypes = nn.Parameter(F.normalize(initial, dim=-1))

    def forward(
        self,
        features: Mapping[str, Tensor],
        logit_scale: Tensor | None = None,
        masks: Mapping[str, Tensor] | None = None,
        **unused: Any,
    ) -> dict[str, Tensor]:
        for name, value in features.items():
            if value.shape[-1] != self.prototypes.shape[1]:
                raise ValueError(
                    f"prototype loss: features of {name!r} have {value.shape[-1]} dimensions but the prototypes "
                    f"{self.prototypes.shape[1]}: set loss.prototype.embed_dim to model.embed_dim"
                )
        return super().forward(features, logit_scale, masks)

    def pair_loss(
        self, features_a: Tensor, features_b: Tensor, logit_scale: Tensor, mask: Tensor, pair: Pair
    ) -> Tensor:
        value = prototype_loss(
            features_a,
            features_b,
            self.prototypes,
            mask,
            self.config.temperature,
            self.config.epsilon,
            self.config.sinkhorn_iterations,
            self.config.distributed,
        )
        return value + zero_loss_connected_to(logit_scale)  # DDP: the scale gets a (zero) gradient from every loss
