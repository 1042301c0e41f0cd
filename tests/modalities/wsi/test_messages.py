"""Refusal messages name the reason, never the file's name or content (issue 14), and each failure has its own code
instead of a catch-all."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile

from medclip.types import ModalityError
from modalities.wsi import WSIConfig, WSIModality, parse_reference
from modalities.wsi.synthetic import render_tissue, tissue_type_map, write_slide

NAME = "Doe_Jane_1957"  # stands for a patient's name in a file name or in the file


def tissue(size: int = 256) -> np.ndarray:
    rng = np.random.default_rng(9)
    return render_tissue(tissue_type_map(size, size, rng, tissue_fraction=0.9), rng)


@pytest.fixture
def refused(tmp_path) -> dict[str, tuple[str, str]]:
    """Inputs named and filled with ``NAME`` -> (manifest cell, the reason each must be refused with)."""
    folder = tmp_path / NAME
    folder.mkdir()
    garbage = folder / f"{NAME}.svs"
    garbage.write_bytes(f"II*\x00 {NAME} ".encode() * 50)
    sixteen = folder / f"{NAME}_16bit.tiff"
    tifffile.imwrite(sixteen, tissue().astype(np.uint16), tile=(128, 128), photometric="rgb", description=NAME,
                     metadata=None)  # fmt: skip
    bogus = folder / f"{NAME}.svs.tiff"
    description = f"Aperio Image Library v12\n256x256 (128x128) JPEG/RGB|Patient = {NAME}|MPP = nan"
    tifffile.imwrite(bogus, tissue(), tile=(128, 128), compression="jpeg", photometric="rgb",
                     description=description, metadata=None)  # fmt: skip
    good = write_slide(folder / f"{NAME}_good.tiff", tissue(), mpp=0.5, levels=2, tile=128)
    blank = write_slide(folder / f"{NAME}_blank.tiff", np.full((256, 256, 3), 241, np.uint8), mpp=0.5, levels=1)
    fifo = folder / f"{NAME}.fifo.tiff"
    os.mkfifo(fifo)
    return {
        "not a slide": (str(garbage), "unreadable"),
        "16-bit samples": (str(sixteen), "unsupported_layout"),
        "MPP of NaN": (str(bogus), "implausible_spacing"),
        "a FIFO": (str(fifo), "not_regular_file"),
        "a folder": (str(folder), "not_regular_file"),
        "absent": (str(folder / f"{NAME}_absent.tiff"), "missing_file"),
        "no tissue": (str(blank), "no_tissue"),
        "a level that does not exist": (f"{good}#x=0,y=0,level=7,size=32", "bad_reference"),
        "off the slide": (f"{good}#x=100000,y=0,level=0,size=32", "out_of_bounds"),
        "a huge patch": (f"{good}#x=0,y=0,level=0,size=100000", "too_large"),
        "an absurd patch MPP": (f"{good}#mpp=5000,x=0,y=0,size=32", "implausible_spacing"),
    }


def test_each_failure_has_its_own_reason_and_no_message_quotes_the_file(refused):
    plugin = WSIModality(WSIConfig(patch_size=32, thumbnail_size=128, max_decoded_mb=64, assume_mpp=0.5))
    for what, (cell, expected) in refused.items():
        with pytest.raises(ModalityError) as caught:
            plugin.load(cell)
        assert caught.value.reason == expected, what
        assert NAME not in str(caught.value) and "Doe" not in str(caught.value), what


def test_a_bad_fragment_is_not_quoted_back():
    with pytest.raises(ModalityError) as caught:
        parse_reference(f"slide.tiff#x=1,y=2,{NAME.lower()}=3")
    assert caught.value.reason == "bad_reference" and "doe" not in str(caught.value).lower()
