"""Momentum distillation (ALBEF, Li et al., NeurIPS 2021): the EMA teacher's similarities as soft targets.

For a pair of modalities (a, b) and a query a_i, the target over the candidates b_j is
``softmax_j(s_t * <t^a_i, t^b_j>)``, where t are the teacher's unit embeddings (``teacher_features``, added to the model
outputs by ``train.ema``) and s_t the teacher's inverse temperature; the loss is the cross-entropy of the student's
``softmax_j(s * <a_i, b_j>)`` against it, in both directions, averaged over the valid rows.

ALBEF trains on ``(1 - alpha) * CE(one-hot) + alpha * CE(teacher)`` with alpha = 0.4, which is
``loss: {clip: 0.6, distill: 0.4}`` here. A noisy pair (a report describing findings its scan does not show) then
pulls less on the model: the teacher spreads its mass over the studies it finds similar instead of insisting on the
pairing.

Deviations from ALBEF: (1) the teacher runs in eval mode (no dropout), so the targets are deterministic; (2) no queue
of past teacher embeddings: the candidates are the (global) batch, as for every other medclip loss. The temperature
of the targets is by default the student's current logit scale, detached (as ALBEF's shared ``temp``), or a fixed
``temperature``. Masks, the distributed convention and the tiled path are those of ``soft_target_loss``: teacher
embeddings are gathered with the features, so under torch.distributed the targets span the global batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from ..config import ConfigError
from ..distributed import all_gather_no_grad
from .base import Pair, PairwiseContrastiveLoss, register_loss
from .soft_label import SoftTargetLossConfig
from .soft_targets import SampleTargets, soft_target_loss
from .tiled import DEFAULT_TILE_SIZE, DEFAULT_TILED_ABOVE, TargetWeights


class TeacherSimilarityWeights(TargetWeights):
    """log w_ij = s_t * <q_i, c_j>: the teacher's logits of queries ``q`` against candidates ``c`` (unit rows)."""

    def __init__(self, queries: Tensor, candidates: Tensor, scale: Tensor | float) -> None:
        self.queries, self.candidates, self.scale = queries, candidates, scale  # (P, D), (V, D)
        self.num_rows, self.num_columns = queries.shape[0], candidates.shape[0]

    def block(self, rows: slice, columns: slice) -> Tensor:
        return self.scale * (self.queries[rows] @ self.candidates[columns].T)  # (r, c)


class TeacherTargets(SampleTargets):
    """Targets from the teacher's embeddings of both modalities: queries of a against candidates of b and vice versa.

    Not ``symmetric``: the b->a targets are the a->b teacher logits transposed, which a row-wise softmax normalises
    differently.
    """

    def __init__(self, teacher_a: Tensor, teacher_b: Tensor, scale: Tensor | float) -> None:
        self.embeddings = {"a": teacher_a.detach(), "b": teacher_b.detach()}
        self.scale = scale

    def gathered(self) -> TeacherTargets:
        return TeacherTargets(
            all_gather_no_grad(self.embeddings["a"]), all_gather_no_grad(self.embeddings["b"]), self.scale
        )

    def weights(self, query: str, row_index: Tensor, column_index: Tensor) -> TargetWeights:
        other = "b" if query == "a" else "a"
        return TeacherSimilarityWeights(
            self.embeddings[query][row_index], self.embeddings[other][column_index], self.scale
        )


def distill_loss(
    features_a: Tensor,
    features_b: Tensor,
    logit_scale: Tensor,
    teacher_a: Tensor,
    teacher_b: Tensor,
    mask: Tensor | None = None,
    teacher_scale: float | None = None,
    distributed: bool = True,
    tile_size: int = DEFAULT_TILE_SIZE,
    tiled_above: int = DEFAULT_TILED_ABOVE,
) -> Tensor:
    """ALBEF momentum distillation between two modalities.

    Args:
        features_a: (B, D) the student's L2-normalised embeddings of one modality.
        features_b: (B, D) of the other, row i paired with row i.
        logit_scale: scalar inverse temperature of the student's logits.
        teacher_a: (B, E) the teacher's unit embeddings of modality a (no gradient flows into them).
        teacher_b: (B, E) of modality b.
        mask: (B,) bool, True where both modalities are present (in student and teacher alike).
        teacher_scale: inverse temperature of the teacher's logits; None = ``logit_scale``, detached.
        distributed, tile_size, tiled_above: as ``soft_label_loss``.

    Returns:
        A scalar, the mean over valid rows and both directions of the cross-entropy against the teacher's softmax.
    """
    if teacher_a.shape[0] != features_a.shape[0] or teacher_b.shape[0] != features_b.shape[0]:
        raise ValueError(
            f"teacher embeddings have {teacher_a.shape[0]} / {teacher_b.shape[0]} rows, the features "
            f"{features_a.shape[0]} / {features_b.shape[0]}"
        )
    scale = logit_scale.detach().to(features_a.dtype) if teacher_scale is None else float(teacher_scale)
    targets = TeacherTargets(teacher_a.to(features_a.dtype), teacher_b.to(features_b.dtype), scale)
    return soft_target_loss(features_a, features_b, logit_scale, targets, mask, distributed, tile_size, tiled_above)


@dataclass
class DistillLossConfig(SoftTargetLossConfig):
    """Options of ``distill`` (plus those of SoftTargetLossConfig: ``pairs``, ``anchor``, tiling).

    Attributes:
        temperature: of the teacher's logits (targets = softmax(cos / temperature)); 0 = the model's own learnable
            temperature, detached (ALBEF).
    """

    temperature: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0 (0 = the model's own), got {self.temperature}")


@register_loss("distill")
class DistillLoss(PairwiseContrastiveLoss):
    """ALBEF momentum distillation from the EMA teacher (see ``distill_loss``); needs ``train.ema``.

    Config: ``loss: {clip: 0.6, distill: 0.4}`` with ``train: {ema: {decay: 0.995}}``.
    """

    config_class: ClassVar[type[DistillLossConfig]] = DistillLossConfig
    config: DistillLossConfig
    needs_teacher: ClassVar[bool] = True  # the trainer refuses it without train.ema

    def pair_loss(
        self, features_a: Tensor, features_b: Tensor, logit_scale: Tensor, mask: Tensor, pair: Pair
    ) -> Tensor:
        teacher = pair.outputs.get("teacher_features")
        if teacher is None:
            raise ValueError(
                "distill loss needs teacher_features in the model outputs: set train.ema.decay (e.g. 0.995)"
            )
        missing = [name for name in pair.names if name not in teacher]
        if missing:
            raise ValueError(f"distill loss: the teacher has no embeddings of {missing}")
        a, b = pair.names
        return distill_loss(
            features_a,
            features_b,
            logit_scale,
            teacher[a],
            teacher[b],
            mask,
            teacher_scale=1.0 / self.config.temperature if self.config.temperature > 0 else None,
            distributed=self.config.distributed,
            tile_size=self.config.tile_size,
            tiled_above=self.config.tiled_above,
        )
