"""Token layouts on hand-built scores: the map's peak lies in the planted token's block, regions name it, the
figures are written; grid inference; refusals for modalities without token positions and encoders without tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import medclip
from medclip.explain import (
    ExplainError,
    GridLayout,
    PatchLayout,
    SignalLayout,
    check_explainable,
    ground,
    infer_grid,
)
from medclip.factory import ModelConfig, build_model
from medclip.types import EncoderOutput, Modality


def spike(count: int, token: int) -> np.ndarray:
    scores = np.linspace(-0.2, 0.1, count).astype(np.float32)
    scores[token] = 0.9
    return scores


def assert_png(path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 50


@pytest.mark.parametrize(
    ("shape", "tokens", "patch", "grid", "stride"),
    [
        ((32, 32, 16), 32, (8, 8, 8), (4, 4, 2), (8, 8, 8)),  # ViT patches
        ((32, 32, 16), 32, (), (4, 4, 2), (8, 8, 8)),  # the same, found from the count
        ((50, 50, 40), 8, (), (2, 2, 2), (32, 32, 32)),  # a ResNet rounding up: ceil(50 / 32) = 2
        ((224, 200), 14 * 13, (), (14, 13), (16, 16)),
    ],
)
def test_infer_grid(shape, tokens, patch, grid, stride):
    assert infer_grid(shape, tokens, patch) == (grid, stride)


def test_infer_grid_refuses_a_count_no_grid_explains():
    with pytest.raises(ValueError, match="no regular grid"):
        infer_grid((32, 32), 7)


def test_volume_layout_maps_a_token_to_its_block_and_draws_a_montage(tmp_path):
    layout = GridLayout((4, 4, 2), (8, 8, 8), np.random.default_rng(0).normal(size=(32, 32, 16)), slice_axis=-1)
    token = int(np.ravel_multi_index((2, 1, 1), layout.grid))
    heat = layout.to_input(spike(32, token))
    assert heat.shape == (32, 32, 16)
    assert np.all(heat[16:24, 8:16, 8:16] == pytest.approx(0.9)) and np.sum(heat > 0.5) == 8**3
    assert layout.region(token) == {"token": token, "cell": [2, 1, 1], "start": [16, 8, 8], "stop": [24, 16, 16],
                                    "slices": [8, 16]}  # fmt: skip
    assert layout.montage_slices(spike(32, token)) == [4, 8, 12]  # the two token layers' centres, the middle slice
    layout.render(spike(32, token), "nodule", tmp_path / "volume.png")
    assert_png(tmp_path / "volume.png")


def test_partial_last_block_of_a_rounded_up_grid():
    layout = GridLayout((2, 2), (32, 32), np.zeros((50, 40)))
    heat = layout.to_input(spike(4, 3))
    assert heat.shape == (50, 40) and np.all(heat[32:, 32:] == pytest.approx(0.9)) and np.sum(heat > 0.5) == 18 * 8
    assert layout.region(3)["stop"] == [50, 40]


def test_grid_layout_refuses_a_grid_that_does_not_cover_the_input():
    with pytest.raises(ValueError, match="does not cover"):
        GridLayout((2, 2), (8, 8), np.zeros((32, 32)))


@pytest.mark.parametrize("channels", [1, 3])
def test_image_layout(tmp_path, channels):
    background = np.random.default_rng(1).random((64, 48, 3) if channels == 3 else (64, 48))
    layout = GridLayout((4, 3), (16, 16), background)
    heat = layout.to_input(spike(12, 7))  # row 2, column 1
    row, column = np.unravel_index(np.argmax(heat), heat.shape)
    assert (row // 16, column // 16) == (2, 1) and layout.kind == "image"
    layout.render(spike(12, 7), "effusion", tmp_path / "image.png")
    assert_png(tmp_path / "image.png")


def test_signal_layout_masks_padding_and_names_seconds(tmp_path):
    traces = np.random.default_rng(2).normal(size=(3, 400)).astype(np.float32)
    layout = SignalLayout(stride=40, traces=traces, leads=["I", "II", "V1"], lead_present=np.array([True, False, True]),
                          sampling_rate=100.0, valid_samples=300)  # fmt: skip
    assert layout.token_count == 10
    heat = layout.to_input(spike(10, 4))
    assert np.nanargmax(heat) == 160 and np.all(np.isnan(heat[300:])) and np.all(heat[160:200] == pytest.approx(0.9))
    assert layout.region(4) == {"token": 4, "samples": [160, 200], "seconds": [1.6, 2.0]}
    layout.render(spike(10, 4), "ST elevation", tmp_path / "ecg.png")
    assert_png(tmp_path / "ecg.png")


@pytest.mark.parametrize("with_pixels", [True, False])
def test_patch_layout_places_patches_on_their_grid(tmp_path, with_pixels):
    positions = np.array([[0, 0], [1, 0], [3, 2], [2.0, 1.0]], dtype=np.float32)
    patches = np.random.default_rng(3).random((4, 32, 32, 3)) if with_pixels else None
    layout = PatchLayout(positions, patches)
    grid = layout.to_input(spike(4, 2))
    assert grid.shape == (3, 4) and np.nanargmax(grid) == np.ravel_multi_index((2, 3), grid.shape)
    assert np.isnan(grid[0, 2]) and layout.region(2) == {"token": 2, "patch_position": [3.0, 2.0]}
    layout.render(spike(4, 2), "tumour", tmp_path / "slide.png")
    assert_png(tmp_path / "slide.png")


@pytest.mark.slow
def test_a_modality_without_token_positions_is_refused_by_name(tiny_checkpoint):
    model = medclip.load_model(tiny_checkpoint)
    with pytest.raises(ExplainError, match="modality 'expression' has no token layout"):
        check_explainable(model, "expression")


class PooledOnlyEncoder(nn.Module):
    """A real encoder that returns one vector per input and no tokens (as a third-party plugin may)."""

    def __init__(self) -> None:
        super().__init__()
        self.output_dim = 4
        self.linear = nn.Linear(6, 4)

    def forward(self, inputs: torch.Tensor) -> EncoderOutput:
        return EncoderOutput(pooled=self.linear(inputs))


class VitalSigns(Modality):
    """Six vital-sign values per study; it claims a layout, but its encoder has no tokens to lay out."""

    name = "vitals"

    def build_encoder(self) -> nn.Module:
        return PooledOnlyEncoder()

    def token_layout(self, inputs, token_count: int):
        return GridLayout((1, 1), (1, 6), np.zeros((1, 6)))


def test_an_encoder_without_tokens_is_refused_by_name():
    model = build_model(ModelConfig(embed_dim=4), {"vitals": VitalSigns()})
    check_explainable(model, "vitals")  # the plugin has a layout hook ...
    with pytest.raises(ExplainError, match="the 'vitals' encoder returns no tokens"):  # ... but no tokens come
        ground(model, "vitals", {"vitals": torch.zeros(1, 6)}, ["fever"], torch.ones(1, 4))


def test_slide_layout_shows_the_patches_as_read():
    """The WSI plugin's layout undoes its pixel normalisation: the mosaic shows the patches' own colours."""
    plugin = medclip.get_modality("wsi", {"patch_size": 32})
    (sample,) = plugin.synthetic(1, seed=0)
    batch = plugin.collate([plugin.transforms(False)(sample)])
    layout = plugin.token_layout(batch["wsi"], len(sample["wsi"]))
    assert layout.token_count == len(sample["wsi"]) and layout.kind == "slide"
    np.testing.assert_allclose(layout.patches, sample["wsi"] / 255.0, atol=1e-5)
    assert np.all(layout.positions >= 0)
