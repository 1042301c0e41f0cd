"""Which weights of an encoder train: LoRA adapters, then freezing, from the modality's ``lora`` and ``freeze`` options.

The factory calls ``apply_tuning`` on each encoder once it holds its initial weights (random, a Hugging Face model's,
or warm-start weights), because LoRA adapts and freezing locks those weights. ``medclip.load_model`` goes through the
same factory, so a checkpoint's model is rebuilt with the same adapters before its weights are loaded.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..config import ConfigError
from .freeze import check_freeze, freeze, freeze_all_but_adapters
from .lora import inject_lora


def apply_tuning(encoder: nn.Module, config: Any, modality: str) -> nn.Module:
    """Add LoRA adapters (every other encoder weight frozen), then freeze what ``freeze`` names; in place.

    Every option is checked before the encoder is changed, so a bad target or prefix leaves it untouched.

    Args:
        encoder: the modality's encoder with its initial weights.
        config: the plugin's config (``ModalityConfig``: ``lora``, ``freeze``; plugins without them are left alone).
        modality: the modality name, for error messages.

    Raises:
        ConfigError: ``freeze: true`` with ``lora`` (nothing would train), a LoRA target or a freeze prefix that
            matches nothing.
    """
    lora = getattr(config, "lora", None)
    frozen = getattr(config, "freeze", False)
    if lora is not None and frozen is True:
        raise ConfigError(
            f"modalities.{modality}: freeze: true and lora together leave nothing to train in the encoder (lora "
            "already freezes every weight but its adapters); drop one, or freeze a list of prefixes"
        )
    check_freeze(encoder, frozen, modality)
    if lora is not None:
        inject_lora(encoder, lora, modality)
        freeze_all_but_adapters(encoder)
    if frozen:
        freeze(encoder, frozen, modality)
    return encoder
