"""Slide readers behind one small interface: pyramid levels, MPP, and in-bounds region reads at a level.

``WSI_READERS`` maps a name to a backend class: "tiffslide" (pure Python, the default) and "openslide" (optional, when
``openslide-python`` and ``openslide-bin`` are installed). The tiffslide backend reads tiled TIFF levels through
``tiles.TiledLevel`` (tile-aligned, thread-parallel) and falls back to tiffslide's own reader for other layouts.

Neither backend ever touches a slide's associated images (label, macro, thumbnail pages): those can show a
burned-in patient name, so only pyramid levels are read. Only MPP and the level geometry are taken from the
slide's properties; no other metadata (dates, barcodes, file names) is read into medclip.

Opening a slide parses headers only; nothing is decoded. Each level reports ``decode_bytes``, what one decode of it
allocates (a tile, a strip, or a whole untiled page, as the header declares it), so ``Slide`` can refuse absurd
tile sizes before any decoder runs. A backend reports the MPP the slide declares, even when it is bogus (0, NaN,
out of range): ``spacing.py`` judges it, and a bogus value is never mistaken for a missing one.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from medclip.registry import Registry, lazy_import
from medclip.types import ModalityError

from .tiles import ChunkGuard, TiledLevel


@dataclass(frozen=True)
class Level:
    """One pyramid level.

    Attributes:
        width: pixels across.
        height: pixels down.
        downsample: level-0 pixels per pixel of this level.
        tile_width: stored tile width (0 when the level is not tiled).
        tile_height: stored tile height (0 when the level is not tiled).
        decode_bytes: bytes one decode of this level allocates (a tile, a strip or the whole page), from the
            header; 0 when the reader cannot tell.
    """

    width: int
    height: int
    downsample: float
    tile_width: int = 0
    tile_height: int = 0
    decode_bytes: int = 0


class SlideBackend:
    """What a reader provides; subclasses fill ``levels`` and ``mpp`` when opening.

    Attributes:
        levels: pyramid levels, level 0 (full resolution) first.
        mpp: (x, y) microns per level-0 pixel as the slide declares them (not validated; NaN where a declared
            resolution cannot be turned into a number), or None when the slide declares none.
    """

    name = ""
    levels: list[Level]
    mpp: tuple[object, object] | None

    def read(self, level: int, x: int, y: int, width: int, height: int, out: np.ndarray | None = None) -> np.ndarray:
        """The region at (x, y) in *level* pixels, fully inside the level -> (height, width, 3) uint8 RGB.

        ``out`` is a (height, width, 3) uint8 buffer a backend may decode into (returning it) to save a copy; a
        backend that cannot returns its own array and the caller copies.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release file handles."""


WSI_READERS: Registry[type[SlideBackend]] = Registry("wsi reader")


PHYSICAL_UNITS = ("INCH", "CENTIMETER", "MILLIMETER", "MICROMETER")  # TIFF resolution units with a length
SUPPORTED_AXES = ("YXS", "CYX", "YX")  # interleaved RGB(A), planar RGB(A), greyscale
SUPPORTED_SAMPLES = (1, 3, 4)  # grey, RGB, RGBA


def _unsupported(what: str) -> ModalityError:
    return ModalityError("unsupported_layout", f"the slide's {what} is not supported (8-bit grey, RGB or RGBA only)")


def _decode_bytes(page) -> int:
    """Bytes tifffile allocates to decode one tile or strip of ``page`` (Python integers: no overflow)."""
    samples = int(page.samplesperpixel)
    itemsize = int(page.dtype.itemsize) if page.dtype is not None else 8
    if page.is_tiled:
        return int(page.tilewidth) * int(page.tilelength) * max(int(page.tiledepth), 1) * samples * itemsize
    rows = min(max(int(page.rowsperstrip), 1), max(int(page.imagelength), 1))
    return rows * int(page.imagewidth) * max(int(page.imagedepth), 1) * samples * itemsize


@WSI_READERS.register("tiffslide")
class TiffSlideBackend(SlideBackend):
    """tiffslide for the slide's structure and MPP; tile-aligned reads for tiled levels, tiffslide's zarr otherwise."""

    name = "tiffslide"

    def __init__(self, path: str | os.PathLike) -> None:
        tiffslide = lazy_import("tiffslide", "reading slides with the tiffslide reader")
        self._slide = tiffslide.TiffSlide(os.fspath(path))
        self._tiles: list = []
        try:
            self._open(path)
        except BaseException:
            self.close()
            raise

    def _open(self, path: str | os.PathLike) -> None:
        properties = self._slide.properties
        self.mpp = self._declared_mpp(properties)
        series = self._slide.ts_tifffile.series[properties["tiffslide.series-index"]]
        self._axes = properties["tiffslide.series-axes"]
        if self._axes not in SUPPORTED_AXES:
            raise _unsupported("axis layout")
        self.levels = []
        for index, (width, height) in enumerate(self._slide.level_dimensions):
            page = series.levels[index].keyframe
            if page.dtype != np.uint8:
                raise _unsupported("sample type")
            if int(page.samplesperpixel) not in SUPPORTED_SAMPLES:
                raise _unsupported("number of colour samples")
            self.levels.append(
                Level(
                    int(width),
                    int(height),
                    float(self._slide.level_downsamples[index]),
                    int(page.tilewidth or 0),
                    int(page.tilelength or 0),
                    _decode_bytes(page),
                )
            )
        for level in series.levels:  # file handles are opened only once every level passed the checks
            page = level.keyframe
            if len(level.pages) == 1 and TiledLevel.supports(page):
                self._tiles.append(TiledLevel(page, path))
            else:  # tiffslide's zarr view decodes these; their frame headers are checked first
                self._tiles.append(ChunkGuard(level.pages, page, path))

    @staticmethod
    def _declared_mpp(properties) -> tuple[object, object] | None:
        """The MPP the slide declares; NaN when it has resolution tags in a length unit that give no number (a
        resolution of 0, which tiffslide skips as if there were none); None when it declares none."""
        mpp_x, mpp_y = properties.get("tiffslide.mpp-x"), properties.get("tiffslide.mpp-y")
        if mpp_x is not None and mpp_y is not None:
            return mpp_x, mpp_y
        if properties.get("tiff.ResolutionUnit") in PHYSICAL_UNITS and properties.get("tiff.XResolution") is not None:
            return math.nan, math.nan
        return None

    def read(self, level: int, x: int, y: int, width: int, height: int, out: np.ndarray | None = None) -> np.ndarray:
        reader = self._tiles[level]
        if isinstance(reader, TiledLevel):
            return reader.read(x, y, width, height, out)
        reader.check(x, y, width, height)
        return self._read_zarr(level, x, y, width, height)

    def _read_zarr(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """Other layouts (strips, planar, 16-bit): tiffslide's zarr view of the level, converted to RGB uint8."""
        array = self._slide.zarr_group[str(level)]
        if self._axes == "YXS":
            region = np.asarray(array[y : y + height, x : x + width])  # (H, W, S)
        elif self._axes == "CYX":
            region = np.moveaxis(np.asarray(array[:, y : y + height, x : x + width]), 0, -1)  # (H, W, C)
        else:  # "YX", the only other layout the backend opens
            region = np.asarray(array[y : y + height, x : x + width])[..., None]  # (H, W, 1)
        if region.dtype != np.uint8:
            raise _unsupported("sample type")
        if region.shape[2] == 1:
            region = np.repeat(region, 3, axis=2)
        return np.ascontiguousarray(region[:, :, :3])  # (H, W, 3)

    def close(self) -> None:
        for reader in self._tiles:
            reader.close()
        if hasattr(self, "_slide"):
            self._slide.close()


@WSI_READERS.register("openslide")
class OpenSlideBackend(SlideBackend):
    """OpenSlide (C library): the widest format support (SVS, NDPI, MRXS, SCN, ...), when installed."""

    name = "openslide"

    def __init__(self, path: str | os.PathLike) -> None:
        openslide = lazy_import(
            "openslide", "reading slides with the openslide reader", "openslide-python openslide-bin"
        )
        self._slide = openslide.OpenSlide(os.fspath(path))
        properties = self._slide.properties
        mpp_x, mpp_y = properties.get("openslide.mpp-x"), properties.get("openslide.mpp-y")
        self.mpp = (mpp_x, mpp_y) if mpp_x is not None and mpp_y is not None else None
        self.levels = []
        for index, (width, height) in enumerate(self._slide.level_dimensions):
            tile_width = int(properties.get(f"openslide.level[{index}].tile-width", 0))
            tile_height = int(properties.get(f"openslide.level[{index}].tile-height", 0))
            self.levels.append(
                Level(
                    int(width),
                    int(height),
                    float(self._slide.level_downsamples[index]),
                    tile_width,
                    tile_height,
                    tile_width * tile_height * 4,  # OpenSlide decodes a tile to ARGB
                )
            )

    def read(self, level: int, x: int, y: int, width: int, height: int, out: np.ndarray | None = None) -> np.ndarray:
        downsample = self.levels[level].downsample
        location = (round(x * downsample), round(y * downsample))  # OpenSlide takes the level-0 top-left
        rgba = np.asarray(self._slide.read_region(location, level, (width, height)))  # (H, W, 4)
        rgb = rgba[:, :, :3].copy()
        rgb[rgba[:, :, 3] == 0] = 255  # OpenSlide leaves missing tiles transparent; they are background (glass)
        return rgb

    def close(self) -> None:
        self._slide.close()
