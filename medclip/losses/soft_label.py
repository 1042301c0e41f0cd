"""Soft-label contrastive losses: label-vector targets, CWCL continuous weights, multiple positives.

CLIP treats every other sample of the batch as a negative. In clinical data many of them are not: two chest CTs with
the same findings, or two studies of the same patient, match their reports almost as well as their own. These losses
move target mass onto such samples instead of pushing them apart.

- ``soft_label`` follows MedCLIP (Wang et al., EMNLP 2022, "semantic matching loss") and Cardiac-CLIP's pathology-
  vector soft labels: targets = softmax over candidates of the cosine similarity of the label vectors / temperature.
  Deviations: (1) labels unknown for a sample (NaN) are left out of the cosine instead of being read as 0 (absent),
  and a pair without any label known for both gets no target mass; (2) the paired sample always gets the maximum
  similarity 1, so a sample without labels has CLIP's one-hot target; (3) ``temperature`` (MedCLIP: 1) is exposed.
- ``cwcl`` follows CWCL (Srinivasa et al., NeurIPS 2023): candidate j's target weight for query i is
  ``(1 + cos(e_i, e_j)) / 2`` of a fixed embedding e of the candidates' modality, normalised over the candidates.
  The paper takes e from a frozen pretrained encoder. Here e is, in order of preference, the model output
  ``frozen_features[modality]`` (a wrapper that runs a frozen or EMA encoder adds it to the outputs) or the model's
  own features, detached (no gradient flows through the weights). Detached current features are the simple robust
  option that works with every ``ContrastiveModel``; combine with ``clip`` early in training, when they are still
  random (e.g. ``loss: {clip: 1.0, cwcl: 0.5}``).
- ``multi_positive`` spreads the target uniformly over every sample of the same patient (``patient_ids``, from the
  batch's pseudonymised ``patient_id``) and/or with the identical label set (SupCon's L_out, Khosla et al. NeurIPS
  2020, across modalities); a label set that is entirely unknown matches nothing.

All three: mask-aware, exact under torch.distributed (labels, patient keys and weight embeddings are gathered with
the features), and tiled (O(B * D) memory, targets built per block) above ``tiled_above`` valid rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from torch import Tensor

from ..config import ConfigError
from .base import Pair, PairwiseContrastiveLoss, PairwiseLossConfig, register_loss
from .soft_targets import (
    ContinuousTargets,
    LabelTargets,
    PositiveSetTargets,
    SampleTargets,
    soft_target_loss,
)
from .tiled import DEFAULT_TILE_SIZE, DEFAULT_TILED_ABOVE


def soft_label_loss(
    features_a: Tensor,
    features_b: Tensor,
    logit_scale: Tensor,
    labels: Tensor,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    distributed: bool = True,
    tile_size: int = DEFAULT_TILE_SIZE,
    tiled_above: int = DEFAULT_TILED_ABOVE,
) -> Tensor:
    """MedCLIP-style semantic matching loss with label-vector soft targets.

    Args:
        features_a: (B, D) L2-normalised embeddings of one modality.
        features_b: (B, D) of the other, row i paired with row i.
        logit_scale: scalar inverse temperature of the logits.
        labels: (B, K) float label vectors, NaN = unknown.
        mask: (B,) bool, True where both modalities are present.
        temperature: of the label similarities (targets = softmax(cos / temperature)); MedCLIP uses 1.
        distributed: global candidates under torch.distributed (see ``medclip.losses.clip``).
        tile_size: block edge of the tiled path.
        tiled_above: tiled path when the global number of valid rows exceeds this.

    Returns:
        A scalar, the mean over valid rows and both directions of the soft cross-entropy.
    """
    targets = LabelTargets(labels, temperature)
    return soft_target_loss(features_a, features_b, logit_scale, targets, mask, distributed, tile_size, tiled_above)


def cwcl_loss(
    features_a: Tensor,
    features_b: Tensor,
    logit_scale: Tensor,
    mask: Tensor | None = None,
    embeddings_a: Tensor | None = None,
    embeddings_b: Tensor | None = None,
    distributed: bool = True,
    tile_size: int = DEFAULT_TILE_SIZE,
    tiled_above: int = DEFAULT_TILED_ABOVE,
) -> Tensor:
    """CWCL: targets weighted by the intra-modal similarity of fixed embeddings of the candidates' modality.

    Args:
        features_a, features_b, logit_scale, mask, distributed, tile_size, tiled_above: as ``soft_label_loss``.
        embeddings_a: (B, E) unit-norm fixed embeddings of modality a (a frozen / EMA encoder's), weighting the
            candidates of the b->a direction; default: ``features_a`` detached.
        embeddings_b: likewise for modality b (weights of the a->b direction); default: ``features_b`` detached.
    """
    fixed_a = (embeddings_a if embeddings_a is not None else features_a).detach()
    fixed_b = (embeddings_b if embeddings_b is not None else features_b).detach()
    targets = ContinuousTargets(fixed_a, fixed_b)
    return soft_target_loss(features_a, features_b, logit_scale, targets, mask, distributed, tile_size, tiled_above)


def multi_positive_loss(
    features_a: Tensor,
    features_b: Tensor,
    logit_scale: Tensor,
    patient_ids: Tensor | None = None,
    labels: Tensor | None = None,
    mask: Tensor | None = None,
    distributed: bool = True,
    tile_size: int = DEFAULT_TILE_SIZE,
    tiled_above: int = DEFAULT_TILED_ABOVE,
) -> Tensor:
    """InfoNCE whose target is uniform over every positive: the pair itself, the same patient, the same label set.

    Args:
        patient_ids: (B,) int64 patient keys (``medclip.model.patient_keys`` of the pseudonyms), or None.
        labels: (B, K) label vectors with NaN for unknown, or None; identical vectors (NaN matching NaN, at least one
            label known) are positives.
        Others: as ``soft_label_loss``.
    """
    targets = PositiveSetTargets(patient_ids, labels)
    return soft_target_loss(features_a, features_b, logit_scale, targets, mask, distributed, tile_size, tiled_above)


@dataclass
class SoftTargetLossConfig(PairwiseLossConfig):
    """Options shared by the soft-target losses (plus those of PairwiseLossConfig).

    Attributes:
        tile_size: block edge of the tiled path (memory ~ 4 * tile_size^2 floats).
        tiled_above: use the tiled O(B * D)-memory path when the global batch has more valid rows than this.
    """

    tile_size: int = DEFAULT_TILE_SIZE
    tiled_above: int = DEFAULT_TILED_ABOVE

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tile_size < 1:
            raise ConfigError(f"tile_size must be >= 1, got {self.tile_size}")
        if self.tiled_above < 0:
            raise ConfigError(f"tiled_above must be >= 0, got {self.tiled_above}")


class _SoftTargetPairLoss(PairwiseContrastiveLoss):
    """A pairwise loss whose targets come from per-sample model outputs (labels, patient ids, frozen features)."""

    config: SoftTargetLossConfig

    def sample_targets(self, pair: Pair, mask: Tensor) -> SampleTargets:
        raise NotImplementedError

    def pair_loss(
        self, features_a: Tensor, features_b: Tensor, logit_scale: Tensor, mask: Tensor, pair: Pair
    ) -> Tensor:
        return soft_target_loss(
            features_a,
            features_b,
            logit_scale,
            self.sample_targets(pair, mask),
            mask,
            self.config.distributed,
            self.config.tile_size,
            self.config.tiled_above,
        )


@dataclass
class SoftLabelLossConfig(SoftTargetLossConfig):
    """Options of ``soft_label``: those of SoftTargetLossConfig plus the label-similarity temperature.

    Attributes:
        temperature: targets = softmax(cos(label_i, label_j) / temperature); MedCLIP uses 1 (soft), 0.1 is sharper.
    """

    temperature: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")


@register_loss("soft_label")
class SoftLabelLoss(_SoftTargetPairLoss):
    """MedCLIP / Cardiac-CLIP label-vector soft targets over pairs of modalities (see ``soft_label_loss``).

    Config: ``loss: {clip: 1.0, soft_label: {weight: 1.0, temperature: 1.0}}``; needs the batch's ``labels``.
    """

    config_class: ClassVar[type[SoftLabelLossConfig]] = SoftLabelLossConfig
    config: SoftLabelLossConfig

    def sample_targets(self, pair: Pair, mask: Tensor) -> SampleTargets:
        return LabelTargets(pair.labels(self.name), self.config.temperature)


@dataclass
class CwclLossConfig(SoftTargetLossConfig):
    """Options of ``cwcl`` (see SoftTargetLossConfig); the weight embeddings are described in ``CwclLoss``."""


@register_loss("cwcl")
class CwclLoss(_SoftTargetPairLoss):
    """CWCL continuous weights (see ``cwcl_loss``).

    The weights come from ``frozen_features[modality]`` when the model outputs carry that mapping (a frozen or EMA
    encoder's unit-norm embeddings), else from the model's own features, detached.
    Config: ``loss: {clip: 1.0, cwcl: 0.5}``.
    """

    config_class: ClassVar[type[CwclLossConfig]] = CwclLossConfig
    config: CwclLossConfig

    def sample_targets(self, pair: Pair, mask: Tensor) -> SampleTargets:
        frozen = pair.outputs.get("frozen_features") or {}
        features = pair.outputs["features"]
        fixed = [frozen[name] if name in frozen else features[name] for name in pair.names]
        return ContinuousTargets(fixed[0], fixed[1])


@dataclass
class MultiPositiveLossConfig(SoftTargetLossConfig):
    """Options of ``multi_positive``.

    Attributes:
        positives: what makes two samples positives besides the pair itself: "patient" (same pseudonymised patient)
            and/or "label_set" (identical label vectors).
    """

    positives: list[str] = field(default_factory=lambda: ["patient", "label_set"])

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(set(self.positives) - {"patient", "label_set"})
        if unknown or not self.positives:
            raise ConfigError(f"positives must be a non-empty subset of ['patient', 'label_set'], got {self.positives}")


@register_loss("multi_positive")
class MultiPositiveLoss(_SoftTargetPairLoss):
    """Same-patient / same-label-set samples as positives (see ``multi_positive_loss``).

    Needs ``patient_ids`` in the model outputs (``ContrastiveModel`` derives them from the batch's ``patient_id``)
    for "patient" and ``labels`` for "label_set". Config: ``loss: {multi_positive: {positives: [patient]}}``.
    """

    config_class: ClassVar[type[MultiPositiveLossConfig]] = MultiPositiveLossConfig
    config: MultiPositiveLossConfig

    def sample_targets(self, pair: Pair, mask: Tensor) -> SampleTargets:
        patients = None
        if "patient" in self.config.positives:
            patients = pair.outputs.get("patient_ids")
            if patients is None:
                raise ValueError("multi_positive loss with positives 'patient' needs patient_ids in the model outputs")
        labels = pair.labels(self.name) if "label_set" in self.config.positives else None
        return PositiveSetTargets(patients, labels)
