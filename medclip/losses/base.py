"""The loss seam: the loss registry, the shared pairwise-contrastive module and ``CombinedLoss``.

A loss is a pure function (``clip_loss``, ``siglip_loss``) plus a thin ``nn.Module`` owning its learnable parameters
and a dataclass ``config_class``. The module is called with the output dict of ``ContrastiveModel.forward``
(``features``, ``tokens``, ``token_masks``, ``masks``, ``labels``, ``logit_scale``) as keyword arguments, takes what it
needs and ignores the rest, and returns a dict: keys ending in ``_loss`` are losses, the other keys are logged metrics.

The experiment config names losses and their options (``loss: {clip: 1.0}`` or
``loss: {siglip: {weight: 1.0, init_logit_bias: -10}}``); ``build_loss`` validates that section against each loss's
``config_class`` and returns a ``CombinedLoss`` whose ``"loss"`` entry is the weighted sum the trainer backpropagates.
Built-in losses register in code when ``medclip.losses`` is imported; third-party ones register with
``@register_loss`` or through the ``medclip.losses`` entry-point group.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..config import ConfigError, build
from ..distributed import all_reduce_sum_no_grad
from ..registry import Registry, RegistryError

LOSSES: Registry[type[nn.Module]] = Registry("loss", "medclip.losses")


def register_loss(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator registering a loss module under ``name`` (the key used in the config's ``loss`` section).

    The class must be an ``nn.Module`` with a dataclass ``config_class`` (with a ``weight`` field) and an
    ``__init__(config)``; its ``forward(**model_outputs)`` returns a dict of ``*_loss`` entries and metrics.
    """

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"loss {name!r}: register_loss decorates nn.Module classes, got {cls!r}")
        config_class = getattr(cls, "config_class", None)
        if not (isinstance(config_class, type) and dataclasses.is_dataclass(config_class)):
            raise TypeError(f"loss {name!r}: {cls.__name__}.config_class must be a dataclass")
        cls.name = name
        return LOSSES.register(name, cls)

    return add


def list_losses(pattern: str | None = None, consumes: str | None = None) -> list[str]:
    """Names of every registered loss (built-in and third-party), or those matching ``pattern`` (``"soft*"``).

    ``consumes``: only losses of that kind: "embeddings" (contrastive losses on ``ContrastiveModel`` outputs) or
    "logits" (supervised losses on a classification head's outputs).
    """
    names = LOSSES.names(pattern)
    if consumes is None:
        return names
    return [name for name in names if getattr(LOSSES.get(name), "consumes", "embeddings") == consumes]


@dataclass
class LossConfig:
    """Options every loss understands; each loss subclasses this with its own fields.

    Attributes:
        weight: multiplier of this loss's ``*_loss`` entries in the total ``"loss"``.
    """

    weight: float = 1.0  # relative weight when several losses are combined

    def __post_init__(self) -> None:
        if not math.isfinite(self.weight) or self.weight < 0:
            raise ConfigError(f"loss weight must be a finite number >= 0, got {self.weight!r}")


@dataclass
class PairwiseLossConfig(LossConfig):
    """Options of losses that contrast pairs of modalities (CLIP, SigLIP).

    Attributes:
        pairs: "all" = every pair of modalities in the batch; "anchor" = only the pairs with ``anchor``. Left empty,
            it follows ``anchor``: "anchor" when one is named, else "all".
        anchor: the modality every pair must contain (e.g. "report" to align every modality to the report).
        distributed: use the negatives of every process (global batch) under torch.distributed, as CLIP does.
    """

    pairs: str | None = None
    anchor: str | None = None
    distributed: bool = True  # global negatives: the loss then equals the single-process loss on the global batch

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pairs is None:
            self.pairs = "anchor" if self.anchor is not None else "all"
        if self.pairs not in ("all", "anchor"):
            raise ConfigError(f"loss pairs must be 'all' or 'anchor', got {self.pairs!r}")
        if self.pairs == "anchor" and not self.anchor:
            raise ConfigError("loss pairs 'anchor' needs the anchor modality: set anchor: <modality name>")
        if self.pairs == "all" and self.anchor is not None:
            raise ConfigError(f"loss pairs 'all' contradicts anchor {self.anchor!r}: drop one of them")


def zero_loss_connected_to(*tensors: Tensor) -> Tensor:
    """A scalar zero whose graph reaches every tensor given, with zero gradients.

    Under DistributedDataParallel every parameter must receive a gradient in every step, or ranks wait for each
    other forever; a batch with nothing to contrast therefore returns this instead of a constant. Summing an empty
    slice (rather than multiplying by zero) keeps a NaN or inf in a tensor from turning the zero into NaN.
    """
    if not tensors:
        raise ValueError("zero_loss_connected_to needs at least one tensor")
    total = tensors[0].reshape(-1)[:0].sum()
    for tensor in tensors[1:]:
        total = total + tensor.reshape(-1)[:0].sum().to(total.dtype)
    return total


def top1_retrieval_accuracy(features_a: Tensor, features_b: Tensor, mask: Tensor) -> Tensor:
    """Mean of a->b and b->a top-1 retrieval accuracy among this process's valid rows (a logged metric).

    Returns:
        A detached scalar in [0, 1]; NaN when this process has no valid row (so every rank logs the same keys).
    """
    with torch.no_grad():
        rows = torch.nonzero(mask, as_tuple=False).flatten()
        if rows.numel() == 0:
            return features_a.new_full((), float("nan"))
        similarity = features_a[rows] @ features_b[rows].T  # (P, P)
        truth = torch.arange(rows.numel(), device=similarity.device)
        a_to_b = (similarity.argmax(dim=1) == truth).float().mean()
        b_to_a = (similarity.argmax(dim=0) == truth).float().mean()
        return ((a_to_b + b_to_a) / 2).to(features_a.dtype)


def modality_pairs(names: list[str], anchor: str | None) -> list[tuple[str, str]]:
    """Every unordered pair of ``names`` in their order, or only the pairs that contain ``anchor``."""
    if anchor is None:
        return list(itertools.combinations(names, 2))
    if anchor not in names:
        raise ValueError(f"loss anchor modality {anchor!r} is not in the model outputs (present: {names})")
    return [(anchor, other) for other in names if other != anchor]


def require_logit_scale(loss_name: str, logit_scale: Tensor | None) -> Tensor:
    """The logit scale a contrastive loss was called with; a clear error when the caller did not pass one."""
    if logit_scale is None:
        raise ValueError(f"{loss_name} loss needs logit_scale (ContrastiveModel.forward provides it)")
    return logit_scale


def presence_masks(
    features: Mapping[str, Tensor], masks: Mapping[str, Tensor] | None, names: list[str]
) -> dict[str, Tensor]:
    """Each named modality's (B,) bool presence mask: the given one (shape-checked) or all True when none is given.

    Raises:
        ValueError: a mask whose shape is not (B,) for its modality's (B, D) features.
    """
    masks = masks or {}
    valid: dict[str, Tensor] = {}
    for name in names:
        size = features[name].shape[0]
        mask = masks.get(name)
        if mask is None:
            mask = torch.ones(size, dtype=torch.bool, device=features[name].device)
        if mask.shape != (size,):
            raise ValueError(f"mask of {name!r} has shape {tuple(mask.shape)}, expected ({size},)")
        valid[name] = mask.bool()
    return valid


@dataclass(frozen=True)
class Pair:
    """One pair of modalities being contrasted, and the model outputs a pair loss may read beyond its two features.

    Passed to ``pair_loss`` as an argument (never kept on the module), so a loss module holds no per-batch state.

    Attributes:
        names: the two modality names, in the order of the feature arguments.
        outputs: every model output the loss was called with (``features``, ``tokens``, ``token_masks``, ``labels``,
            ``patient_ids``, ``frozen_features``, ...).
    """

    names: tuple[str, str]
    outputs: Mapping[str, Any]

    def tokens(self) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """(tokens_a (B, Ta, D), tokens_b (B, Tb, D), token_mask_a (B, Ta) | None, token_mask_b (B, Tb) | None)."""
        a, b = self.names
        tokens, token_masks = self.outputs.get("tokens") or {}, self.outputs.get("token_masks") or {}
        return tokens[a], tokens[b], token_masks.get(a), token_masks.get(b)

    def labels(self, loss_name: str) -> Tensor:
        """(B, K) label vectors with NaN for unknown; a clear error when the batch has none."""
        labels = self.outputs.get("labels")
        if labels is None:
            raise ValueError(f"{loss_name} loss needs label vectors: add label:<finding> columns to the manifest")
        return labels


class PairwiseContrastiveLoss(nn.Module):
    """Shared module for losses contrasting pairs of modalities; subclasses implement ``pair_loss``.

    With N modalities the loss is the mean of the pair losses over the selected pairs (``pairs``/``anchor``) that
    have at least one row where both modalities are present on any rank (so every rank averages the same pairs).
    Outputs: ``f"{name}_loss"``, and per pair ``f"{name}/{a}-{b}"`` (the pair's loss value) and
    ``f"{name}/{a}-{b}/top1"`` (top-1 retrieval accuracy on this process's batch). When no pair has a valid row,
    the loss is a zero connected to every feature, the logit scale and this module's parameters, so that backward
    still reaches every parameter and DistributedDataParallel does not hang.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[PairwiseLossConfig]] = PairwiseLossConfig

    def __init__(self, config: PairwiseLossConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else self.config_class()

    def pair_loss(
        self, features_a: Tensor, features_b: Tensor, logit_scale: Tensor, mask: Tensor, pair: Pair
    ) -> Tensor:
        """The loss of one pair of modalities: (B, D), (B, D), scalar, (B,) bool, the ``Pair`` -> scalar."""
        raise NotImplementedError

    def contrasted_modalities(self, features: Mapping[str, Tensor], outputs: Mapping[str, Any]) -> list[str]:
        """The modalities this loss pairs up (all with features; token losses keep those with tokens)."""
        return list(features)

    def extra_metrics(self) -> dict[str, Tensor]:
        """Metrics of the module's own parameters (e.g. a learned bias), logged with every step."""
        return {}

    def forward(
        self,
        features: Mapping[str, Tensor],
        logit_scale: Tensor | None = None,
        masks: Mapping[str, Tensor] | None = None,
        **outputs: Any,
    ) -> dict[str, Tensor]:
        logit_scale = require_logit_scale(self.name, logit_scale)
        names = self.contrasted_modalities(features, outputs)
        if len(names) < 2:
            raise ValueError(f"{self.name} loss needs at least two modalities in the batch, got {names}")
        valid = presence_masks(features, masks, names)
        pairs = modality_pairs(names, self.config.anchor)
        pair_masks = [valid[a] & valid[b] for a, b in pairs]
        local_counts = torch.stack([mask.sum() for mask in pair_masks])  # (P,)
        global_counts = all_reduce_sum_no_grad(local_counts) if self.config.distributed else local_counts
        everything = {**outputs, "features": features, "masks": masks}
        values: list[Tensor] = []
        metrics: dict[str, Tensor] = {}
        for (a, b), mask, count in zip(pairs, pair_masks, global_counts.tolist(), strict=True):
            if count == 0:  # nothing to contrast anywhere: every rank skips this pair alike
                continue
            value = self.pair_loss(features[a], features[b], logit_scale, mask, Pair((a, b), everything))
            values.append(value)
            metrics[f"{self.name}/{a}-{b}"] = value.detach()
            metrics[f"{self.name}/{a}-{b}/top1"] = top1_retrieval_accuracy(features[a], features[b], mask)
        if values:
            total = torch.stack(values).mean()
        else:
            total = zero_loss_connected_to(*(features[name] for name in names), logit_scale, *self.parameters())
        return {f"{self.name}_loss": total, **metrics, **self.extra_metrics()}


def _build_config(name: str, cls: type[nn.Module], value: Any) -> LossConfig:
    """One entry of the ``loss`` section -> the loss's config: a bare number is its weight."""
    path = f"loss.{name}"
    config_class = getattr(cls, "config_class", None)
    if not (isinstance(config_class, type) and dataclasses.is_dataclass(config_class)):
        raise ConfigError(f"{path}: loss plugin {cls!r} has no dataclass config_class")
    if value is None:
        data: Mapping[str, Any] = {}
    elif isinstance(value, bool):
        raise ConfigError(f"{path}: expected a weight or a mapping of options, got {value!r}")
    elif isinstance(value, int | float):
        data = {"weight": value}
    elif isinstance(value, Mapping):
        data = value
    else:
        raise ConfigError(f"{path}: expected a weight or a mapping of options, got {type(value).__name__}")
    try:
        return build(config_class, data, _path=path)
    except ConfigError as error:
        message = str(error)
        raise ConfigError(message if path in message else f"{path}: {message}") from error


class CombinedLoss(nn.Module):
    """The weighted sum of the configured losses; what the trainer calls on the model's outputs.

    Args:
        spec: loss name -> weight, or loss name -> mapping of that loss's options (``weight`` included); ``None``
            means the loss's defaults. Validated against each loss's ``config_class``.

    Raises:
        ConfigError: for an empty spec, an unknown loss name or an unknown/invalid option, naming the dotted key and
            the closest valid name.
    """

    def __init__(self, spec: Mapping[str, float | Mapping[str, Any] | None]) -> None:
        super().__init__()
        if not isinstance(spec, Mapping) or not spec:
            raise ConfigError("loss: name at least one loss with its weight, e.g. loss: {clip: 1.0}")
        modules: dict[str, nn.Module] = {}
        self.weights: dict[str, float] = {}
        for name, value in spec.items():
            try:
                cls = LOSSES.get(str(name))
            except RegistryError as error:
                known = LOSSES.names()
                close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    f"unknown loss 'loss.{name}'{hint} Available losses: {', '.join(known) or 'none'}"
                ) from error
            config = _build_config(str(name), cls, value)
            modules[str(name)] = cls(config)
            self.weights[str(name)] = float(config.weight)
        self.losses = nn.ModuleDict(modules)

    def forward(self, **model_outputs: Any) -> dict[str, Tensor]:
        """Call every loss on the model outputs; return all their entries plus ``"loss"``, the weighted total."""
        result: dict[str, Tensor] = {}
        total: Tensor | None = None
        for name, module in self.losses.items():
            entries = module(**model_outputs)
            for key, value in entries.items():
                if key == "loss" or key in result:
                    raise ValueError(f"loss {name!r} returns the entry {key!r}, which another loss already uses")
                result[key] = value
                if not key.endswith("_loss"):
                    continue
                if not isinstance(value, Tensor) or value.dim() != 0:
                    raise ValueError(f"loss {name!r}: entry {key!r} must be a scalar tensor")
                weighted = self.weights[name] * value
                total = weighted if total is None else total + weighted
        if total is None:
            raise ValueError(f"none of the losses {list(self.losses)} returned an entry ending in '_loss'")
        result["loss"] = total
        return result


def build_loss(spec: Mapping[str, float | Mapping[str, Any] | None]) -> CombinedLoss:
    """The ``CombinedLoss`` of an experiment config's ``loss`` section (see ``CombinedLoss``)."""
    return CombinedLoss(spec)
