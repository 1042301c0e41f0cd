"""Losses over more than two modalities at once: Symile (multilinear inner product) and GRAM (Gram volume).

Pairwise CLIP (``clip`` with ``pairs: all`` or an ``anchor``) aligns modalities two at a time. These two losses
score a whole tuple of modalities of one patient-level sample together:

- ``symile`` (Saporta et al., NeurIPS 2024, "Contrasting with Symile"): the score of a tuple is the multilinear inner
  product MIP(x1, ..., xM) = sum_d prod_m x_m[d]; for every modality m in turn, sample i's x_m is contrasted against
  the tuples of the other modalities of every candidate j, i.e. the logits are ``x_m[i] . prod_{m' != m} x_m'[j]``
  (the paper's O(N) negative sampling), and the loss is the mean over m of the cross-entropy. This lower-bounds the
  total correlation of the M modalities; with M = 2 it is CLIP's loss.
- ``gram`` (Cicchetti et al., ICLR 2025, "Gramian Multimodal Representation Learning and Alignment"): the score of an
  anchor embedding t with the other modalities of a candidate j is minus the volume of the parallelotope they span,
  ``sqrt(det G)`` with G their Gram matrix; InfoNCE with logits ``-scale * volume``, anchor -> candidates and
  candidates -> anchors. Deviations: the paper's extra data-anchor matching term is left out; ``det`` is clamped at
  1e-8 before the square root (a degenerate tuple would give an infinite gradient).

Patient-level samples may miss any modality. Rows are grouped by the exact set of modalities they have (decided on
the global batch, so every process forms the same groups); each group with at least two modalities (for GRAM: the
anchor and at least one other) is one contrast with its own candidates, and the loss is the mean over groups weighted
by their number of rows. Both losses are exact under torch.distributed (the convention of ``medclip.losses.clip``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..distributed import all_gather_no_grad, all_gather_with_grad, is_distributed
from ..types import present_rows
from .base import LossConfig, presence_masks, register_loss, require_logit_scale, zero_loss_connected_to
from .distributed import exact_global_value, matching_columns

MIN_GRAM_DETERMINANT = 1e-8  # clamp before sqrt: d sqrt(x) / dx is infinite at 0


def _check_group(features: Sequence[Tensor], mask: Tensor | None) -> Tensor:
    if len(features) < 2:
        raise ValueError(f"need at least two modalities, got {len(features)}")
    shape = features[0].shape
    if features[0].dim() != 2 or any(tensor.shape != shape for tensor in features):
        raise ValueError(f"expected (B, D) features of one shape, got {[tuple(t.shape) for t in features]}")
    if mask is None:
        return torch.ones(shape[0], dtype=torch.bool, device=features[0].device)
    if mask.shape != shape[:1]:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected ({shape[0]},)")
    return mask.bool()


def _global_layout(mask: Tensor, use_distributed: bool, size: int) -> tuple[Tensor, Tensor, Tensor, int]:
    """Local valid rows, global valid columns, each local row's target column, and the global count."""
    all_masks = all_gather_no_grad(mask) if use_distributed else mask  # (N,)
    offset = torch.distributed.get_rank() * size if use_distributed else 0
    local = present_rows(mask)  # (P,)
    columns = present_rows(all_masks)  # (V,)
    targets = matching_columns(all_masks, local, offset)  # (P,)
    return local, columns, targets, int(all_masks.sum())


def symile_loss(
    features: Sequence[Tensor], logit_scale: Tensor, mask: Tensor | None = None, distributed: bool = True
) -> Tensor:
    """Symile over M modalities of the same samples (see the module docstring).

    Args:
        features: M tensors (B, D), L2-normalised, row i of each from sample i.
        logit_scale: scalar inverse temperature.
        mask: (B,) bool, rows where every one of the M modalities is present.
        distributed: global candidates under torch.distributed.

    Returns:
        A scalar: mean over modalities and valid rows of the cross-entropy.
    """
    mask = _check_group(features, mask)
    use_distributed = distributed and is_distributed()
    local, columns, targets, num_valid = _global_layout(mask, use_distributed, features[0].shape[0])
    if num_valid == 0:
        return zero_loss_connected_to(*features, logit_scale)
    gathered = [all_gather_with_grad(tensor) if use_distributed else tensor for tensor in features]  # (N, D) each
    candidates = [tensor[columns] for tensor in gathered]  # (V, D) each
    total = zero_loss_connected_to(*features, logit_scale)
    for m, queries in enumerate(features):
        others = torch.stack([candidates[k] for k in range(len(features)) if k != m]).prod(dim=0)  # (V, D)
        logits = logit_scale * queries[local] @ others.T  # (P, V)
        total = total + F.cross_entropy(logits, targets, reduction="sum")
    return exact_global_value(total / (len(features) * num_valid), use_distributed)


def gram_volume(anchors: Tensor, others: Sequence[Tensor]) -> Tensor:
    """Volume spanned by each anchor together with each candidate's other modalities.

    Args:
        anchors: (P, D) unit vectors.
        others: k - 1 tensors (V, D), candidate j's vectors in row j.

    Returns:
        (P, V) ``sqrt(det G)``, G the k x k Gram matrix of (anchor i, others of j).
    """
    stacked = torch.stack(list(others), dim=1)  # (V, k-1, D)
    candidate_gram = stacked @ stacked.transpose(1, 2)  # (V, k-1, k-1)
    cross = torch.einsum("pd,vkd->pvk", anchors, stacked)  # (P, V, k-1)
    anchor_norm = (anchors * anchors).sum(dim=1)  # (P,)
    size_p, size_v, rest = cross.shape
    gram = anchors.new_empty(size_p, size_v, rest + 1, rest + 1)  # (P, V, k, k)
    gram[:, :, 0, 0] = anchor_norm[:, None]
    gram[:, :, 0, 1:] = cross
    gram[:, :, 1:, 0] = cross
    gram[:, :, 1:, 1:] = candidate_gram[None]
    return torch.linalg.det(gram).clamp_min(MIN_GRAM_DETERMINANT).sqrt()


def gram_loss(
    anchor: Tensor,
    others: Sequence[Tensor],
    logit_scale: Tensor,
    mask: Tensor | None = None,
    distributed: bool = True,
) -> Tensor:
    """GRAM's volume contrast between an anchor modality and the other modalities (see the module docstring).

    Args:
        anchor: (B, D) L2-normalised anchor embeddings (e.g. the report).
        others: one or more (B, D) tensors of the other modalities of the same samples.
        logit_scale: scalar inverse temperature (logits = -scale * volume).
        mask: (B,) bool, rows where the anchor and every other modality are present.
        distributed: global candidates under torch.distributed.

    Returns:
        A scalar: mean over both directions and valid rows of the cross-entropy.
    """
    mask = _check_group([anchor, *others], mask)
    use_distributed = distributed and is_distributed()
    local, columns, targets, num_valid = _global_layout(mask, use_distributed, anchor.shape[0])
    if num_valid == 0:
        return zero_loss_connected_to(anchor, *others, logit_scale)
    all_anchor = all_gather_with_grad(anchor) if use_distributed else anchor  # (N, D)
    all_others = [all_gather_with_grad(tensor) if use_distributed else tensor for tensor in others]  # (N, D)
    anchor_to_sets = gram_volume(anchor[local], [tensor[columns] for tensor in all_others])  # (P, V)
    sets_to_anchor = gram_volume(all_anchor[columns], [tensor[local] for tensor in others]).T  # (P, V)
    total = F.cross_entropy(-logit_scale * anchor_to_sets, targets, reduction="sum")
    total = total + F.cross_entropy(-logit_scale * sets_to_anchor, targets, reduction="sum")
    return exact_global_value(total / (2 * num_valid), use_distributed)


def modality_groups(masks: Mapping[str, Tensor], distributed: bool) -> list[tuple[tuple[str, ...], Tensor, int]]:
    """Rows grouped by the exact set of modalities present, from the global batch (same groups on every process).

    Returns:
        (modality names, local (B,) row mask, global row count) per group, largest sets first.
    """
    names = list(masks)
    presence = torch.stack([masks[name].bool() for name in names], dim=1)  # (B, M)
    use_distributed = distributed and is_distributed()
    all_presence = all_gather_no_grad(presence) if use_distributed else presence  # (N, M)
    groups = []
    for pattern in sorted({tuple(row) for row in all_presence.tolist()}, key=lambda row: (-sum(row), row)):
        pattern_tensor = torch.tensor(pattern, dtype=torch.bool, device=presence.device)
        local_mask = (presence == pattern_tensor).all(dim=1)  # (B,)
        count = int((all_presence == pattern_tensor.to(all_presence.device)).all(dim=1).sum())
        groups.append((tuple(name for name, present in zip(names, pattern, strict=True) if present), local_mask, count))
    return groups


@dataclass
class SymileLossConfig(LossConfig):
    """Options of ``symile``.

    Attributes:
        modalities: which modalities take part (default: every modality in the batch).
        distributed: global candidates under torch.distributed.
    """

    modalities: list[str] = field(default_factory=list)
    distributed: bool = True


@dataclass
class GramLossConfig(SymileLossConfig):
    """Options of ``gram`` (plus those of SymileLossConfig).

    Attributes:
        anchor: the anchor modality (the paper: text); default the first modality of the batch.
    """

    anchor: str | None = None


class _GroupedLoss(nn.Module):
    """A tuple loss applied to each group of rows with the same modalities (see the module docstring)."""

    name: ClassVar[str] = ""
    config: SymileLossConfig

    def __init__(self, config: SymileLossConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else self.config_class()

    def group_loss(
        self, names: tuple[str, ...], features: Mapping[str, Tensor], logit_scale: Tensor, mask: Tensor
    ) -> Tensor | None:
        raise NotImplementedError

    def forward(
        self,
        features: Mapping[str, Tensor],
        logit_scale: Tensor | None = None,
        masks: Mapping[str, Tensor] | None = None,
        **unused: Any,
    ) -> dict[str, Tensor]:
        logit_scale = require_logit_scale(self.name, logit_scale)
        names = list(self.config.modalities) or list(features)
        missing = [name for name in names if name not in features]
        if missing or len(names) < 2:
            raise ValueError(f"{self.name} loss needs at least two of its modalities; missing {missing}, got {names}")
        present = presence_masks(features, masks, names)
        weighted, counted = [], 0
        metrics: dict[str, Tensor] = {}
        for group, row_mask, count in modality_groups(present, self.config.distributed):
            value = self.group_loss(group, features, logit_scale, row_mask) if count else None
            if value is None:
                continue
            weighted.append(value * count)
            counted += count
            metrics[f"{self.name}/{'+'.join(group)}"] = value.detach()
        if weighted:
            total = torch.stack(weighted).sum() / counted
        else:
            total = zero_loss_connected_to(*(features[name] for name in names), logit_scale)
        return {f"{self.name}_loss": total, **metrics}


@register_loss("symile")
class SymileLoss(_GroupedLoss):
    """Symile over every group of rows with >= 2 modalities (see ``symile_loss``). Config: ``loss: {symile: 1.0}``."""

    config_class: ClassVar[type[SymileLossConfig]] = SymileLossConfig

    def group_loss(
        self, names: tuple[str, ...], features: Mapping[str, Tensor], logit_scale: Tensor, mask: Tensor
    ) -> Tensor | None:
        if len(names) < 2:
            return None
        return symile_loss([features[name] for name in names], logit_scale, mask, self.config.distributed)


@register_loss("gram")
class GramLoss(_GroupedLoss):
    """GRAM over every group of rows with the anchor and >= 1 other modality (see ``gram_loss``).

    Config: ``loss: {gram: {weight: 1.0, anchor: report}}``.
    """

    config_class: ClassVar[type[GramLossConfig]] = GramLossConfig
    config: GramLossConfig

    def forward(self, features: Mapping[str, Tensor], **outputs: Any) -> dict[str, Tensor]:
        anchor = self.config.anchor
        if anchor is not None and anchor not in features:
            raise ValueError(f"gram loss anchor modality {anchor!r} is not in the model outputs ({list(features)})")
        return super().forward(features, **outputs)

    def group_loss(
        self, names: tuple[str, ...], features: Mapping[str, Tensor], logit_scale: Tensor, mask: Tensor
    ) -> Tensor | None:
        anchor = self.config.anchor or (list(self.config.modalities) or list(features))[0]
        if anchor not in names or len(names) < 2:
            return None
        others = [features[name] for name in names if name != anchor]
        return gram_loss(features[anchor], others, logit_scale, mask, self.config.distributed)
