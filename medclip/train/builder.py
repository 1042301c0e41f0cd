"""Build modality plugins and the model from an ``ExperimentConfig`` (shared by training and ``load_model``)."""

from __future__ import annotations

from collections.abc import Mapping

from ..experiment import ExperimentConfig
from ..model import ContrastiveModel, ProjectionHead
from ..types import Modality


def build_modalities(config: ExperimentConfig) -> dict[str, Modality]:
    """One configured plugin instance per modality named in ``config.modalities`` (validating their options)."""
    from .. import get_modality

    if len(config.modalities) < 1:
        raise ValueError("config.modalities names no modality; add e.g. `modalities: {report: {}, expression: {}}`")
    return {name: get_modality(name, dict(options or {})) for name, options in config.modalities.items()}


def build_model(config: ExperimentConfig, modalities: Mapping[str, Modality]) -> ContrastiveModel:
    """Encoders from each plugin + a projection head each onto ``config.model.embed_dim``."""
    encoders = {name: plugin.build_encoder(plugin.config) for name, plugin in modalities.items()}
    heads = {
        name: ProjectionHead(encoder.output_dim, config.model.embed_dim, config.model.head_hidden_dim)
        for name, encoder in encoders.items()
    }
    return ContrastiveModel(
        encoders, heads, init_temperature=config.model.init_temperature, max_logit_scale=config.model.max_logit_scale
    )
