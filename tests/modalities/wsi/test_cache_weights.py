"""The patch-feature cache embeds with the weights training would load (a converted ``weights:`` file) and with the
backbone's normalisation, so cached slide-level training sees the features pixel-level training would."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

import medclip
from medclip.weights.importers import ImportOptions, convert_foreign
from modalities.wsi import WSIConfig
from modalities.wsi.cache import build_feature_cache, read_features, slide_key
from modalities.wsi.slide import Slide, close_slides
from modalities.wsi.synthetic import render_tissue, tissue_type_map, write_slide
from modalities.wsi.transforms import to_tensor

pytest.importorskip("tiffslide")
pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_cache_embeds_with_the_converted_weights_and_their_normalisation(tmp_path):
    torch.manual_seed(0)
    release = timm.create_model("test_vit", pretrained=False).eval()
    save_file({k: v.contiguous() for k, v in release.state_dict().items()}, str(tmp_path / "release.safetensors"))
    weights = tmp_path / "patch.safetensors"
    convert_foreign(tmp_path / "release.safetensors", weights, "timm", "wsi", ImportOptions(arch="test_vit.r160_in1k"))

    rng = np.random.default_rng(0)
    slide = write_slide(
        tmp_path / "slide.tiff",
        render_tissue(tissue_type_map(640, 640, rng, tissue_fraction=0.9), rng),
        mpp=0.5,
        levels=1,
        tile=160,
    )
    cfg = WSIConfig(patch_encoder="test_vit.r160_in1k", weights=str(weights), patch_size=160, thumbnail_size=256)
    summary = build_feature_cache([slide], tmp_path / "cache", cfg, batch_size=8)
    assert summary["written"] == 1
    features, coords, record = read_features(tmp_path / "cache" / f"{slide_key(slide)}.safetensors")
    assert record["pixel_mean"] == [0.5, 0.5, 0.5]  # test_vit's release statistics, not ImageNet's

    model = medclip.create_model({"wsi": {"patch_encoder": "test_vit.r160_in1k", "weights": str(weights)}}).eval()
    pixels = Slide(slide, "tiffslide").read_patches(coords[:4], 160, 0.5)
    with torch.no_grad():
        expected = model.encoders["wsi"].patch_encoder(to_tensor(pixels, (0.5,) * 3, (0.5,) * 3)).numpy()
    close_slides()
    np.testing.assert_allclose(features[:4], expected, rtol=1e-2, atol=1e-2)  # the cache stores float16
