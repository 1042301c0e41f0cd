"""Where tensors run: choosing a device and moving (nested) batches onto it."""

from __future__ import annotations

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
