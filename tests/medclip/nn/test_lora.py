"""LoRA adapters: identical at initialisation, gradients only into the adapters, merging changes nothing, every built-in
encoder takes adapters on its default targets, checkpoints round-trip, bad targets are refused before any change."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import medclip
from medclip.checkpoint import ModelCard, save_model
from medclip.config import ConfigError
from medclip.factory import ModelConfig, build_modalities, build_model
from medclip.nn.lora import (
    LoRAConv1d,
    LoRAConv2d,
    LoRALinear,
    LowRankDelta,
    default_targets,
    drop_lora_options,
    has_lora,
    inject_lora,
    is_adapter_parameter,
    merge_lora,
)
from medclip.nn.tuning import apply_tuning
from medclip.types import LoRAConfig
from tests.medclip.nn.builtin_encoders import (
    build_plugin,
    encoder_cases,
    synthetic_batch,
    tiny_hf_model,
)


def _perturb_adapters(module: nn.Module, seed: int = 0) -> None:
    """Give every B a non-zero value, as training would (B starts at zero: the adapter adds nothing)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name.endswith("lora_B"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)


# --- the three adapter forms ------------------------------------------------------------------------------------------
def test_lora_linear_starts_identical_and_computes_w_plus_scaled_ba():
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    x = torch.randn(4, 6)
    expected = base(x)
    adapted = LoRALinear(base, r=2, alpha=8.0)
    assert adapted.weight is base.weight and adapted.bias is base.bias  # reused, not copied
    torch.testing.assert_close(adapted(x), expected, rtol=0, atol=0)
    _perturb_adapters(adapted)
    by_hand = x @ (base.weight + 4.0 * adapted.lora_B @ adapted.lora_A).T + base.bias  # alpha / r = 4
    torch.testing.assert_close(adapted(x), by_hand)
    merged = adapted.merged()
    assert type(merged) is nn.Linear and set(merged.state_dict()) == {"weight", "bias"}
    torch.testing.assert_close(merged(x), by_hand)


@pytest.mark.parametrize(
    "conv_type,adapter_type,shape", [(nn.Conv1d, LoRAConv1d, (2, 3, 20)), (nn.Conv2d, LoRAConv2d, (2, 3, 9, 9))]
)
def test_lora_convolution_starts_identical_and_merges_exactly(conv_type, adapter_type, shape):
    torch.manual_seed(0)
    base = conv_type(3, 4, kernel_size=3, stride=2, padding=1, dilation=1)
    x = torch.randn(*shape)
    expected = base(x)
    adapted = adapter_type(base, r=2, alpha=2.0)
    assert isinstance(adapted, conv_type)  # channels-last and other conv-aware code still see a convolution
    torch.testing.assert_close(adapted(x), expected, rtol=0, atol=0)
    _perturb_adapters(adapted)
    changed = adapted(x)
    assert not torch.allclose(changed, expected)
    torch.testing.assert_close(adapted.merged()(x), changed, rtol=1e-5, atol=1e-6)


def test_multihead_attention_is_adapted_on_its_weights():
    """PyTorch's attention reads in_proj_weight directly: the adapter must live on the weight to be seen at all."""
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(8, 2, batch_first=True)
    x = torch.randn(2, 5, 8)
    expected = attention(x, x, x, need_weights=False)[0]
    inject_lora(attention, LoRAConfig(r=2, targets=["out_proj"]), "test")  # out_proj: a linear MHA reads by weight
    wrapper = nn.ModuleDict({"attention": attention})
    inject_lora(wrapper, LoRAConfig(r=2, targets=["attention"]), "test")  # the in-projection
    names = {name for name, _ in attention.named_parameters()}
    assert "parametrizations.in_proj_weight.original" in names
    assert "out_proj.parametrizations.weight.0.lora_A" in names
    assert isinstance(attention.parametrizations.in_proj_weight[0], LowRankDelta)
    torch.testing.assert_close(attention(x, x, x, need_weights=False)[0], expected, rtol=0, atol=0)
    _perturb_adapters(attention)
    changed = attention(x, x, x, need_weights=False)[0]
    assert not torch.allclose(changed, expected)
    merge_lora(attention)
    assert {name for name, _ in attention.named_parameters()} == {
        "in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"
    }  # fmt: skip
    torch.testing.assert_close(attention(x, x, x, need_weights=False)[0], changed, rtol=1e-5, atol=1e-6)


def test_adapted_pytorch_transformer_is_right_on_its_inference_fast_path():
    """nn.TransformerEncoderLayer in eval mode without grad runs a fused kernel that reads linear1.weight itself.

    An output-side adapter on linear1 would be ignored there (the model would silently lose its fine-tuning at
    inference); the weight-side adapter gives the same output on the fast and the slow path.
    """
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 64, dropout=0.0, batch_first=True, norm_first=True)
    inject_lora(layer, LoRAConfig(r=4, targets=["self_attn", "out_proj", "linear1", "linear2"]), "test")
    _perturb_adapters(layer)
    layer.eval()
    x = torch.randn(2, 5, 16)
    slow = layer(x)  # grad enabled and trainable adapters: the Python path
    with torch.no_grad():
        fast = layer(x)  # eligible for torch._transformer_encoder_layer_fwd
        merged = copy.deepcopy(layer)
        merge_lora(merged)
        plain = merged(x)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain, slow, rtol=1e-5, atol=1e-5)


# --- every built-in encoder -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=encoder_cases())
def built(request):
    """(modality name, plugin, encoder, batch), built once per encoder choice."""
    name, options = request.param
    plugin = build_plugin(name, options)
    return name, plugin, plugin.build_encoder().eval(), synthetic_batch(plugin)


def test_every_builtin_encoder_takes_lora_on_its_default_targets(built):
    name, plugin, original, batch = built
    encoder = copy.deepcopy(original)
    with torch.no_grad():  # timm zero-initialises each residual block's last BatchNorm gain: give it a pretrained-like
        for module in encoder.modules():  # one, or those blocks' adapters could never receive a gradient
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.weight is not None:
                module.weight.fill_(1.0)
    with torch.no_grad():
        before = encoder(batch[name]).pooled
    config = copy.deepcopy(plugin.config)
    config.lora = LoRAConfig(r=2, alpha=4.0)
    apply_tuning(encoder, config, name)
    adapters = [n for n, _ in encoder.named_parameters() if is_adapter_parameter(n)]
    assert adapters, "no adapter was added"
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable == set(adapters)  # every base weight (norms, embeddings, CLS tokens ...) is frozen
    with torch.no_grad():
        torch.testing.assert_close(encoder(batch[name]).pooled, before, rtol=0, atol=0)  # B = 0: identical at init
    # gradients reach the adapters only (A gets none until B moves, so perturb B first)
    _perturb_adapters(encoder)
    encoder.train()
    encoder(batch[name]).pooled.square().sum().backward()
    for parameter_name, parameter in encoder.named_parameters():
        if is_adapter_parameter(parameter_name):
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, parameter_name
        else:
            assert parameter.grad is None, parameter_name
    # merging changes nothing and leaves the plain encoder's parameter names
    encoder.eval()
    with torch.no_grad():
        adapted = encoder(batch[name]).pooled
        assert not torch.allclose(adapted, before)
        merge_lora(encoder)
        merged = encoder(batch[name]).pooled
    assert not has_lora(encoder)
    assert set(encoder.state_dict()) == set(original.state_dict())
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-5)


def test_default_targets_are_the_attention_and_mlp_linears_of_transformers():
    report = build_plugin("report", {}).build_encoder()
    assert default_targets(report) == ["self_attn", "out_proj", "linear1", "linear2"]
    ct = build_plugin("ct", {}).build_encoder()
    assert sorted(default_targets(ct)) == ["linear1", "linear2", "out_proj", "qkv"]
    expression = build_plugin("expression", {"encoder": "mlp"}).build_encoder()
    assert default_targets(expression) == ["*"]  # no attention: every linear


def test_hugging_face_bert_takes_lora_on_query_key_value_and_feed_forward(tmp_path):
    folder = tiny_hf_model(tmp_path)
    plugin = build_plugin("report", {"encoder": "hf", "hf_model": str(folder), "max_tokens": 32})
    encoder = plugin.build_encoder().eval()
    batch = synthetic_batch(plugin)
    with torch.no_grad():
        before = encoder(batch["report"]).pooled
    adapted = inject_lora(encoder, LoRAConfig(r=2), "report")
    assert sorted({name.rsplit(".", 1)[-1] for name in adapted}) == ["dense", "key", "query", "value"]
    assert not any("pooler" in name for name in adapted)  # the unused pooler gets no adapter (DDP would wait for it)
    assert all(isinstance(encoder.get_submodule(name), LoRALinear) for name in adapted)
    with torch.no_grad():
        torch.testing.assert_close(encoder(batch["report"]).pooled, before, rtol=0, atol=0)


# --- checkpoints ------------------------------------------------------------------------------------------------------
def _fitted(options: dict) -> dict:
    modalities = build_modalities(options)
    for plugin in modalities.values():
        plugin.fit(plugin.synthetic(4))
    return modalities


def test_lora_model_round_trips_through_a_checkpoint_and_merges_for_export(tmp_path):
    options = {
        "report": {"width": 32, "layers": 1, "heads": 2, "vocab_size": 200, "lora": {"r": 2}},
        "expression": {"width": 32, "lora": {"r": 3, "targets": ["blocks.*.net.1"]}},
    }
    embedding = ModelConfig(embed_dim=8)
    modalities = _fitted(options)
    torch.manual_seed(0)
    model = build_model(embedding, modalities)
    _perturb_adapters(model)
    batch = {key: value for plugin in modalities.values() for key, value in synthetic_batch(plugin, 4).items()}
    model.eval()
    with torch.no_grad():
        expected = model(batch)["features"]
    path = save_model(tmp_path / "ckpt", model, modalities, ModelCard(modalities=options, model=embedding))
    loaded = medclip.load_model(path)
    assert any(key.endswith("lora_A") for key in loaded.state_dict())
    with torch.no_grad():
        reloaded = loaded(batch)["features"]
    for name in expected:
        torch.testing.assert_close(reloaded[name], expected[name], rtol=0, atol=0)
    # export: merge, then the weights load strictly into the model described without lora
    assert merge_lora(loaded) and not has_lora(loaded)
    plain_modalities = build_modalities(drop_lora_options(options))
    for name, plugin in plain_modalities.items():
        plugin.load_preprocess_state(modalities[name].preprocess_state())
    plain = build_model(embedding, plain_modalities).eval()
    plain.load_state_dict(loaded.state_dict(), strict=True)
    with torch.no_grad():
        exported = plain(batch)["features"]
    for name in expected:
        torch.testing.assert_close(exported[name], expected[name], rtol=1e-5, atol=1e-6)


# --- bad options ------------------------------------------------------------------------------------------------------
def test_a_target_that_matches_nothing_is_named_with_the_candidates_and_changes_nothing():
    encoder = build_plugin("report", {}).build_encoder()
    before = {name: tensor.clone() for name, tensor in encoder.state_dict().items()}
    with pytest.raises(ConfigError) as caught:
        inject_lora(encoder, LoRAConfig(targets=["linear1", "q_lin"]), "report")
    message = str(caught.value)
    assert "modalities.report.lora.targets" in message and "'q_lin'" in message
    assert "blocks.layers.*.linear1" in message and "blocks.layers.*.self_attn" in message  # pasteable candidates
    assert encoder.state_dict().keys() == before.keys()  # linear1 matched, yet nothing was adapted
    assert all(torch.equal(encoder.state_dict()[name], value) for name, value in before.items())


def test_a_target_matching_only_other_layers_says_what_it_matched():
    encoder = build_plugin("report", {}).build_encoder()
    with pytest.raises(ConfigError, match=r"'norm1'.*only modules LoRA cannot adapt \(LayerNorm\)"):
        inject_lora(encoder, LoRAConfig(targets=["norm1"]), "report")


def test_dropout_on_weight_side_adapters_is_refused():
    encoder = build_plugin("report", {}).build_encoder()
    with pytest.raises(ConfigError, match="lora.dropout.*read these weights directly"):
        inject_lora(encoder, LoRAConfig(dropout=0.1), "report")
    ct = build_plugin("ct", {}).build_encoder()  # MONAI blocks call their linears: dropout works there
    inject_lora(ct, LoRAConfig(dropout=0.1), "ct")
    assert any(
        isinstance(module, LoRALinear) and isinstance(module.lora_dropout, nn.Dropout) for module in ct.modules()
    )


@pytest.mark.parametrize(
    "options,message",
    [
        ({"lora": {"r": 0}}, "lora.r must be >= 1"),
        ({"lora": {"alpha": -1}}, "lora.alpha must be > 0"),
        ({"lora": {"dropout": 1.0}}, r"lora.dropout must be in \[0, 1\)"),
        ({"lora": {"rank": 4}}, "unknown config key 'modalities.report.lora.rank'"),
        ({"lora": {"targets": "qkv"}}, "modalities.report.lora.targets: expected a list"),
    ],
)
def test_invalid_lora_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        medclip.get_modality("report", options)


def test_bad_target_through_the_factory_is_a_config_error():
    modalities = _fitted({"report": {"width": 32, "layers": 1, "heads": 2, "lora": {"targets": ["fc9"]}}})
    with pytest.raises(ConfigError, match="'fc9'"):
        build_model(ModelConfig(embed_dim=8), modalities)
