"""PNG and JPEG images (8 or 16 bits, grayscale or colour) -> ``ImageRecord``.

The header is read first (Pillow reads only the header at ``Image.open``) and the image refused before decoding when
it is too small, too large for the budget (a 40 KB PNG can declare 50 000 x 50 000 pixels), a palette image, a
bilevel image, or animated. PNGs are then decoded with imagecodecs, which keeps 16-bit colour (Pillow reduces it to
8 bits), JPEGs with Pillow (EXIF orientation applied). Intensities are scaled by ``ReadOptions.scale``; an alpha
channel must be fully opaque (a transparent pixel has no defined intensity).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from medclip.data.safe_io import check_decoded_size, read_limited, require_regular_file
from medclip.types import ModalityError

from .options import ReadOptions
from .record import ImageRecord

# Pillow mode -> decoded bands; anything else (CMYK, LAB, HSV, ...) is refused
MODES = {"L": 1, "LA": 2, "I;16": 1, "I;16B": 1, "I;16L": 1, "I": 1, "RGB": 3, "RGBA": 4}
WORKING_BYTES_PER_VALUE = 8  # the decoded values plus their float32 copy


def read_raster_image(path: Path, options: ReadOptions) -> ImageRecord:
    """Read a PNG or JPEG file (the rules of the module docstring)."""
    from PIL import Image

    info = require_regular_file(path, "image")
    kind = "png" if path.name.lower().endswith(".png") else "jpeg"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: the budget below decides
            with Image.open(path) as image:
                width, height = image.size
                mode = image.mode
                frames = int(getattr(image, "n_frames", 1) or 1)
    except Image.DecompressionBombError:
        raise ModalityError("too_large", "the image header declares more pixels than Pillow's safety limit") from None
    except Exception as error:  # Pillow raises many kinds on damaged headers; messages may quote content
        raise ModalityError("unreadable", f"the file is not a readable image ({type(error).__name__})") from None
    if mode in ("P", "PA"):
        raise ModalityError("palette_image", "palette-colour images are not read: save them as grayscale or RGB")
    if mode == "1":
        raise ModalityError("bilevel_image", "1-bit (black and white) images hold no intensities")
    if mode not in MODES:
        raise ModalityError("unsupported_mode", f"images of mode {mode} are not read (grayscale or RGB only)")
    if frames > 1:
        raise ModalityError("multiframe", "animated / multi-frame images are not read as one 2-D image")
    options.check_size(height, width)
    check_decoded_size((MODES[mode], height, width), WORKING_BYTES_PER_VALUE, options.max_decoded_mb, "image")
    # the file itself must fit the budget too; read_limited's limit is also the size of the buffer it reads into,
    # so it is given the file's own size, not the (gigabyte) budget
    check_decoded_size((info.st_size,), 1, options.max_decoded_mb, "image file")
    data = read_limited(path, info.st_size, "image")
    decoded = _decode_png(data) if kind == "png" else _decode_jpeg(path)
    if decoded.shape[:2] != (height, width) and decoded.shape[:2] != (width, height):
        raise ModalityError("bad_header", "the decoded image does not match the size its header declares")
    values = decoded[None] if decoded.ndim == 2 else np.moveaxis(decoded, -1, 0)  # (C, H, W)
    values = _drop_opaque_alpha(values)
    color = "grayscale" if values.shape[0] == 1 else "rgb"
    display = options.to_image_type(options.scale(values))
    details = {"color": color, "intensity": options.intensity, "voi": "none", "spacing_known": False}
    return ImageRecord(pixels=display, spacing=None, source=kind, study_key=str(path.resolve()), details=details)


def _decode_png(data: bytes) -> np.ndarray:
    import imagecodecs

    try:
        return np.asarray(imagecodecs.png_decode(data))
    except Exception as error:
        raise ModalityError("undecodable_pixels", f"the PNG could not be decoded ({type(error).__name__})") from None


def _decode_jpeg(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                return np.asarray(ImageOps.exif_transpose(image))
    except Exception as error:
        raise ModalityError("undecodable_pixels", f"the JPEG could not be decoded ({type(error).__name__})") from None


def _drop_opaque_alpha(values: np.ndarray) -> np.ndarray:
    """(2 or 4, H, W) with alpha -> without it, when every pixel is opaque; refused otherwise."""
    if values.shape[0] not in (2, 4):
        return values
    alpha = values[-1]
    if int(alpha.min()) != np.iinfo(values.dtype).max:
        raise ModalityError("has_transparency", "the image has transparent pixels, whose intensity is undefined")
    return values[:-1]
