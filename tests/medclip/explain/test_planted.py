"""Planted signals: a phrase direction aligned with one region's tokens must light up that region, and only there.

For each layout (volume ViT and ResNet, 2-D image, ECG, slide patches) a real, randomly initialised encoder of the
modality sees an input with a strong pattern planted in region A; the "phrase" embedding is the direction of A's
projected token (against the input's other tokens). A second input carries the same pattern in another region B:
the map of that direction over the second input must peak inside B's block of the input (in input coordinates,
through the plugin's layout), which checks the token order, the grid and the projection together.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import medclip
from medclip.explain import ground

pytestmark = pytest.mark.usefixtures("one_thread")


def planted_direction(model, name: str, inputs, token: int) -> torch.Tensor:
    """(1, D) the unit direction of ``token``'s projected embedding away from the mean of the input's tokens."""
    with torch.no_grad():
        _, tokens, _ = model.encode_with_tokens(name, inputs)  # (1, T, D)
    direction = tokens[0, token] - tokens[0].mean(dim=0)
    return F.normalize(direction, dim=-1)[None]


def peak_of(grounding) -> tuple[int, ...]:
    heat = grounding.layout.to_input(grounding.scores)
    return tuple(int(i) for i in np.unravel_index(np.nanargmax(heat), heat.shape))


def volume_with_cube(channels: int, size: int, corner: tuple[int, int, int], side: int) -> torch.Tensor:
    volume = torch.zeros(1, channels, size, size, size, dtype=torch.float16)  # (1, C, I, J, K)
    i, j, k = corner
    volume[:, :, i : i + side, j : j + side, k : k + side] = 3.0
    return volume


# encoder -> (volume side, cube side, first cube corner, second cube corner): a cube fills one token's block (a ViT
# patch of 8 voxels; an eighth of a 64-voxel ResNet input, whose stride 32 gives a 2x2x2 grid)
VOLUME_CASES = {
    "vit": (32, 8, (8, 0, 16), (24, 16, 0)),
    "resnet": (64, 16, (0, 0, 0), (32, 32, 32)),
}


@pytest.mark.parametrize("encoder", sorted(VOLUME_CASES))
def test_volume_map_peaks_at_the_planted_cube(encoder):
    torch.manual_seed(0)
    size, side, first, second = VOLUME_CASES[encoder]
    options = {"size": [size] * 3, "encoder": encoder, "hu_windows": ["lung"]}
    if encoder == "vit":
        options["patch_size"] = [8]
    model = medclip.create_model({"ct": options}, {"embed_dim": 16}).eval()
    plugin = model.preprocess.modalities["ct"]
    source = volume_with_cube(plugin.in_channels(), size, first, side)
    with torch.no_grad():
        _, tokens, _ = model.encode_with_tokens("ct", source)
    layout = plugin.token_layout(source, tokens.shape[1])
    cell = tuple(corner // step for corner, step in zip(first, layout.stride, strict=True))
    direction = planted_direction(model, "ct", source, int(np.ravel_multi_index(cell, layout.grid)))
    target = volume_with_cube(plugin.in_channels(), size, second, side)
    (grounding,) = ground(model, "ct", {"ct": target}, ["planted"], direction)
    block = [corner // step for corner, step in zip(second, grounding.layout.stride, strict=True)]
    assert [index // step for index, step in zip(peak_of(grounding), grounding.layout.stride, strict=True)] == block
    assert grounding.layout.region(grounding.top_token)["cell"] == block


def test_image_map_peaks_at_the_planted_square():
    torch.manual_seed(0)
    model = medclip.create_model(
        {"image": {"encoder": "vit_tiny_patch16_224", "size": [64, 64], "image_type": "grayscale"}}, {"embed_dim": 16}
    ).eval()

    def image_with_square(row: int, column: int) -> torch.Tensor:
        pixels = torch.zeros(1, 1, 64, 64, dtype=torch.float16)  # (1, C, H, W)
        pixels[..., row : row + 16, column : column + 16] = 1.0
        return pixels

    source = image_with_square(0, 32)  # patch (0, 2) of the 4x4 grid
    direction = planted_direction(model, "image", source, token=2)
    (grounding,) = ground(model, "image", {"image": image_with_square(48, 16)}, ["planted"], direction)
    assert grounding.layout.grid == (4, 4)
    row, column = peak_of(grounding)
    assert (row // 16, column // 16) == (3, 1)


@pytest.mark.parametrize("encoder", ["vit1d", "resnet1d"])
def test_ecg_map_peaks_at_the_planted_burst(encoder):
    torch.manual_seed(0)
    cfg = {"encoder": encoder, "width": 32, "depth": 2, "heads": 2, "sampling_rate": 100.0, "seconds": 4.0,
           "patch_seconds": 0.2, "dropout": 0.0}  # fmt: skip
    model = medclip.create_model({"ecg": cfg}, {"embed_dim": 16}).eval()
    plugin = model.preprocess.modalities["ecg"]
    leads, samples = len(plugin.config.leads), plugin.config.n_samples
    window = 40  # samples: two ViT patches, five ResNet positions

    def record_with_burst(start: int) -> dict[str, torch.Tensor]:
        signal = torch.zeros(1, leads, samples)  # (1, L, N)
        time = torch.arange(window, dtype=torch.float32)
        signal[:, :, start : start + window] = 4.0 * torch.sin(time * 1.3)
        return {"signal": signal, "lead_mask": torch.ones(1, leads, dtype=torch.bool),
                "valid_samples": torch.tensor([samples])}  # fmt: skip

    source = record_with_burst(80)
    with torch.no_grad():
        _, tokens, _ = model.encode_with_tokens("ecg", source)
    layout = plugin.token_layout(source, tokens.shape[1])
    direction = planted_direction(model, "ecg", source, token=(80 + window // 2) // layout.stride)
    (grounding,) = ground(model, "ecg", {"ecg": record_with_burst(280)}, ["planted"], direction)
    (peak,) = peak_of(grounding)
    assert 280 - layout.stride <= peak < 280 + window + layout.stride
    seconds = grounding.layout.region(grounding.top_token)["seconds"]
    assert 2.8 - layout.stride / 100 <= seconds[0] < 3.2


@pytest.mark.parametrize("encoder", ["mean", "abmil", "transformer"])
def test_slide_map_peaks_at_the_planted_patch(encoder):
    torch.manual_seed(0)
    cfg = {"source": "features", "feature_dim": 8, "encoder": encoder, "width": 16, "layers": 1, "heads": 2}
    model = medclip.create_model({"wsi": cfg}, {"embed_dim": 16}).eval()
    generator = torch.Generator().manual_seed(1)
    positions = torch.tensor([[x, y] for y in range(3) for x in range(4)], dtype=torch.float32)[None]  # (1, 12, 2)
    background = 0.1 * torch.randn(1, 12, 8, generator=generator)
    planted = torch.tensor([3.0, -3.0, 3.0, -3.0, 3.0, -3.0, 3.0, -3.0])

    def bag_with_planted(patch: int) -> dict[str, torch.Tensor]:
        features = background.clone()
        features[0, patch] = planted
        return {"features": features, "positions": positions, "patch_mask": torch.ones(1, 12, dtype=torch.bool)}

    direction = planted_direction(model, "wsi", bag_with_planted(1), token=1)
    (grounding,) = ground(model, "wsi", {"wsi": bag_with_planted(10)}, ["planted"], direction)
    assert grounding.top_token == 10
    assert peak_of(grounding) == (2, 2)  # (row, column) of patch 10 at x=2, y=2
    assert grounding.layout.region(10)["patch_position"] == [2.0, 2.0]
