"""ECG encoders, by name (``ecg.encoder``): ``batch["ecg"]`` -> ``EncoderOutput`` with pooled vector and time tokens.

Input: ``{"signal": (B, L, N) float32, "lead_mask": (B, L) bool, "valid_samples": (B,) long}``. Both encoders return
``pooled`` (B, width) and ``tokens`` (B, T', width) over time, with ``token_mask`` False for tokens that only cover
zero-padding, so fine-grained losses can align report sentences with parts of the recording.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from medclip.registry import Registry

from ..config import ECGConfig

ECG_ENCODERS: Registry[Callable[[ECGConfig], nn.Module]] = Registry("ECG encoder")


def build_ecg_encoder(cfg: ECGConfig) -> nn.Module:
    """The encoder ``cfg.encoder`` names."""
    return ECG_ENCODERS.get(cfg.encoder)(cfg)


def _register_builtin_encoders() -> None:
    from .resnet1d import ResNet1d
    from .vit1d import ViT1d

    ECG_ENCODERS.register("resnet1d", ResNet1d)
    ECG_ENCODERS.register("vit1d", ViT1d)


_register_builtin_encoders()

__all__ = ["ECG_ENCODERS", "build_ecg_encoder"]
