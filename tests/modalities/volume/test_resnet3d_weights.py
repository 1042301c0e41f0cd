"""MONAI and MedicalNet 3-D ResNet weights onto the ct encoder: converted, loaded strictly, equal to MONAI's output."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import resnet10, resnet18
from safetensors.torch import save_file

import medclip
from medclip.weights.importers import ImportOptions, convert_foreign, register_builtin_importers
from medclip.weights.strict import WeightsError

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = [64, 64, 64]  # BatchNorm needs more than one value per channel after the last stage


@pytest.fixture(autouse=True, scope="module")
def importers():
    register_builtin_importers()


def _ct(options: dict, windows: list[str]) -> torch.nn.Module:
    return medclip.create_model({"ct": {"size": SIZE, "hu_windows": windows, **options}}, {"embed_dim": 8}).eval()


def test_a_monai_resnet10_fills_the_ct_encoder_and_computes_what_monai_computes(tmp_path):
    torch.manual_seed(0)
    source = resnet10(n_input_channels=1, feed_forward=False, conv1_t_stride=2).eval()  # MONAI's defaults otherwise
    with torch.no_grad():  # BatchNorm statistics as a trained model has them, not the fresh 0 / 1
        for module in source.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    release = tmp_path / "resnet10.pth"
    torch.save(source.state_dict(), release)
    destination = tmp_path / "ct.safetensors"
    result = convert_foreign(release, destination, "monai_resnet", "ct", ImportOptions(trust_pickle=True))
    assert result.settings == {"encoder": "monai_resnet10"} and result.scope == ""

    model = _ct({**result.settings, "weights": str(destination)}, ["lung"])
    assert model.warm_start["ct"]["tensors"] == len(source.state_dict())
    volumes = torch.randn(2, 1, *SIZE)
    with torch.no_grad():
        torch.testing.assert_close(model.encoders["ct"](volumes).pooled, source(volumes))


def test_a_medicalnet_release_with_its_wrappers_spreads_over_three_windows(tmp_path):
    torch.manual_seed(0)
    # MedicalNet's ResNet-18: zero-padding shortcuts; its releases wrap DataParallel keys in {"state_dict": ...} and
    # carry the segmentation decoder (conv_seg) they were trained with; old ones lack the BatchNorm counters
    source = resnet18(n_input_channels=1, feed_forward=False, conv1_t_stride=2, shortcut_type="A").eval()
    state = {f"module.{k}": v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["module.conv_seg.0.weight"] = torch.zeros(32, 512, 2, 2, 2)
    release = tmp_path / "resnet_18_23dataset.pth"
    torch.save({"state_dict": state}, release)
    destination = tmp_path / "ct.safetensors"
    result = convert_foreign(release, destination, "medicalnet", "ct", ImportOptions(trust_pickle=True, in_channels=3))
    assert result.settings == {"encoder": "medicalnet_resnet18"}
    notes = " | ".join(result.notes)
    assert "segmentation head (1 tensors)" in notes and "BatchNorm counters" in notes and "from 1 to 3" in notes

    model = _ct({**result.settings, "weights": str(destination)}, ["lung", "mediastinum", "bone"])
    volume = torch.randn(2, 1, *SIZE)
    with torch.no_grad():  # a volume repeated over the three channels gives the release's single-channel output
        torch.testing.assert_close(model.encoders["ct"](volume.repeat(1, 3, 1, 1, 1)).pooled, source(volume))


def test_resnets_that_fit_no_volume_encoder_are_refused_by_name(tmp_path):
    torch.manual_seed(0)
    odd = resnet18(n_input_channels=1, feed_forward=False, shortcut_type="B", bias_downsample=False)
    save_file({k: v.contiguous() for k, v in odd.state_dict().items()}, str(tmp_path / "odd.safetensors"))
    with pytest.raises(WeightsError, match="ResNet-18 has projection shortcuts without bias, which neither"):
        convert_foreign(tmp_path / "odd.safetensors", tmp_path / "out.safetensors", "monai_resnet", "ct")
    save_file({"conv1.weight": torch.zeros(64, 1, 7, 7)}, str(tmp_path / "flat.safetensors"))
    with pytest.raises(WeightsError, match="not a 3-D ResNet in MONAI's layout"):
        convert_foreign(tmp_path / "flat.safetensors", tmp_path / "out.safetensors", "medicalnet", "ct")
    # a MONAI ResNet-10 file used for a ResNet-18 encoder: named keys, nothing loaded
    ten = resnet10(n_input_channels=1, feed_forward=False)
    save_file({k: v.contiguous() for k, v in ten.state_dict().items()}, str(tmp_path / "ten.safetensors"))
    converted = tmp_path / "ten_ct.safetensors"
    convert_foreign(tmp_path / "ten.safetensors", converted, "monai_resnet", "ct")
    with pytest.raises(WeightsError, match=r"missing \(layer1.1.bn1.bias"):
        _ct({"encoder": "monai_resnet18", "weights": str(converted)}, ["lung"])
    with pytest.raises(ValueError, match="monai_resnet18 has a fixed architecture"):
        _ct({"encoder": "monai_resnet18", "width": 256}, ["lung"])
