"""Modality-neutral network building blocks shared by the plugins' encoders."""

from .transformer import cls_token, encode_with_cls, pre_norm_encoder

__all__ = ["cls_token", "encode_with_cls", "pre_norm_encoder"]
