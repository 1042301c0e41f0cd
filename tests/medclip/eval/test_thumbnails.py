"""Thumbnail renderers: one per picture-bearing modality, a placeholder for the others, a tile instead of a crash."""

from __future__ import annotations

import io

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medclip.eval.thumbnails import THUMBNAILS, TILE, png_bytes, render_reference, render_rows
from medclip.factory import build_modalities


def picture_of(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


@pytest.mark.parametrize("name", ["ct", "oct", "wsi", "ecg", "image", "expression"])
def test_every_renderer_draws_a_non_blank_tile_from_a_loaded_sample(name):
    plugin = build_modalities({name: {}})[name]
    sample = plugin.synthetic(1, seed=0)[0]
    picture = THUMBNAILS.get(name)(sample, name, plugin)
    pixels = picture_of(png_bytes(picture))
    assert pixels.shape == (TILE, TILE, 3)
    assert pixels.std() > 5  # something was drawn, not a flat tile


def test_a_ct_nifti_file_is_drawn_through_the_plugin(tmp_path):
    """A real NIfTI written by nibabel, read by the CT plugin: three planes over their projections."""
    volume = np.full((32, 32, 24), -1000, dtype=np.int16)  # air
    volume[8:24, 8:24, 6:18] = 300  # a dense block in the middle, visible in every plane
    path = tmp_path / "chest.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.diag([1.5, 1.5, 2.0, 1.0])), path)
    plugin = build_modalities({"ct": {}})["ct"]
    pixels = picture_of(png_bytes(render_reference(plugin, "ct", path)))
    assert pixels.shape == (TILE, TILE, 3)
    third = TILE // 3
    for column in range(3):  # each plane's mid-slice (top half) shows the bright block on dark air
        plane = pixels[: TILE // 2, column * third : (column + 1) * third]
        assert plane.max() > 200 and plane.min() < 30


def test_unreadable_rows_become_tiles_and_text_modalities_get_a_placeholder(tmp_path):
    ct = build_modalities({"ct": {}})["ct"]
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti at all")
    missing = tmp_path / "gone.nii.gz"
    tiles = render_rows(ct, "ct", {1: broken, 2: missing}, [1, 2, 3, 1])
    assert sorted(tiles) == [1, 2, 3]  # each row once; row 3 has no reference in this split
    failure_red = np.array([0xFF, 0xEB, 0xEE])
    for png in tiles.values():
        pixels = picture_of(png)
        assert (np.abs(pixels - failure_red).sum(axis=2) < 3).mean() > 0.8  # the "could not load (...)" tile
        assert (pixels.sum(axis=2) < 300).any()  # with its reason written on it
    report = build_modalities({"report": {}})["report"]
    placeholder = picture_of(png_bytes(render_reference(report, "report", "chest CT: no effusion.")))
    assert (np.abs(placeholder - [0xF5, 0xF5, 0xF5]).sum(axis=2) < 3).mean() > 0.8
    assert "report" not in THUMBNAILS
