"""The masked-reconstruction loss: hidden patches only, per-patch normalised targets, missing rows ignored."""

from __future__ import annotations

import pytest
import torch

from medclip.config import ConfigError
from medclip.losses import build_loss, list_losses, masked_reconstruction_loss
from medclip.losses.mae import normalize_patches

pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    predicted = torch.randn(3, 6, 10, generator=generator)  # (B, T, P)
    target = torch.rand(3, 6, 10, generator=generator) * 4 + 2  # voxel values, not normalised
    hidden = torch.zeros(3, 6, dtype=torch.bool)
    hidden[:, :4] = True
    return predicted, target, hidden


def test_equals_the_mean_squared_error_of_hidden_normalised_patches():
    predicted, target, hidden = _inputs()
    normalised = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    expected = ((predicted - normalised) ** 2).mean(-1)[hidden].mean()
    assert torch.allclose(masked_reconstruction_loss(predicted, target, hidden), expected)
    raw = ((predicted - target) ** 2).mean(-1)[hidden].mean()
    assert torch.allclose(masked_reconstruction_loss(predicted, target, hidden, normalize_target=False), raw)


def test_visible_patches_and_missing_rows_do_not_count():
    predicted, target, hidden = _inputs()
    base = masked_reconstruction_loss(predicted, target, hidden)
    changed = predicted.clone()
    changed[:, 4:] += 100.0  # visible patches
    assert torch.allclose(masked_reconstruction_loss(changed, target, hidden), base)
    present = torch.tensor([True, True, False])
    changed = predicted.clone()
    changed[2] += 100.0  # a row without the volume (zeros in the batch)
    with_missing = masked_reconstruction_loss(changed, target, hidden, present)
    assert torch.allclose(with_missing, masked_reconstruction_loss(predicted[:2], target[:2], hidden[:2]))


def test_normalised_targets_ignore_brightness_and_contrast_of_a_patch():
    predicted, target, hidden = _inputs()
    base = masked_reconstruction_loss(predicted, target, hidden)
    assert torch.allclose(masked_reconstruction_loss(predicted, target * 3.0 + 7.0, hidden), base, atol=1e-5)
    flat = torch.full((1, 1, 8), 0.25)  # an air patch: target 0, not a division by zero
    assert torch.equal(normalize_patches(flat), torch.zeros_like(flat))


def test_nothing_hidden_gives_a_connected_zero():
    predicted, target, hidden = _inputs()
    predicted.requires_grad_(True)
    loss = masked_reconstruction_loss(predicted, target, torch.zeros_like(hidden))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(predicted.grad, torch.zeros_like(predicted))


def test_registered_as_a_reconstruction_loss_with_checked_shapes():
    assert list_losses(consumes="reconstruction") == ["mae"]
    assert "mae" not in list_losses(consumes="embeddings")
    predicted, target, hidden = _inputs()
    entries = build_loss({"mae": {"normalize_target": True}})(
        reconstruction={"predicted": predicted, "target": target, "hidden": hidden}, features={}
    )
    assert set(entries) == {"mae_loss", "loss"}
    with pytest.raises(ValueError, match="must be equal"):
        masked_reconstruction_loss(predicted, target[:, :5], hidden)
    with pytest.raises(ValueError, match="needs the `reconstruction`"):
        build_loss({"mae": 1.0})(features={})
    with pytest.raises(ConfigError, match="eps"):
        build_loss({"mae": {"eps": 0.0}})
