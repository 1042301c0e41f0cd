"""AdamW with CLIP's parameter grouping and a linear-warmup + cosine learning-rate schedule.

Only parameters that require gradients are optimised: frozen towers and the base weights under LoRA adapters
(``medclip.nn.tuning``) get neither updates nor AdamW moments; ``parameter_counts`` reports the split per tower.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from .config import TrainConfig


def parameter_groups(modules: Iterable[nn.Module], weight_decay: float) -> list[dict]:
    """Split parameters into decayed (weight matrices) and not decayed (biases, norms, embeddings' gains, scalars).

    CLIP and open_clip exclude gains, biases and the logit scale from weight decay: decaying a temperature or a norm
    gain towards zero only fights the loss.
    """
    decay, no_decay, seen = [], [], set()
    for module in modules:
        for name, parameter in module.named_parameters():
            if not parameter.requires_grad or id(parameter) in seen:
                continue
            seen.add(id(parameter))
            is_scalar_or_vector = parameter.ndim < 2
            if is_scalar_or_vector or "norm" in name or "logit" in name or name.endswith(".bias"):
                no_decay.append(parameter)
            else:
                decay.append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def tower_of(name: str) -> str:
    """The tower a parameter belongs to: the modality of ``encoders.<m>.*`` / ``heads.<m>.*``, else its first name."""
    parts = name.split(".")
    return parts[1] if parts[0] in ("encoders", "heads") and len(parts) > 2 else parts[0]


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable and frozen parameter counts per tower: ``{"parameters/<tower>/trainable": n, ".../frozen": m}``.

    A tower is a modality's encoder with its projection head; the logit scale counts on its own.
    """
    counts: dict[str, int] = {}
    for name, parameter in getattr(model, "module", model).named_parameters():
        tower = tower_of(name)
        for kind in ("trainable", "frozen"):
            counts.setdefault(f"parameters/{tower}/{kind}", 0)
        counts[f"parameters/{tower}/{'trainable' if parameter.requires_grad else 'frozen'}"] += parameter.numel()
    return counts


def describe_counts(counts: dict[str, int]) -> str:
    """``report 0 / 1,203,456, ct 5,300,000 / 0, ...`` from ``parameter_counts``."""
    towers = dict.fromkeys(key.split("/")[1] for key in counts)
    return ", ".join(
        f"{tower} {counts[f'parameters/{tower}/trainable']:,} / {counts[f'parameters/{tower}/frozen']:,}"
        for tower in towers
    )


def build_optimizer(modules: Iterable[nn.Module], config: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        parameter_groups(modules, config.weight_decay), lr=config.lr, betas=tuple(config.betas), eps=1e-6
    )


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear from ~0 to 1 over warmup, then cosine from 1 to ``min_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, config.warmup_steps, config.steps, config.min_lr_ratio)
    )
