"""``WSIEncoder``: patches (pixels or cached features) -> patch embeddings -> slide encoder -> ``EncoderOutput``."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from medclip.types import EncoderOutput

from .config import WSIConfig
from .patch_encoder import TimmPatchEncoder
from .slide_encoders import WSI_SLIDE_ENCODERS


class WSIEncoder(nn.Module):
    """The wsi modality's encoder.

    Input (``batch["wsi"]``, from ``WSIModality.collate``): ``pixels`` (B, N, 3, S, S) or ``features`` (B, N, F),
    ``positions`` (B, N, 2) in patch units and ``patch_mask`` (B, N) bool. Only real patches go through the patch
    encoder (padding never reaches BatchNorm statistics).

    Args:
        cfg: the modality config (``source``, ``patch_encoder``, ``encoder``, ``width``, ...).
    """

    def __init__(self, cfg: WSIConfig) -> None:
        super().__init__()
        self.source = cfg.source
        self.patch_encoder: TimmPatchEncoder | None = None
        if cfg.source == "pixels":
            self.patch_encoder = TimmPatchEncoder(cfg.patch_encoder, cfg.patch_weights, cfg.freeze_patch_encoder)
            self.feature_dim = self.patch_encoder.output_dim
        else:
            self.feature_dim = cfg.feature_dim
        self.slide_encoder = WSI_SLIDE_ENCODERS.get(cfg.encoder)(self.feature_dim, cfg)
        self.output_dim = self.slide_encoder.output_dim

    def patch_features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """(B, N, F) patch embeddings, zeros at padded patches."""
        mask = inputs["patch_mask"]  # (B, N)
        if "features" in inputs:
            features = inputs["features"]  # (B, N, F)
            if features.shape[-1] != self.feature_dim:
                raise ValueError(
                    f"wsi features have width {features.shape[-1]}, the encoder expects {self.feature_dim}"
                )
            return features
        if self.patch_encoder is None:
            raise ValueError("this wsi encoder reads cached features (source: features) but the batch holds pixels")
        pixels = inputs["pixels"]  # (B, N, 3, S, S)
        embedded = self.patch_encoder(pixels[mask])  # (P, F) for the P real patches
        features = embedded.new_zeros(*mask.shape, embedded.shape[-1])  # (B, N, F)
        features[mask] = embedded
        return features

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        return self.slide_encoder(self.patch_features(inputs), inputs["positions"], inputs["patch_mask"])
