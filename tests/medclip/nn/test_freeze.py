"""Freezing: whole towers and module prefixes get no gradient and stay in eval mode while the model trains; bad options
are refused before anything is frozen; checkpoints rebuild the same frozen layout."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import medclip
from medclip.checkpoint import ModelCard, save_model
from medclip.config import ConfigError
from medclip.factory import ModelConfig, build_modalities, build_model
from medclip.nn.freeze import freeze, is_kept_in_eval
from medclip.nn.tuning import apply_tuning
from tests.medclip.nn.builtin_encoders import SMALL, build_plugin, synthetic_batch

REPORT = {**SMALL["report"], "layers": 2, "dropout": 0.5}
ECG = {**SMALL["ecg"], "dropout": 0.5}  # a ResNet with BatchNorm and dropout


def _model(options: dict) -> tuple[nn.Module, dict, dict]:
    modalities = build_modalities(options)
    for plugin in modalities.values():
        if plugin.fits_on_data:
            plugin.fit(plugin.synthetic(4))
    torch.manual_seed(0)
    model = build_model(ModelConfig(embed_dim=8), modalities)
    batch = {key: value for plugin in modalities.values() for key, value in synthetic_batch(plugin, 4).items()}
    return model, modalities, batch


def test_a_frozen_tower_gets_no_gradient_and_stays_in_eval_while_the_model_trains():
    model, _, batch = _model({"ecg": {**ECG, "freeze": True}, "report": REPORT})
    ecg = model.encoders["ecg"]
    assert not any(parameter.requires_grad for parameter in ecg.parameters())
    assert all(parameter.requires_grad for parameter in model.heads["ecg"].parameters())  # the new head trains
    assert all(parameter.requires_grad for parameter in model.encoders["report"].parameters())
    norms = [module for module in ecg.modules() if isinstance(module, nn.BatchNorm1d)]
    assert norms and any(isinstance(module, nn.Dropout) and module.p > 0 for module in ecg.modules())
    statistics = [norm.running_mean.clone() for norm in norms]
    model.train()
    assert model.encoders["report"].training and model.heads["ecg"].training
    assert not any(module.training for module in ecg.modules())
    first, second = model(batch), model(batch)
    torch.testing.assert_close(first["features"]["ecg"], second["features"]["ecg"], rtol=0, atol=0)  # no dropout
    assert not torch.equal(first["features"]["report"], second["features"]["report"])  # the trained tower drops out
    for norm, before in zip(norms, statistics, strict=True):
        assert torch.equal(norm.running_mean, before)  # BatchNorm statistics are not updated
    (first["features"]["ecg"].sum() + first["features"]["report"].sum()).backward()
    assert all(parameter.grad is None for parameter in ecg.parameters())
    assert model.heads["ecg"].net.weight.grad is not None


def test_freezing_by_prefix_freezes_those_modules_and_parameters_only():
    model, _, batch = _model({"report": {**REPORT, "freeze": ["token_embedding", "blocks.layers.0"]}, "expression": {}})
    report = model.encoders["report"]
    for name, parameter in report.named_parameters():
        frozen = name.startswith(("token_embedding.", "blocks.layers.0."))
        assert parameter.requires_grad is not frozen, name
    model.train()
    layers = report.blocks.layers
    assert not layers[0].training and not any(module.training for module in layers[0].modules())
    assert layers[1].training and report.training
    assert is_kept_in_eval(layers[0]) and not is_kept_in_eval(layers[1])
    model(batch)["features"]["report"].sum().backward()
    assert report.token_embedding.weight.grad is None and layers[0].linear1.weight.grad is None
    assert layers[1].linear1.weight.grad is not None and report.position_embedding.weight.grad is not None


def test_a_parameter_name_is_a_prefix_too():
    plugin = build_plugin("ecg", {"encoder": "vit1d"})
    encoder = plugin.build_encoder()
    parameters = dict(encoder.named_parameters(recurse=False))
    assert parameters, "the ECG ViT has top-level parameters (its CLS token)"
    name = next(iter(parameters))
    freeze(encoder, [name], "ecg")
    assert not parameters[name].requires_grad
    assert sum(parameter.requires_grad for parameter in encoder.parameters()) == len(list(encoder.parameters())) - 1


def test_a_prefix_that_matches_nothing_is_named_with_the_encoder_names_and_freezes_nothing():
    plugin = build_plugin("report", REPORT)
    encoder = plugin.build_encoder()
    config = copy.deepcopy(plugin.config)
    config.freeze = ["blocks.layers.0", "blocks.layer.1"]  # a typo in the second
    with pytest.raises(ConfigError) as caught:
        apply_tuning(encoder, config, "report")
    message = str(caught.value)
    assert "modalities.report.freeze" in message and "'blocks.layer.1'" in message
    assert "token_embedding" in message and "blocks.layers" in message  # what the encoder does have
    assert all(parameter.requires_grad for parameter in encoder.parameters())  # the first prefix was not applied
    assert not any(is_kept_in_eval(module) for module in encoder.modules())


def test_contradictory_or_empty_freeze_options_are_refused():
    plugin = build_plugin("report", REPORT)
    config = copy.deepcopy(plugin.config)
    config.freeze = []
    with pytest.raises(ConfigError, match="empty list freezes nothing"):
        apply_tuning(plugin.build_encoder(), config, "report")
    config = medclip.get_modality("report", {**REPORT, "freeze": True, "lora": {"r": 2}}).config
    with pytest.raises(ConfigError, match="freeze: true and lora together leave nothing to train"):
        apply_tuning(plugin.build_encoder(), config, "report")
    with pytest.raises(ConfigError, match="modalities.report.freeze"):
        medclip.get_modality("report", {"freeze": "yes"})


def test_lora_and_prefix_freezing_combine():
    """LoRA freezes every base weight; a freeze prefix then also freezes the adapters under it."""
    model, _, _ = _model(
        {"report": {**REPORT, "dropout": 0.0, "lora": {"r": 2}, "freeze": ["blocks.layers.0"]}, "expression": {}}
    )
    trainable = {name for name, p in model.encoders["report"].named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("blocks.layers.1.") and "lora_" in name for name in trainable)


def test_a_checkpoint_rebuilds_the_frozen_layout(tmp_path):
    options = {"ecg": {**ECG, "freeze": True}, "report": {**REPORT, "freeze": ["blocks.layers.0"]}}
    model, modalities, _ = _model(options)
    path = save_model(
        tmp_path / "ckpt", model, modalities, ModelCard(modalities=options, model=ModelConfig(embed_dim=8))
    )
    loaded = medclip.load_model(path)
    for name, parameter in model.named_parameters():
        assert dict(loaded.named_parameters())[name].requires_grad == parameter.requires_grad, name
    loaded.train()  # e.g. `medclip probe` fine-tuning a copy: the frozen tower stays frozen and in eval
    assert not loaded.encoders["ecg"].training and not loaded.encoders["report"].blocks.layers[0].training
    assert loaded.encoders["report"].blocks.layers[1].training
