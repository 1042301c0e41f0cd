"""Where tensors run: choosing a device and moving (nested) batches onto it."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor


def resolve_device(name: str) -> str:
    """ "auto" -> the first GPU when there is one, else the CPU; anything else is passed to torch as is."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def move_to_device(value: Any, device: torch.device | str) -> Any:
    """Move tensors (also inside dicts and lists) to ``device``; other values pass through."""
    if isinstance(value, Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {key: move_to_device(item, device) for key, item in value.items()}
    if isinstance(value, list):
        return [move_to_device(item, device) for item in value]
    return value


def outputs_to_float32(outputs: dict[str, Any]) -> dict[str, Any]:
    """Model outputs with every floating tensor (also one level inside dicts) in float32.

    Losses run in fp32 even when the encoders ran under bf16 autocast: log-sum-exp needs the precision.
    """
    converted: dict[str, Any] = {}
    for key, value in outputs.items():
        if isinstance(value, dict):
            converted[key] = {k: _float32(v) for k, v in value.items()}
        else:
            converted[key] = _float32(value)
    return converted


def _float32(value: Any) -> Any:
    return value.float() if isinstance(value, Tensor) and value.is_floating_point() else value


def autocast_context(precision: str, device: torch.device):
    """bf16 autocast where asked for (or, with "auto", on GPUs that support it); fp32 otherwise.

    On CPU "auto" stays fp32: CPU bf16 autocast is slower than fp32 on most CPUs and changes numerics for no gain.
    """
    if precision not in {"auto", "fp32", "bf16"}:
        raise ValueError(f"train.precision must be auto, fp32 or bf16, not {precision!r}")
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())
    if not use_bf16:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
