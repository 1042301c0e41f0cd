"""``train.compile`` (torch.compile of each encoder, inductor on CPU here) and ``train.channels_last`` on real runs.

The compiled run must train the same model as the eager one: same loss and, after an optimizer step, the same
weights within float tolerance (inductor fuses and reorders float operations, so bit-equality is not expected).
Dropout is off in both runs: compiled dropout draws its random numbers differently. Small model, one step: the
cost is inductor's compile time.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

DETERMINISTIC = ["modalities.report.dropout=0.0", "modalities.expression.dropout=0.0", "train.precision=fp32"]
ONE_STEP = ["train.steps=1", "train.device=cpu", *DETERMINISTIC]  # one step: one compile, forward + backward


def trained_weights(result) -> dict[str, torch.Tensor]:
    return load_file(str(result.checkpoint / "model.safetensors"))


@pytest.fixture(scope="module")
def compiler_available() -> None:
    import shutil

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("torch.compile's inductor backend needs a C compiler on CPU")


def test_compiled_encoders_train_like_eager(compiler_available, small_experiment, tmp_path):
    from recipes.pretrain import pretrain

    eager = pretrain(small_experiment(*ONE_STEP, out=tmp_path / "eager"))
    compiled = pretrain(small_experiment(*ONE_STEP, "train.compile=true", out=tmp_path / "compiled"))
    assert compiled.metrics["loss"] == pytest.approx(eager.metrics["loss"], abs=1e-4)
    eager_weights, compiled_weights = trained_weights(eager), trained_weights(compiled)
    assert sorted(compiled_weights) == sorted(eager_weights)  # compiling in place keeps checkpoint keys
    for key, value in eager_weights.items():
        torch.testing.assert_close(compiled_weights[key], value, rtol=1e-4, atol=1e-4, msg=lambda m, k=key: f"{k}: {m}")


def test_prepare_model_compiles_in_place_and_converts_conv_weights():
    from monai.networks.nets import ResNet  # a real 3D CNN with Conv3d layers

    from medclip.model import ContrastiveModel, ProjectionHead
    from medclip.train.parallel import prepare_model, to_channels_last

    encoder = ResNet("basic", [1, 1, 1, 1], [8, 16, 32, 64], spatial_dims=3, n_input_channels=1, num_classes=8)
    model = ContrastiveModel({"ct": encoder}, {"ct": ProjectionHead(8, 4)})
    keys = list(model.state_dict())
    prepare_model(model, compile_encoders=True, channels_last=True)
    assert list(model.state_dict()) == keys
    assert model.encoders["ct"]._compiled_call_impl is not None
    conv = model.encoders["ct"].layer1[0].conv1.weight  # 8 -> 8 channels (with one channel both layouts agree)
    assert conv.is_contiguous(memory_format=torch.channels_last_3d) and not conv.is_contiguous()
    volume = torch.rand(2, 1, 8, 8, 8)  # (B, C, I, J, K)
    converted = to_channels_last({"ct": volume, "ct_mask": torch.ones(2, dtype=torch.bool)})
    assert converted["ct"].is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(converted["ct"], volume)
    assert converted["ct_mask"].dtype == torch.bool
