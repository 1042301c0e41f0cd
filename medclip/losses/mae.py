"""The masked-autoencoder reconstruction loss (He et al. 2022): mean squared error on the hidden patches only.

Registered like the contrastive losses (``loss: {mae: {normalize_target: true}}``) and called with the same keyword
convention: it takes ``reconstruction``, the dict a masked autoencoder's forward returns (``predicted`` (B, T, P),
``target`` (B, T, P), ``hidden`` (B, T) bool, ``present`` (B,) bool), and ignores everything else. Visible patches
are not scored: copying what the encoder saw teaches nothing. With ``normalize_target`` each target patch is
normalised to mean 0 and variance 1 over its values (MAE's ``norm_pix_loss``), so predicting a patch's brightness
earns nothing and its structure is what counts.

Under torch.distributed each process averages over its own hidden patches and DDP averages the gradients; with the
same batch size on every process and every row present (the MAE recipe's data) every process scores the same number
of patches, and this equals the loss of the concatenated batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from ..config import ConfigError
from .base import LossConfig, register_loss, zero_loss_connected_to


def normalize_patches(patches: Tensor, eps: float = 1e-6) -> Tensor:
    """(..., P) -> each patch's values minus their mean, over the square root of their (unbiased) variance + eps."""
    mean = patches.mean(dim=-1, keepdim=True)  # (..., 1)
    variance = patches.var(dim=-1, keepdim=True)  # (..., 1)
    return (patches - mean) / (variance + eps).sqrt()


def masked_reconstruction_loss(
    predicted: Tensor,
    target: Tensor,
    hidden: Tensor,
    present: Tensor | None = None,
    normalize_target: bool = True,
    eps: float = 1e-6,
) -> Tensor:
    """Mean over hidden patches of present rows of the per-patch mean squared error.

    Args:
        predicted: (B, T, P) the decoder's values for every patch.
        target: (B, T, P) the patches' voxel values.
        hidden: (B, T) bool, True where the encoder did not see the patch.
        present: (B,) bool, False for rows without the modality; all rows count when None.
        normalize_target: normalise each target patch (``normalize_patches``) first.
        eps: added to the variance of ``normalize_patches``.

    Returns:
        A scalar; a zero connected to ``predicted`` when no hidden patch of a present row exists.
    """
    if predicted.shape != target.shape or predicted.dim() != 3:
        raise ValueError(f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)} must be equal (B, T, P)")
    if hidden.shape != predicted.shape[:2]:
        raise ValueError(f"hidden has shape {tuple(hidden.shape)}, expected {tuple(predicted.shape[:2])}")
    scored = hidden.bool()
    if present is not None:
        if present.shape != predicted.shape[:1]:
            raise ValueError(f"present has shape {tuple(present.shape)}, expected ({predicted.shape[0]},)")
        scored = scored & present.bool().unsqueeze(1)  # (B, T)
    if not scored.any():
        return zero_loss_connected_to(predicted)
    # Only the scored patches are compared (a quarter at MAE's ratio), so the normalisation and the squared error
    # never touch the visible ones.
    predicted, target = predicted[scored], target[scored].to(predicted.dtype)  # (N, P) each
    if normalize_target:
        target = normalize_patches(target, eps)
    return (predicted - target).pow(2).mean()


@dataclass
class MaskedReconstructionLossConfig(LossConfig):
    normalize_target: bool = True  # MAE's norm_pix_loss: targets are per-patch normalised voxels
    eps: float = 1e-6  # added to each patch's variance; keeps flat patches (air, padding) at target 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.eps > 0:
            raise ConfigError(f"loss.mae.eps must be > 0, got {self.eps}")


@register_loss("mae")
class MaskedReconstructionLoss(nn.Module):
    """MSE on a masked autoencoder's hidden patches (see the module docstring)."""

    config_class = MaskedReconstructionLossConfig
    consumes = "reconstruction"  # a masked autoencoder's output (``list_losses(consumes="reconstruction")``)

    def __init__(self, config: MaskedReconstructionLossConfig | None = None) -> None:
        super().__init__()
        self.config = config or MaskedReconstructionLossConfig()

    def forward(self, reconstruction: Mapping[str, Tensor] | None = None, **_: Any) -> dict[str, Tensor]:
        if reconstruction is None:
            raise ValueError("the mae loss needs the `reconstruction` output of a masked autoencoder (medclip mae)")
        loss = masked_reconstruction_loss(
            reconstruction["predicted"],
            reconstruction["target"],
            reconstruction["hidden"],
            reconstruction.get("present"),
            self.config.normalize_target,
            self.config.eps,
        )
        return {"mae_loss": loss}
