"""Real pixel data shipped in packages, for the image tests: pydicom's test files and scikit-image's sample images.

pydicom ships no CR/DX/MG/OP objects, so the tests write them with pydicom from these real pixels
(``modalities.image.dicom_write``) and read them back through the plugin.
"""

from __future__ import annotations

import functools

import numpy as np
import pydicom
from pydicom.data import get_testdata_file


@functools.cache
def pydicom_8bit() -> np.ndarray:
    """(512, 512) uint8: the pixels of pydicom's ``image_dfl.dcm`` (a real deflated secondary capture)."""
    return np.asarray(pydicom.dcmread(get_testdata_file("image_dfl.dcm")).pixel_array, dtype=np.uint8)


@functools.cache
def pydicom_ct_stored() -> np.ndarray:
    """(128, 128) int16: the stored values of pydicom's ``CT_small.dcm``."""
    return np.asarray(pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array, dtype=np.int16)


def skimage_gray(name: str = "camera") -> np.ndarray:
    """A grayscale scikit-image sample (camera, moon, coins, ...) as uint8."""
    import skimage.data

    return np.asarray(getattr(skimage.data, name)(), dtype=np.uint8)


@functools.cache
def skimage_retina(step: int = 4) -> np.ndarray:
    """scikit-image's fundus photograph (RGB uint8), subsampled by ``step`` to keep the tests fast."""
    import skimage.data

    return np.ascontiguousarray(skimage.data.retina()[::step, ::step])


def twelve_bit(pixels: np.ndarray) -> np.ndarray:
    """8-bit pixels spread over 12 bits (0..4080), as a 12-bit detector would store them."""
    return pixels.astype(np.uint16) * 16
