"""Freezing an encoder, whole or by module prefix: fixed weights, and eval mode while the rest of the model trains.

A frozen module gets ``requires_grad=False`` on its parameters (the optimizer skips them and autograd keeps no
activations for them) and is kept in eval mode: ``model.train()`` leaves it in eval, so its dropout is off and its
BatchNorm layers use, and never update, their running statistics. Without that, a "frozen" tower with BatchNorm would
still drift (its statistics follow the new data) and a frozen tower with dropout would feed noisy targets to the loss.
"""

from __future__ import annotations

import types
from collections.abc import Sequence

from torch import nn

from ..config import ConfigError
from .lora import candidate_patterns, is_adapter_parameter

_KEPT_IN_EVAL = "_medclip_kept_in_eval"


def _train_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    """``train`` of a frozen module: whatever mode is asked for, the module and its children go to eval."""
    return type(self).train(self, False)


def keep_in_eval(module: nn.Module) -> None:
    """Put ``module`` in eval mode and keep it there when its parent's ``train()`` is called."""
    module.train = types.MethodType(_train_in_eval, module)  # an instance attribute: the class is left alone
    setattr(module, _KEPT_IN_EVAL, True)
    module.train(False)


def is_kept_in_eval(module: nn.Module) -> bool:
    return bool(getattr(module, _KEPT_IN_EVAL, False))


def _prefix_hits(names: Sequence[str], prefix: str) -> list[str]:
    return [name for name in names if name == prefix or name.startswith(prefix + ".")]


def check_freeze(encoder: nn.Module, spec: bool | Sequence[str], modality: str) -> None:
    """Refuse a ``freeze`` option that freezes nothing or names what the encoder does not have (nothing is changed).

    Raises:
        ConfigError: an empty list, or a prefix matching no module or parameter (naming it and the candidates).
    """
    if isinstance(spec, bool):
        return
    if len(spec) == 0:
        raise ConfigError(
            f"modalities.{modality}.freeze: an empty list freezes nothing; use false, true (the whole encoder) or "
            "module-name prefixes"
        )
    modules = [name for name, _ in encoder.named_modules() if name]
    parameters = [name for name, _ in encoder.named_parameters()]
    for prefix in spec:
        if (
            not isinstance(prefix, str)
            or not prefix
            or not (_prefix_hits(modules, prefix) or _prefix_hits(parameters, prefix))
        ):
            top = [name for name, _ in encoder.named_children()] + [
                name for name, _ in encoder.named_parameters(recurse=False)
            ]
            deeper = [name for name in modules if name.count(".") == 1]
            raise ConfigError(
                f"modalities.{modality}.freeze: {prefix!r} is not a module or parameter of the "
                f"{type(encoder).__name__} encoder. Top-level names: {', '.join(top) or 'none'}; one level down: "
                f"{', '.join(candidate_patterns(deeper)) or 'none'}"
            )


def freeze(encoder: nn.Module, spec: bool | Sequence[str], modality: str) -> list[str]:
    """Freeze the whole ``encoder`` (``spec`` true) or the modules / parameters under each prefix of ``spec``.

    Returns:
        The frozen prefixes ("" for the whole encoder).

    Raises:
        ConfigError: as ``check_freeze`` (checked before anything is frozen).
    """
    check_freeze(encoder, spec, modality)
    if spec is False:
        return []
    if spec is True:
        encoder.requires_grad_(False)
        keep_in_eval(encoder)
        return [""]
    modules = dict(encoder.named_modules())
    for name, parameter in encoder.named_parameters():
        if any(name == prefix or name.startswith(prefix + ".") for prefix in spec):
            parameter.requires_grad_(False)
    for prefix in spec:
        for name in _prefix_hits([name for name in modules if name], prefix):
            keep_in_eval(modules[name])
    return list(spec)


def freeze_all_but_adapters(encoder: nn.Module) -> None:
    """Freeze every parameter of ``encoder`` except LoRA adapters' (PEFT's ``mark_only_lora_as_trainable``)."""
    for name, parameter in encoder.named_parameters():
        parameter.requires_grad_(is_adapter_parameter(name))
