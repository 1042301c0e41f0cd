"""Building a model and the preprocessing that belongs to it from a model description.

A model description (``ModelSpec``) names the modalities with their options and the shared embedding settings. It is
what a pretraining config's ``modalities`` and ``model`` sections hold, what a checkpoint's model card stores, and all
``create_model`` needs (open_clip's ``create_model_and_transforms`` idea): training, loading and export build models
the same way, through this one module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import build
from .model import ContrastiveModel, ProjectionHead
from .nn.tuning import apply_tuning
from .preprocess import Preprocess
from .types import Modality


@dataclass
class ModelConfig:
    """The shared embedding space and the projection heads onto it."""

    embed_dim: int = 128  # shared embedding size; 128-512 is the usual CLIP range
    head_hidden_dim: int = 0  # 0 = linear projection head (CLIP); >0 = two-layer MLP head (ConVIRT, MedCLIP)
    init_temperature: float = 0.07  # CLIP's initial temperature
    max_logit_scale: float = 100.0  # CLIP's clamp on the logit scale, for stability


@dataclass
class ModelSpec:
    """What a model is: its modalities (name -> that plugin's options) and the embedding settings."""

    modalities: dict[str, dict[str, Any]] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)


def build_modalities(modalities: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Modality]:
    """One configured plugin instance per modality (each validates its own options)."""
    from . import get_modality

    if len(modalities) < 1:
        raise ValueError("no modality is named; add e.g. `modalities: {report: {}, expression: {}}`")
    return {name: get_modality(name, dict(options or {})) for name, options in modalities.items()}


def build_model(
    model_config: ModelConfig, modalities: Mapping[str, Modality], apply_weights: bool = False, tune: bool = True
) -> ContrastiveModel:
    """Encoders from each plugin + a projection head each onto ``model_config.embed_dim``.

    Args:
        model_config: the embedding settings.
        modalities: the configured plugins.
        apply_weights: a NEW model for training: each modality's ``weights:`` file fills its encoder (checked
            strictly, all or nothing; see ``medclip.weights.warm_start``). Loading a checkpoint leaves it False: the
            checkpoint's weights win and the file need not exist where the checkpoint is loaded.
        tune: apply the fine-tuning options (``freeze``, ``lora``) now. A caller that loads more weights into the
            new model first (``train.init_from``) passes False and calls ``tune_model`` after loading them.

    The model carries ``preprocess``: the evaluation-time preprocessing of the same plugins, and ``warm_start``:
    modality -> what its encoder was loaded from (empty when nothing was).
    """
    encoders = {name: plugin.build_encoder() for name, plugin in modalities.items()}
    warm_start = {}
    if apply_weights:
        from .weights.warm_start import apply_modality_weights  # lazy: medclip.weights imports the checkpoint module

        warm_start = apply_modality_weights(encoders, modalities)
    heads = {
        name: ProjectionHead(encoder.output_dim, model_config.embed_dim, model_config.head_hidden_dim)
        for name, encoder in encoders.items()
    }
    model = ContrastiveModel(
        encoders,
        heads,
        init_temperature=model_config.init_temperature,
        max_logit_scale=model_config.max_logit_scale,
    )
    model.preprocess = Preprocess(modalities)
    model.warm_start = warm_start
    if tune:
        tune_model(model, modalities)
    return model


def tune_model(model: ContrastiveModel, modalities: Mapping[str, Modality]) -> ContrastiveModel:
    """Apply each modality's fine-tuning options (``freeze``, ``lora``; ``medclip.nn.tuning``) to its encoder.

    They act on the encoder's initial weights: whatever loads weights into a new encoder comes first (LoRA adapts a
    pretrained tower; its adapters start at zero, so the tuned model computes what the loaded one did).
    """
    for name, encoder in model.encoders.items():
        apply_tuning(encoder, modalities[name].config, name)
    return model


def model_spec(spec: ModelSpec | Mapping[str, Any]) -> ModelSpec:
    """A ``ModelSpec`` from itself or from plain data (``{"modalities": ..., "model": ...}``), validated."""
    return spec if isinstance(spec, ModelSpec) else build(ModelSpec, spec, _path="model description")


def create_model(
    modalities: Mapping[str, Mapping[str, Any] | None] | ModelSpec,
    model: ModelConfig | Mapping[str, Any] | None = None,
    device: str = "cpu",
) -> ContrastiveModel:
    """A new (untrained) model with its preprocessing, from modality options and embedding settings.

    Args:
        modalities: modality name -> that plugin's options (``{"ct": {"size": [64, 64, 64]}, "report": {}}``), or a
            whole ``ModelSpec``.
        model: the embedding settings (``ModelConfig`` or its fields as a mapping); defaults when None.
        device: where the weights go.

    Returns:
        The ``ContrastiveModel``; ``model.preprocess`` prepares inputs for it. Plugins that learn preprocessing from
        data (a tokenizer, a gene vocabulary) must be fitted before their transforms are used: pretraining does it.
        Each modality's ``weights:`` file (if any) fills its encoder; ``model.warm_start`` says what was loaded.
    """
    if isinstance(modalities, ModelSpec):
        spec = modalities
    else:
        spec = model_spec({"modalities": {name: dict(options or {}) for name, options in modalities.items()}})
        if model is not None:
            spec.model = model if isinstance(model, ModelConfig) else build(ModelConfig, model, _path="model")
    built = build_model(spec.model, build_modalities(spec.modalities), apply_weights=True)
    return built.to(device)
