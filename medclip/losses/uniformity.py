"""Uniformity regulariser (Wang & Isola, ICML 2020): spread embeddings evenly over the sphere.

    uniformity(X) = log mean_{i != j} exp(-t ||x_i - x_j||^2)

Minimising it pushes every pair of rows apart, most strongly the closest ones; the contrastive losses already contain
a uniformity term through their negatives, and this adds an explicit one with its own weight, against (dimensional)
collapse. Its value is <= 0; a regulariser weight of 0.1-1 next to ``clip: 1.0`` is the usual range.

``scope: per_modality`` (the default, Wang & Isola's form) spreads each modality's embeddings on their own and
averages over modalities with at least two valid rows. ``scope: joint`` pools every modality's valid rows into one
set: the union is spread, so two modalities sitting in separate cones (the modality gap, see docs/diagnostics.md)
are penalised as well.

Exact under torch.distributed. Each process computes the Gaussian potentials of its own valid rows against every
valid row of the global batch (gathered with gradient), leaving out each row's pair with itself; the sums are
all-reduced, so every process reports the value of the single-process loss on the concatenated batch. The loss is a
log of a global sum, not a sum of local shares, so the gradient is carried by ``world * local sum / global sum``
(``d log S = dS / S``): after DistributedDataParallel averages the parameter gradients over processes they equal
the single-process gradients, the convention of ``medclip.losses.clip``. The potentials are shifted by their global
maximum before ``exp``, so a large ``t`` cannot underflow to log(0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..config import ConfigError
from ..distributed import (
    all_gather_no_grad,
    all_gather_with_grad,
    all_reduce_sum_no_grad,
    get_rank,
    get_world_size,
    is_distributed,
)
from ..types import present_rows
from .base import LossConfig, presence_masks, register_loss, zero_loss_connected_to
from .clip import matching_columns

SCOPES = ("per_modality", "joint")


def _check_inputs(features: Tensor, mask: Tensor | None) -> Tensor:
    if features.dim() != 2:
        raise ValueError(f"expected (B, D) features, got shape {tuple(features.shape)}")
    if mask is None:
        return features.new_ones(features.shape[0], dtype=torch.bool)
    if mask.shape != features.shape[:1]:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected ({features.shape[0]},)")
    return mask.to(device=features.device, dtype=torch.bool)


def uniformity_loss(features: Tensor, mask: Tensor | None = None, t: float = 2.0, distributed: bool = True) -> Tensor:
    """Wang & Isola's uniformity of the valid rows of the (global) batch (see the module docstring).

    Args:
        features: (B, D) L2-normalised embeddings.
        mask: (B,) bool, rows that take part (a missing modality, padding).
        t: the Gaussian potential's scale (Wang & Isola: 2).
        distributed: under an initialised process group with more than one process, use every process's rows.

    Returns:
        A scalar <= 0 for unit rows: the loss on the global batch. With fewer than two valid rows in the global batch
        (no pair), a zero connected to ``features`` so that backward still reaches every parameter.
    """
    if not t > 0:
        raise ValueError(f"t must be > 0, got {t}")
    mask = _check_inputs(features, mask)
    use_distributed = distributed and is_distributed()
    all_masks = all_gather_no_grad(mask) if use_distributed else mask  # (N,)
    num_valid = int(all_masks.sum())
    if num_valid < 2:  # decided from global counts, so every process takes this branch together
        return zero_loss_connected_to(features)
    all_features = all_gather_with_grad(features) if use_distributed else features  # (N, D)
    offset = get_rank() * features.shape[0] if use_distributed else 0
    local = present_rows(mask)  # (P,)
    columns = present_rows(all_masks)  # (V,)
    precision = torch.promote_types(features.dtype, torch.float32)  # bf16 / fp16 features: exp and log in fp32
    rows, others = features[local].to(precision), all_features[columns].to(precision)  # (P, D), (V, D)
    squared_distances = (rows * rows).sum(dim=1)[:, None] + (others * others).sum(dim=1)[None, :] - 2 * rows @ others.T
    itself = torch.zeros_like(squared_distances, dtype=torch.bool)  # (P, V)
    itself[torch.arange(len(local), device=itself.device), matching_columns(all_masks, local, offset)] = True
    potentials = (-t * squared_distances).masked_fill(itself, float("-inf"))  # (P, V)
    top = potentials.detach().max() if potentials.numel() else potentials.new_full((), float("-inf"))
    if use_distributed:
        top = top.clone()
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
    local_sum = (potentials - top).exp().sum() + zero_loss_connected_to(features)  # a rank without rows stays wired
    normaliser = math.log(num_valid * (num_valid - 1))  # ordered pairs i != j: the same mean as pairs i < j
    if not use_distributed:
        return top + local_sum.log() - normaliser  # plain autograd, higher derivatives included
    global_sum = all_reduce_sum_no_grad(local_sum)
    value = top + global_sum.log() - normaliser
    loss_for_grad = local_sum / global_sum * get_world_size()  # first derivatives: d log S = dS / S
    return loss_for_grad + (value - loss_for_grad).detach()


@dataclass
class UniformityLossConfig(LossConfig):
    """Options of ``uniformity``.

    Attributes:
        t: the Gaussian potential's scale (Wang & Isola: 2; larger = only the closest pairs matter).
        scope: "per_modality" (each modality spread on its own, averaged) or "joint" (every modality's rows pooled).
        modalities: which modalities take part (default: every modality in the batch).
        distributed: use every process's rows under torch.distributed (the loss then equals the single-process loss
            on the global batch).
    """

    t: float = 2.0
    scope: str = "per_modality"
    modalities: list[str] = field(default_factory=list)
    distributed: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.t) and self.t > 0):
            raise ConfigError(f"uniformity t must be a finite number > 0, got {self.t!r}")
        if self.scope not in SCOPES:
            raise ConfigError(f"uniformity scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")


@register_loss("uniformity")
class UniformityLoss(nn.Module):
    """The uniformity regulariser over the batch's modalities (see ``uniformity_loss``).

    Outputs ``uniformity_loss`` and, with ``scope: per_modality``, ``uniformity/<modality>`` for each modality that
    has a pair of valid rows. Config: ``loss: {clip: 1.0, uniformity: {weight: 0.2, t: 2}}``.
    """

    name: ClassVar[str] = "uniformity"
    config_class: ClassVar[type[UniformityLossConfig]] = UniformityLossConfig

    def __init__(self, config: UniformityLossConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else self.config_class()

    def forward(
        self,
        features: Mapping[str, Tensor],
        masks: Mapping[str, Tensor] | None = None,
        logit_scale: Tensor | None = None,
        **unused: Any,
    ) -> dict[str, Tensor]:
        config = self.config
        names = list(config.modalities) or list(features)
        missing = [name for name in names if name not in features]
        if missing or not names:
            raise ValueError(f"uniformity loss: modalities {missing or names} are not in the model outputs")
        valid = presence_masks(features, masks, names)
        metrics: dict[str, Tensor] = {}
        if config.scope == "joint":
            pooled = torch.cat([features[name] for name in names])  # (M * B, D)
            pooled_mask = torch.cat([valid[name] for name in names])  # (M * B,)
            total = uniformity_loss(pooled, pooled_mask, config.t, config.distributed)
        else:
            local_counts = torch.stack([valid[name].sum() for name in names])  # (M,)
            use_distributed = config.distributed and is_distributed()
            counts = all_reduce_sum_no_grad(local_counts) if use_distributed else local_counts
            values = []
            for name, count in zip(names, counts.tolist(), strict=True):
                if count < 2:  # no pair anywhere: every rank skips this modality alike
                    continue
                value = uniformity_loss(features[name], valid[name], config.t, config.distributed)
                values.append(value)
                metrics[f"uniformity/{name}"] = value.detach()
            total = torch.stack(values).mean() if values else features[names[0]].new_zeros(())
        # every taking-part modality stays in the graph, also one skipped for want of a pair (DDP waits otherwise)
        total = total + zero_loss_connected_to(*(features[name] for name in names))
        if logit_scale is not None:  # DDP: the scale gets a (zero) gradient from every loss
            total = total + zero_loss_connected_to(logit_scale)
        return {"uniformity_loss": total, **metrics}
