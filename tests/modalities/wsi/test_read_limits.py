"""Memory from small files (issue 14): decode units, read regions, the thumbnail's level and the patch grid are checked
against ``max_decoded_mb`` before anything is allocated, and a slide without a pyramid is thumbnailed block by block.
"""

from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest
import tifffile

from medclip.types import ModalityError
from modalities.wsi import WSIConfig, WSIModality
from modalities.wsi.grid import tissue_grid
from modalities.wsi.slide import Slide
from modalities.wsi.synthetic import render_tissue, tissue_type_map, write_slide
from tests.helpers import refusal


def tissue(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return render_tissue(tissue_type_map(size, size, rng, tissue_fraction=0.9), rng)


def traced_peak_mb(call) -> float:
    """Peak of traced (NumPy and Python) allocations while ``call`` runs, in MB."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def single_level(path, side: int, tile: int = 256):
    """A one-level JPEG slide of ``side`` pixels, tissue in the middle, written tile by tile (small in memory)."""
    pattern = tissue(tile)
    glass = np.full((tile, tile, 3), 242, np.uint8)
    across = side // tile

    def tiles():
        for row in range(across):
            for column in range(across):
                yield pattern if abs(row - across / 2) < across / 4 and abs(column - across / 2) < across / 4 else glass

    tifffile.imwrite(path, tiles(), shape=(side, side, 3), dtype=np.uint8, tile=(tile, tile), compression="jpeg",
                     photometric="rgb", resolution=(2e4, 2e4), resolutionunit="CENTIMETER", metadata=None)  # fmt: skip
    return path


def test_a_single_level_slide_is_thumbnailed_in_the_memory_of_the_thumbnail(tmp_path):
    path = single_level(tmp_path / "flat.tiff", 4096)  # one 48 MB level, no pyramid
    slide = Slide(path)
    assert len(slide.levels) == 1
    peak = traced_peak_mb(lambda: slide.thumbnail(256))
    assert peak < 12, f"the thumbnail of a 48 MB level took {peak:.0f} MB"  # the old whole-level read: > 48 MB
    grid = tissue_grid(slide, mpp=2.0, patch_size=64, stride=64, thumbnail_size=256)
    xs, ys = grid.coordinates[:, 0], grid.coordinates[:, 1]
    assert len(grid) and (xs >= 1024 - 256).all() and (xs < 3072 + 256).all() and (ys >= 1024 - 256).all()


def test_the_block_read_thumbnail_is_the_area_average_of_the_level(tmp_path):
    image = tissue(1024, seed=3)
    path = write_slide(tmp_path / "flat.tiff", image, mpp=0.5, levels=1, tile=128, compression="zlib")
    thumbnail, scale = Slide(path).thumbnail(256)
    expected = image.reshape(256, 4, 256, 4, 3).astype(np.float64).mean(axis=(1, 3))  # (256, 256, 3) 4x4 means
    assert thumbnail.shape == (256, 256, 3) and scale == 4.0
    np.testing.assert_array_equal(thumbnail, np.round(expected).astype(np.uint8))
    odd, _ = Slide(path).thumbnail(300)  # a non-integer scale: each output pixel averages the level pixels in it
    bins = np.arange(1024) * 300 // 1024  # (1024,) output row / column of each level row / column
    sums = np.zeros((300, 300, 3))
    np.add.at(sums, (bins[:, None], bins[None, :]), image.astype(np.float64))
    counts = np.bincount(bins)[:, None] * np.bincount(bins)[None, :]  # (300, 300) level pixels per output pixel
    np.testing.assert_array_equal(odd, np.round(sums / counts[..., None]).astype(np.uint8))


def test_a_thumbnail_level_over_the_budget_is_refused_before_decoding(tmp_path):
    path = single_level(tmp_path / "flat.tiff", 4096)
    plugin = WSIModality(WSIConfig(patch_size=64, thumbnail_size=256, max_decoded_mb=16))
    peak = traced_peak_mb(lambda: pytest.raises(ModalityError, plugin.load, path))
    assert refusal(lambda: plugin.load(path)) == "too_large" and peak < 4
    assert WSIModality(WSIConfig(patch_size=64, thumbnail_size=256)).load(path)["wsi"].shape[1:] == (64, 64, 3)


def test_a_decode_unit_over_the_budget_is_refused_when_the_slide_opens(tmp_path):
    path = write_slide(tmp_path / "tiles.tiff", tissue(512), mpp=0.5, levels=2, tile=256)
    with tifffile.TiffFile(path) as handle:
        width_tag, length_tag = handle.pages[0].tags["TileWidth"], handle.pages[0].tags["TileLength"]
    with path.open("r+b") as handle:  # tiles of 65536 x 65536: one decode would take 12 GB
        for tag in (width_tag, length_tag):
            handle.seek(tag.offset)
            handle.write(struct.pack("<HHII", tag.code, 4, 1, 65536))
    assert refusal(lambda: Slide(path)) == "too_large"
    untiled = tmp_path / "strip.tiff"
    tifffile.imwrite(untiled, np.full((2048, 2048, 3), 242, np.uint8), rowsperstrip=2048, compression="zlib",
                     photometric="rgb", resolution=(2e4, 2e4), resolutionunit="CENTIMETER", metadata=None)  # fmt: skip
    assert refusal(lambda: Slide(untiled, max_decoded_mb=8)) == "too_large"  # one 12 MB strip
    assert Slide(untiled, max_decoded_mb=16).levels[0].decode_bytes == 2048 * 2048 * 3


def test_a_jpeg_tile_declaring_a_larger_frame_is_refused_before_decoding(tmp_path):
    path = write_slide(tmp_path / "bomb.tiff", tissue(256), mpp=0.5, levels=1, tile=128)
    with tifffile.TiffFile(path) as handle:
        offset, count = handle.pages[0].dataoffsets[0], handle.pages[0].databytecounts[0]
    data = bytearray(path.read_bytes())
    frame = data.find(b"\xff\xc0", offset, offset + count)
    data[frame + 5 : frame + 9] = struct.pack(">HH", 20000, 20000)  # a 1.2 GB frame in a 128-pixel tile
    path.write_bytes(bytes(data))
    slide = Slide(path)
    peak = traced_peak_mb(lambda: pytest.raises(ModalityError, slide.read_region, 0, 0, 0, 128, 128))
    assert refusal(lambda: slide.read_region(0, 0, 0, 128, 128)) == "unreadable_level" and peak < 4
    assert refusal(lambda: slide.read_region(0, 0, 0, 100, 100)) == "unreadable_level"  # the assembling path too
    assert slide.read_region(128, 128, 0, 128, 128).shape == (128, 128, 3)  # intact tiles still read


def test_regions_and_patches_over_the_budget_are_refused(tmp_path):
    path = write_slide(tmp_path / "slide.tiff", tissue(512), mpp=0.5, levels=2, tile=256)
    slide = Slide(path, max_decoded_mb=1)
    assert refusal(lambda: slide.read_region(0, 0, 0, 1024, 1024)) == "too_large"  # 3 MB, mostly padding
    assert refusal(lambda: slide.read_patch(0, 0, 1024, 0.5)) == "too_large"
    plugin = WSIModality(WSIConfig(patch_size=32, max_decoded_mb=1))
    assert refusal(lambda: plugin.load(f"{path}#x=0,y=0,level=0,size=100000")) == "too_large"
    assert plugin.load(f"{path}#x=0,y=0,level=0,size=256")["wsi"].shape == (1, 256, 256, 3)


def test_the_patch_grid_size_is_checked_before_it_is_allocated(tmp_path):
    path = write_slide(tmp_path / "slide.tiff", tissue(512), mpp=100.0, levels=1, tile=256)  # 100 microns a pixel
    slide = Slide(path)
    # 0.01-micron patches on a 100-micron scan: a 2e8 x 2e8 grid; the old code tried to allocate it
    assert refusal(lambda: tissue_grid(slide, mpp=0.01, patch_size=8, stride=8, thumbnail_size=128)) == "too_large"
