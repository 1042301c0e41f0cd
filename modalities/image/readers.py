"""Which reader opens an image input: DICOM, PNG/JPEG, TIFF or NumPy, by suffix (or the DICOM preamble)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from medclip.data.safe_io import require_regular_file
from medclip.registry import Registry
from medclip.types import ModalityError

from .dicom import read_dicom_image
from .options import ReadOptions
from .raster import read_raster_image
from .record import ImageRecord
from .stacks import read_numpy_image, read_tiff_image

# format -> reader(path, options, channel names from the manifest cell or None) -> ImageRecord
IMAGE_READERS: Registry[Callable[[Path, ReadOptions, Sequence[str] | None], ImageRecord]] = Registry("image reader")
IMAGE_READERS.register("dicom", lambda path, options, names: read_dicom_image(path, options))
IMAGE_READERS.register("raster", lambda path, options, names: read_raster_image(path, options))
IMAGE_READERS.register("tiff", read_tiff_image)
IMAGE_READERS.register("numpy", read_numpy_image)

SUFFIX_FORMATS = {
    ".dcm": "dicom",
    ".dicom": "dicom",
    ".png": "raster",
    ".jpg": "raster",
    ".jpeg": "raster",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".npy": "numpy",
}
DICOM_PREAMBLE = 128  # bytes before the "DICM" magic of a DICOM file


def image_format(path: Path) -> str:
    """The reader for ``path``: by suffix; a file without a known suffix is DICOM if it has the DICOM magic.

    Raises:
        ModalityError: ``missing_file``, ``not_regular_file``, ``unsupported_format``.
    """
    require_regular_file(path, "image")
    name = path.name.lower()
    for suffix, kind in SUFFIX_FORMATS.items():
        if name.endswith(suffix):
            return kind
    with open(path, "rb") as handle:  # a regular file (checked above): reading 132 bytes cannot block
        head = handle.read(DICOM_PREAMBLE + 4)
    if head[DICOM_PREAMBLE:] == b"DICM":
        return "dicom"
    raise ModalityError(
        "unsupported_format",
        f"image inputs are DICOM (any name), {', '.join(SUFFIX_FORMATS)} files; got a '{path.suffix}' file",
    )
