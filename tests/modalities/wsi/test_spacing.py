"""Plausible MPP (issue 14): a bogus resolution from a TIFF tag, an Aperio description or a manifest cell is refused
with ``implausible_spacing``, is never replaced by ``assume_mpp``, and does not stop level-referenced reads."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import tifffile

from medclip.config import ConfigError
from modalities.wsi import WSIConfig, WSIModality
from modalities.wsi.slide import Slide
from modalities.wsi.spacing import MAX_MPP, MIN_MPP, check_slide_mpp
from modalities.wsi.synthetic import render_tissue, tissue_type_map, write_slide
from tests.helpers import refusal


def tissue(size: int = 256) -> np.ndarray:
    rng = np.random.default_rng(5)
    return render_tissue(tissue_type_map(size, size, rng, tissue_fraction=0.9), rng)


def with_resolution(path, numerator: int, denominator: int, axes=("XResolution", "YResolution")):
    """Rewrite level 0's resolution rationals (pixels per centimetre) in place."""
    with tifffile.TiffFile(path) as handle:
        offsets = [handle.pages[0].tags[axis].valueoffset for axis in axes]
    with path.open("r+b") as handle:
        for offset in offsets:
            handle.seek(offset)
            handle.write(struct.pack("<II", numerator, denominator))
    return path


@pytest.mark.parametrize(
    ("name", "numerator", "denominator"),
    [("zero", 0, 1), ("a billion microns", 1, 100000), ("a thousandth of a micron", 4000000000, 400)],
)
def test_bogus_resolution_tags_are_implausible_even_with_assume_mpp(tmp_path, name, numerator, denominator):
    path = with_resolution(write_slide(tmp_path / "slide.tiff", tissue(), mpp=0.5, levels=2, tile=128),
                           numerator, denominator)  # fmt: skip
    for options in ({}, {"assume_mpp": 0.5}):  # the old reader took 0 for "no MPP" and used the assumed one
        plugin = WSIModality(WSIConfig(patch_size=32, thumbnail_size=128, **options))
        assert refusal(lambda plugin=plugin: plugin.load(path)) == "implausible_spacing", name
    by_level = WSIModality(WSIConfig(patch_size=32)).load(f"{path}#x=0,y=0,level=1,size=32")  # needs no MPP
    assert by_level["wsi"].shape == (1, 32, 32, 3) and by_level["wsi_meta"]["mpp"] is None


def test_anisotropic_pixels_and_an_aperio_nan_are_implausible(tmp_path):
    path = with_resolution(write_slide(tmp_path / "slide.tiff", tissue(), mpp=0.5, levels=1, tile=128), 200, 1,
                           axes=("YResolution",))  # fmt: skip
    assert refusal(lambda: Slide(path).require_mpp()) == "implausible_spacing"  # 0.5 x 50 microns
    description = "Aperio Image Library v12.0.15\n256x256 [0,0 256x256] (128x128) JPEG/RGB Q=90|AppMag = 20|MPP = nan"
    svs = tmp_path / "slide.svs"
    tifffile.imwrite(svs, tissue(), tile=(128, 128), compression="jpeg", photometric="rgb", description=description,
                     metadata=None)  # fmt: skip
    assert refusal(lambda: Slide(svs, assume_mpp=0.5).require_mpp()) == "implausible_spacing"
    good = tmp_path / "good.svs"
    tifffile.imwrite(good, tissue(), tile=(128, 128), compression="jpeg", photometric="rgb",
                     description=description.replace("nan", "0.2527"), metadata=None)  # fmt: skip
    assert Slide(good).require_mpp() == pytest.approx(0.2527)


def test_manifest_cells_with_absurd_mpp_or_positions_are_refused(tmp_path):
    path = write_slide(tmp_path / "slide.tiff", tissue(), mpp=0.5, levels=2, tile=128)
    plugin = WSIModality(WSIConfig(patch_size=32))
    assert refusal(lambda: plugin.load(f"{path}#mpp=1e9,x=0,y=0,size=32")) == "implausible_spacing"
    assert refusal(lambda: plugin.load(f"{path}#mpp=1e-9,x=0,y=0,size=32")) == "implausible_spacing"
    assert refusal(lambda: plugin.load(f"{path}#mpp=0.5,cx=1e999,cy=0,size=32")) == "bad_reference"  # infinity
    assert plugin.load(f"{path}#mpp=1.0,x=0,y=0,size=32")["wsi"].shape == (1, 32, 32, 3)


def test_the_plausible_range_bounds_the_config_too():
    assert check_slide_mpp("0.2527", 0.2528) == pytest.approx(0.25275)  # OpenSlide reports strings
    for value in (MIN_MPP / 2, MAX_MPP * 2, float("nan"), float("inf")):
        with pytest.raises(ConfigError):
            WSIConfig(mpp=value)
        with pytest.raises(ConfigError):
            WSIConfig(assume_mpp=value)
    assert WSIConfig(mpp=MIN_MPP).mpp == MIN_MPP and WSIConfig(assume_mpp=0.0).assume_mpp == 0.0
