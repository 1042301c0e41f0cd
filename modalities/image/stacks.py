"""TIFF and NumPy images, including multichannel stacks with named channels (Cell Painting: 5+ channels).

- TIFF (tifffile): a 2-D image (``YX``), colour (``YXS``), or, for ``image_type: multichannel``, a stack with one
  channel axis (``CYX``, ``IYX``, ``QYX``, ``SYX`` or ``YXS``). Depth or time axes (``Z``, ``T``) are refused
  (``not_2d``): a z-stack is not a set of channels.
- NumPy ``.npy``: ``(H, W)`` or ``(C, H, W)``, read without pickle; the header is checked before the data is mapped.
- Channel names, first found of: the manifest cell (``stack.tiff#channels=DNA,ER,RNA,AGP,Mito``), a JSON sidecar
  next to the file (``stack.json``: ``{"channels": [...], "spacing": [row_mm, column_mm]}``), the OME-XML channel
  names, the ImageJ ``Labels``. A multichannel stack without names is refused (``unnamed_channels``): guessing the
  order would silently swap stains. Names only select a configured channel; they never reach an output.
- Pixel size: the sidecar's ``spacing`` (TIFF resolution tags are too often a 72 dpi default to trust).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medclip.data.safe_io import check_decoded_size, read_limited, require_regular_file
from medclip.types import ModalityError

from .options import ReadOptions
from .record import ImageRecord

SIDECAR_MAX_BYTES = 65536
CHANNEL_AXES = "CIQS"
WORKING_BYTES_PER_VALUE = 8  # the decoded values plus their float32 copy
_OME_CHANNEL = re.compile(r"<Channel\b[^>]*?\bName=\"([^\"]*)\"")


def sidecar(path: Path) -> dict:
    """The image's JSON sidecar (``stem.json``), or {} when there is none."""
    side = path.with_suffix(".json")
    if not side.exists():
        return {}
    try:
        data = json.loads(read_limited(side, SIDECAR_MAX_BYTES, "sidecar"))
    except ModalityError:
        raise
    except Exception:
        raise ModalityError("bad_sidecar", "the image's JSON sidecar is not valid JSON") from None
    if not isinstance(data, dict):
        raise ModalityError("bad_sidecar", "the image's JSON sidecar must hold an object")
    return data


def sidecar_channels(data: dict) -> list[str] | None:
    names = data.get("channels")
    if names is None:
        return None
    if not isinstance(names, list) or not all(isinstance(name, str) and name.strip() for name in names):
        raise ModalityError("bad_sidecar", "the sidecar's 'channels' must be a list of names")
    return [name.strip() for name in names]


def sidecar_spacing(data: dict) -> tuple[float, float] | None:
    spacing = data.get("spacing")
    if spacing is None:
        return None
    if (
        not isinstance(spacing, list)
        or len(spacing) != 2
        or not all(isinstance(value, int | float) and np.isfinite(value) and value > 0 for value in spacing)
    ):
        raise ModalityError("bad_sidecar", "the sidecar's 'spacing' must be two positive sizes in mm (row, column)")
    return float(spacing[0]), float(spacing[1])


def read_tiff_image(path: Path, options: ReadOptions, channel_names: Sequence[str] | None = None) -> ImageRecord:
    """Read a TIFF image or stack (module docstring)."""
    import tifffile

    require_regular_file(path, "TIFF image")
    side = sidecar(path)
    try:
        with tifffile.TiffFile(path) as tiff:
            series = tiff.series[0]
            shape, axes, dtype = tuple(series.shape), series.axes, np.dtype(series.dtype)
            _check_layout(shape, axes, dtype, options)
            embedded = _embedded_channel_names(tiff)
            try:
                values = np.asarray(series.asarray())
            except Exception as error:
                raise ModalityError(
                    "undecodable_pixels", f"the TIFF pixels could not be decoded ({type(error).__name__})"
                ) from None
    except ModalityError:
        raise
    except Exception as error:  # tifffile raises many kinds on damaged files
        raise ModalityError("unreadable", f"the file is not a readable TIFF ({type(error).__name__})") from None
    stack = _channels_first(values, axes)  # (C, H, W)
    names = channel_names or sidecar_channels(side) or embedded
    return _record(stack, names, sidecar_spacing(side), "tiff", path, options)


def read_numpy_image(path: Path, options: ReadOptions, channel_names: Sequence[str] | None = None) -> ImageRecord:
    """Read an ``.npy`` image ``(H, W)`` or stack ``(C, H, W)`` (module docstring)."""
    info = require_regular_file(path, "NumPy image")
    side = sidecar(path)
    shape, dtype, offset = _npy_header(path)
    axes = "YX" if len(shape) == 2 else "CYX" if len(shape) == 3 else "?" * len(shape)
    _check_layout(shape, axes, dtype, options)
    if offset + dtype.itemsize * int(np.prod(shape)) > info.st_size:
        raise ModalityError("truncated_file", "the .npy file is shorter than the array its header declares")
    try:
        values = np.array(np.load(path, mmap_mode="r", allow_pickle=False))
    except Exception as error:
        raise ModalityError("unreadable", f"the .npy array could not be read ({type(error).__name__})") from None
    stack = values[None] if values.ndim == 2 else values  # (C, H, W)
    names = channel_names or sidecar_channels(side)
    return _record(stack, names, sidecar_spacing(side), "numpy", path, options)


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) from an .npy header, without reading the data (``unreadable`` if damaged)."""
    from numpy.lib import format as npy

    try:
        with open(path, "rb") as handle:
            version = npy.read_magic(handle)
            reader = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
            if reader is None:
                raise ValueError("unsupported .npy version")
            shape, _, dtype = reader(handle, max_header_size=10000)
            offset = handle.tell()
    except Exception as error:
        raise ModalityError("unreadable", f"the .npy header is damaged ({type(error).__name__})") from None
    if dtype.hasobject:
        raise ModalityError("unreadable", "the .npy file holds Python objects, which are never unpickled")
    return tuple(int(size) for size in shape), dtype, offset


def _check_layout(shape: tuple[int, ...], axes: str, dtype: np.dtype, options: ReadOptions) -> None:
    """Refuse what is not a 2-D image of the configured type, and anything over the budget, before decoding."""
    if "Y" not in axes or "X" not in axes or any(axis in "ZT" for axis in axes) or len(axes) != len(shape):
        raise ModalityError("not_2d", f"the file holds an array with axes {axes}, not a 2-D image or channel stack")
    extra = [axis for axis in axes if axis not in "YX"]
    if len(extra) > 1 or any(axis not in CHANNEL_AXES for axis in extra):
        raise ModalityError("not_2d", f"the file holds an array with axes {axes}, not a 2-D image or channel stack")
    channels = shape[axes.index(extra[0])] if extra else 1
    colour = extra and extra[0] in "SC" and channels in (3, 4)  # RGB(A) samples, or a (3, H, W) array
    if options.image_type != "multichannel" and channels != 1 and not colour:
        raise ModalityError("multiframe", "the file holds several pages or channels; image_type is not multichannel")
    if dtype.kind not in "uif" or dtype == np.bool_:
        raise ModalityError("unsupported_bit_depth", f"pixels of type {dtype} are not an intensity image")
    options.check_size(shape[axes.index("Y")], shape[axes.index("X")])
    check_decoded_size(shape, max(WORKING_BYTES_PER_VALUE, dtype.itemsize + 4), options.max_decoded_mb, "image")


def _channels_first(values: np.ndarray, axes: str) -> np.ndarray:
    """The decoded array as (C, H, W)."""
    order = [axes.index(axis) for axis in axes if axis not in "YX"] + [axes.index("Y"), axes.index("X")]
    arranged = np.transpose(values, order)
    return arranged[None] if arranged.ndim == 2 else arranged


def _embedded_channel_names(tiff) -> list[str] | None:
    """Channel names from OME-XML or ImageJ metadata, if the file has them."""
    ome = tiff.ome_metadata
    if ome:
        names = _OME_CHANNEL.findall(ome)
        if names:
            return [name.strip() for name in names]
    imagej = tiff.imagej_metadata or {}
    labels = imagej.get("Labels")
    if isinstance(labels, list | tuple) and labels and all(isinstance(label, str) for label in labels):
        return [label.strip() for label in labels]
    return None


def _record(
    stack: np.ndarray,
    names: Sequence[str] | None,
    spacing: tuple[float, float] | None,
    source: str,
    path: Path,
    options: ReadOptions,
) -> ImageRecord:
    """Scale the (C, H, W) stack and give it the configured image type."""
    details = {"intensity": options.intensity, "voi": "none", "spacing_known": spacing is not None}
    if options.image_type == "multichannel":
        if not names:
            raise ModalityError(
                "unnamed_channels",
                "a multichannel stack needs channel names (manifest '#channels=a,b,c', a JSON sidecar, OME-XML or "
                "ImageJ labels)",
            )
        placed, present = options.place_channels(options.scale(stack), list(names))
        details["channels_present"] = present
        pixels = placed
    else:
        if stack.shape[0] == 4:
            stack = _opaque(stack)
        details["color"] = "grayscale" if stack.shape[0] == 1 else "rgb"
        pixels = options.to_image_type(options.scale(stack))
    return ImageRecord(pixels=pixels, spacing=spacing, source=source, study_key=str(path.resolve()), details=details)


def _opaque(stack: np.ndarray) -> np.ndarray:
    """RGBA -> RGB when every pixel is opaque (``has_transparency`` otherwise)."""
    alpha = stack[3]
    full = np.iinfo(stack.dtype).max if stack.dtype.kind in "ui" else 1.0
    if float(alpha.min()) != float(full):
        raise ModalityError("has_transparency", "the image has transparent pixels, whose intensity is undefined")
    return stack[:3]
