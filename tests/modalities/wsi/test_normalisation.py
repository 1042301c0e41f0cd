"""wsi patches are normalised with the statistics of the patch encoder's weights, not ImageNet's for every backbone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import medclip
from modalities.wsi.normalisation import IMAGENET_MEAN, IMAGENET_STD

WSI = {"width": 16, "heads": 2, "patch_size": 32}


def _normalised_patch(plugin, value: int) -> torch.Tensor:
    sample = {
        "wsi": np.full((1, 32, 32, 3), value, dtype=np.uint8),
        "wsi_coords": np.zeros((1, 2), dtype=np.int64),
        "wsi_meta": {"kind": "patch"},
    }
    return plugin.transforms(train=False)(sample)["wsi"]  # (1, 3, 32, 32)


def test_the_backbone_s_own_statistics_drive_the_normalisation():
    vit = medclip.get_modality("wsi", {**WSI, "patch_encoder": "test_vit"})  # a 0.5 / 0.5 release
    assert vit.normalisation.mean == (0.5, 0.5, 0.5) and vit.normalisation.source == "timm"
    assert torch.allclose(_normalised_patch(vit, 255), torch.ones(1))  # (1 - 0.5) / 0.5
    resnet = medclip.get_modality("wsi", {**WSI, "patch_encoder": "resnet18"})
    assert resnet.normalisation.mean == IMAGENET_MEAN and resnet.normalisation.std == IMAGENET_STD
    expected = (1.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(_normalised_patch(resnet, 255)[0, :, 0, 0], expected)
    state = vit.preprocess_state()["fingerprint"]
    assert state["pixel_mean"] == [0.5, 0.5, 0.5] and state["pixel_source"] == "timm"


def test_a_weights_file_s_statistics_win_and_a_checkpoint_keeps_its_own(tmp_path):
    import timm

    backbone = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    file = tmp_path / "patch.safetensors"
    metadata = {"medclip.scope": "patch_encoder.model", "medclip.pixel_mean": json.dumps([0.7, 0.6, 0.5]),
                "medclip.pixel_std": json.dumps([0.2, 0.2, 0.2])}  # fmt: skip
    save_file(
        {f"patch_encoder.model.{k}": v.contiguous() for k, v in backbone.state_dict().items()}, str(file), metadata
    )
    plugin = medclip.get_modality("wsi", {**WSI, "patch_encoder": "test_resnet", "weights": str(file)})
    assert plugin.normalisation.mean == (0.7, 0.6, 0.5) and plugin.normalisation.source == "weights"
    saved = json.loads(json.dumps(plugin.preprocess_state()))

    file.unlink()  # where the checkpoint is loaded, the weights file may be missing: the saved statistics are used
    restored = medclip.get_modality("wsi", {**WSI, "patch_encoder": "test_resnet", "weights": str(file)})
    restored.load_preprocess_state(saved)
    assert restored.normalisation.mean == (0.7, 0.6, 0.5)
    torch.testing.assert_close(
        _normalised_patch(restored, 0), -torch.tensor([3.5, 3.0, 2.5]).view(1, 3, 1, 1).expand(1, 3, 32, 32)
    )

    # a checkpoint written before the statistics followed the backbone recorded ImageNet's: it keeps them
    older = medclip.get_modality("wsi", {**WSI, "patch_encoder": "test_vit"})
    state = json.loads(json.dumps(older.preprocess_state()))
    state["fingerprint"] = {k: v for k, v in state["fingerprint"].items() if k != "pixel_source"}
    state["fingerprint"].update(pixel_mean=list(IMAGENET_MEAN), pixel_std=list(IMAGENET_STD))
    older.load_preprocess_state(state)
    assert older.normalisation.mean == IMAGENET_MEAN and older.normalisation.source == "checkpoint"


def test_bad_statistics_in_a_weights_file_are_refused(tmp_path):
    file = tmp_path / "patch.safetensors"
    save_file({"x": torch.zeros(1)}, str(file), {"medclip.pixel_mean": "[0.5, 0.5]", "medclip.pixel_std": "[1, 1, 1]"})
    plugin = medclip.get_modality("wsi", {**WSI, "patch_encoder": "test_resnet", "weights": str(file)})
    with pytest.raises(ValueError, match="pixel_mean must hold 3 values"):
        plugin.transforms(train=False)
