"""The 3-D masked autoencoder: patches in the ViT's token order, per-sample seeded masks, the encoder on visible
patches only with unchanged weights, and the weights' fit into the encoder contrastive pretraining builds."""

from __future__ import annotations

import pytest
import torch

import medclip
from medclip.config import ConfigError, build
from medclip.factory import build_modalities, build_model
from medclip.losses import build_loss
from modalities.volume.mae import (
    MaskedAutoencoderConfig,
    PatchGrid,
    build_masked_autoencoder,
    draw_visible_patches,
    hidden_patches,
)
from recipes.pretrain import Config as PretrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

# 32^3 volumes in 8^3 patches: 64 patches, 16 visible at the default ratio; two HU windows = two channels.
CT_OPTIONS = {
    "size": [32, 32, 32],
    "spacing": [10.0, 10.0, 10.0],
    "patch_size": [8, 8, 8],
    "hu_windows": ["lung", "mediastinum"],
    "augment": False,
}


def _plugin(**overrides):
    return medclip.get_modality("ct", {**CT_OPTIONS, **overrides})


def _batch(rows: list[int], seed: int = 0) -> dict:
    volumes = torch.rand(len(rows), 2, 32, 32, 32, generator=torch.Generator().manual_seed(seed)).half()
    return {"ct": volumes, "ct_mask": torch.ones(len(rows), dtype=torch.bool), "row": rows}


def test_patches_follow_the_vit_token_order_and_round_trip():
    plugin = _plugin()
    encoder = plugin.build_encoder()
    grid = PatchGrid((32, 32, 32), (8, 8, 8), 2)
    assert (grid.patches, grid.patch_values) == (64, 8 * 8 * 8 * 2)
    volumes = torch.randn(2, 2, 32, 32, 32)
    patches = grid.patchify(volumes)  # (2, 64, 1024)
    assert torch.equal(grid.unpatchify(patches), volumes)
    # Token t of the conv patch embedding is a linear map of patch t's values: the target lines up with the tokens.
    convolution = encoder.patch_embedding.patch_embeddings
    tokens = convolution(volumes).flatten(2).transpose(1, 2)  # (2, 64, D)
    kernel = convolution.weight.permute(0, 2, 3, 4, 1).reshape(convolution.weight.shape[0], -1)  # (D, P)
    assert torch.allclose(patches @ kernel.T + convolution.bias, tokens, atol=1e-4)


def test_masks_are_a_function_of_seed_draw_and_row_only():
    first = draw_visible_patches([3, 7, 11], patches=64, visible=16, seed=5, draw=2)
    assert first.shape == (3, 16)
    assert torch.equal(first, draw_visible_patches([3, 7, 11], 64, 16, seed=5, draw=2))  # reproducible
    for row in first:
        assert torch.equal(row, row.unique())  # sorted, no repeats
    # The same row gets the same mask wherever it sits in whatever batch (and so whatever the number of processes).
    assert torch.equal(draw_visible_patches([11, 3], 64, 16, seed=5, draw=2)[1], first[0])
    assert not torch.equal(draw_visible_patches([3], 64, 16, seed=6, draw=2)[0], first[0])  # another seed
    assert not torch.equal(draw_visible_patches([3], 64, 16, seed=5, draw=3)[0], first[0])  # a later draw
    assert not torch.equal(first[0], first[1])  # another row
    hidden = hidden_patches(first, 64)
    assert hidden.shape == (3, 64) and (hidden.sum(dim=1) == 48).all()
    assert not hidden.gather(1, first).any()


def test_training_forward_advances_the_draw_and_evaluation_reuses_it():
    config = MaskedAutoencoderConfig()
    torch.manual_seed(0)
    model = build_masked_autoencoder(_plugin(), config, seed=1)
    torch.manual_seed(0)
    twin = build_masked_autoencoder(_plugin(), config, seed=1)
    batch = _batch([0, 1])
    first = model(batch)["reconstruction"]
    assert int(model.mask_draws) == 1
    assert torch.equal(first["hidden"], twin(batch)["reconstruction"]["hidden"])  # same seed, same masks
    second = model(batch)["reconstruction"]
    assert not torch.equal(first["hidden"], second["hidden"])  # a volume seen again is masked anew
    model.eval()
    with torch.no_grad():
        evaluated = [model(batch)["reconstruction"]["hidden"] for _ in range(2)]
    assert int(model.mask_draws) == 2 and torch.equal(*evaluated)
    assert first["predicted"].shape == first["target"].shape == (2, 64, 1024)
    assert first["hidden"].sum() == 2 * 48  # 0.75 of 64 patches per volume


def test_the_encoder_on_all_patches_is_its_ordinary_forward():
    encoder = _plugin(dropout=0.0).build_encoder().eval()
    volumes = torch.rand(2, 2, 32, 32, 32)
    every = torch.arange(64).expand(2, -1)
    plain, through_visible = encoder(volumes), encoder(volumes, visible_patches=every)
    assert torch.allclose(plain.tokens, through_visible.tokens, atol=1e-6)
    visible = draw_visible_patches([0, 1], 64, 16, seed=0, draw=0)
    assert encoder(volumes, visible_patches=visible).tokens.shape == (2, 16, encoder.output_dim)


def test_the_loss_trains_encoder_and_decoder():
    model = build_masked_autoencoder(_plugin(), MaskedAutoencoderConfig(), seed=0)
    losses = build_loss({"mae": 1.0})(**model(_batch([0, 1, 2])))
    assert set(losses) == {"mae_loss", "loss"} and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    for name, parameter in model.named_parameters():
        if "cross_attn" in name:  # MONAI's TransformerBlock creates this norm even without cross-attention
            continue
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_encoder_weights_load_strictly_into_the_encoder_pretraining_builds():
    model = build_masked_autoencoder(_plugin(), MaskedAutoencoderConfig(), seed=0)
    pretrain_config = build(PretrainConfig, {"modalities": {"ct": dict(CT_OPTIONS), "report": {}}})
    contrastive = build_model(pretrain_config.model, build_modalities(pretrain_config.modalities))
    encoder_state = model.encoders["ct"].state_dict()
    result = contrastive.encoders["ct"].load_state_dict(encoder_state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # Under the checkpoint's "model." prefix the keys are those pretraining's model has for its CT encoder.
    mae_keys = {key for key in model.state_dict() if key.startswith("encoders.ct.")}
    assert mae_keys == {key for key in contrastive.state_dict() if key.startswith("encoders.ct.")}


def test_options_mae_cannot_use_are_refused():
    with pytest.raises(ConfigError, match="use encoder: vit"):
        build_masked_autoencoder(_plugin(encoder="resnet", patch_size=[]), MaskedAutoencoderConfig())
    with pytest.raises(ConfigError, match="volume modality"):
        build_masked_autoencoder(medclip.get_modality("report", {}), MaskedAutoencoderConfig())
    with pytest.raises(ConfigError, match="hides 8 of 8 patches"):  # 2^3 patches: nothing left visible at 0.95
        build_masked_autoencoder(_plugin(patch_size=[16, 16, 16]), MaskedAutoencoderConfig(mask_ratio=0.95))
    for bad in ({"mask_ratio": 1.0}, {"mask_ratio": 0.0}, {"decoder_layers": 0}, {"decoder_width": -1}):
        with pytest.raises(ConfigError):
            build(MaskedAutoencoderConfig, bad)
    with pytest.raises(ConfigError, match="must divide the decoder width"):
        build_masked_autoencoder(_plugin(), MaskedAutoencoderConfig(decoder_width=48, decoder_heads=5))


def test_oct_volumes_train_the_same_way():
    """One input channel, (lateral, axial, B-scan) volumes: the autoencoder is the same code."""
    plugin = medclip.get_modality("oct", {"bscan_size": [32, 32], "n_bscans": 16, "patch_size": [8, 8, 8]})
    model = build_masked_autoencoder(plugin, MaskedAutoencoderConfig(mask_ratio=0.9), seed=0)
    assert (model.grid.patches, model.visible, model.grid.patch_values) == (32, 3, 512)
    batch = {"oct": torch.rand(2, 1, 32, 32, 16).half(), "oct_mask": torch.ones(2, dtype=torch.bool), "row": [0, 1]}
    losses = build_loss({"mae": 1.0})(**model(batch))
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"]) and model.encoders["oct"].patch_embedding.position_embeddings.grad is not None
