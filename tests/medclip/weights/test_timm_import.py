"""``medclip convert-weights --from timm``: a timm release onto the wsi patch encoder, with the backbone's own
normalisation (not ImageNet's for every backbone)."""

from __future__ import annotations

import pytest
import timm
import torch

import medclip
from medclip.checkpoint import CheckpointError
from medclip.weights.importers import ImportOptions, convert_foreign, register_builtin_importers
from medclip.weights.strict import WeightsError

pytestmark = pytest.mark.usefixtures("one_thread")

WSI = {"width": 16, "heads": 2, "patch_size": 160}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """timm's test ViT with its classifier, saved the way hub releases are (a pickled .pth state dict)."""
    register_builtin_importers()
    torch.manual_seed(0)
    model = timm.create_model("test_vit", pretrained=False).eval()
    path = tmp_path_factory.mktemp("timm") / "test_vit.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_a_timm_release_fills_the_patch_encoder_and_brings_its_normalisation(release, tmp_path):
    source, path = release
    destination = tmp_path / "patch.safetensors"
    result = convert_foreign(
        path, destination, "timm", "wsi", ImportOptions(trust_pickle=True, arch="test_vit.r160_in1k")
    )
    assert result.scope == "patch_encoder.model" and result.settings == {"patch_encoder": "test_vit.r160_in1k"}
    assert any("dropped the classifier (2 tensors)" in note for note in result.notes)

    options = {**WSI, **result.settings, "weights": str(destination)}
    model = medclip.create_model({"wsi": options}, {"embed_dim": 8}).eval()
    pixels = torch.rand(2, 3, 160, 160) * 4 - 2
    with torch.no_grad():
        expected = source.forward_head(source.forward_features(pixels), pre_logits=True)
        ours = model.encoders["wsi"].patch_encoder(pixels)
    torch.testing.assert_close(ours, expected)
    plugin = medclip.get_modality("wsi", options)  # test_vit's release was trained on 0.5 / 0.5, not ImageNet's
    assert plugin.normalisation.mean == (0.5, 0.5, 0.5) and plugin.normalisation.std == (0.5, 0.5, 0.5)
    # the same file also works as the older patch_weights option (e.g. for the feature cache)
    older = medclip.create_model({"wsi": {**WSI, **result.settings, "patch_weights": str(destination)}}).eval()
    with torch.no_grad():
        torch.testing.assert_close(older.encoders["wsi"].patch_encoder(pixels), expected)


def test_a_timm_release_needs_its_architecture_and_must_fit_it(release, tmp_path):
    _, path = release
    with pytest.raises(WeightsError, match="--from timm needs --arch NAME"):
        convert_foreign(path, tmp_path / "a.safetensors", "timm", "wsi", ImportOptions(trust_pickle=True))
    with pytest.raises(WeightsError, match="unknown timm model 'test_vti'; close names: test_vit"):
        convert_foreign(
            path, tmp_path / "a.safetensors", "timm", "wsi", ImportOptions(trust_pickle=True, arch="test_vti")
        )
    with pytest.raises(WeightsError, match=r"timm weights for test_vit2 do not fit; nothing was loaded: .*missing"):
        convert_foreign(
            path, tmp_path / "a.safetensors", "timm", "wsi", ImportOptions(trust_pickle=True, arch="test_vit2")
        )
    with pytest.raises(CheckpointError, match="is a pickle-based file"):
        convert_foreign(path, tmp_path / "a.safetensors", "timm", "wsi", ImportOptions(arch="test_vit"))
    with pytest.raises(WeightsError, match="--to report: the report encoder holds none of what --from timm converts"):
        convert_foreign(
            path, tmp_path / "a.safetensors", "timm", "report", ImportOptions(trust_pickle=True, arch="test_vit")
        )
    assert not (tmp_path / "a.safetensors").exists()


def test_a_timm_release_fills_the_image_backbone(release, tmp_path):
    """The same file format serves the 2-D image modality: its backbone slot, and its own option name."""
    source, path = release
    destination = tmp_path / "image.safetensors"
    result = convert_foreign(path, destination, "timm", "image", ImportOptions(trust_pickle=True, arch="test_vit"))
    assert result.scope == "backbone" and result.settings == {"encoder": "test_vit"}
    options = {**result.settings, "size": [160, 160], "weights": str(destination)}
    model = medclip.create_model({"image": options}, {"embed_dim": 8}).eval()
    expected_state = {k: v for k, v in source.state_dict().items() if not k.startswith("head.")}
    ours = model.encoders["image"].backbone.state_dict()
    assert set(ours) == set(expected_state)
    assert all(torch.equal(ours[key], expected_state[key]) for key in expected_state)
