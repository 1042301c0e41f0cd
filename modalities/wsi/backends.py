"""Slide readers behind one small interface: pyramid levels, MPP, and in-bounds region reads at a level.

``READERS`` maps a name to a backend class: "tiffslide" (pure Python, the default) and "openslide" (optional, when
``openslide-python`` and ``openslide-bin`` are installed). The tiffslide backend reads tiled TIFF levels through
``tiles.TiledLevel`` (tile-aligned, thread-parallel) and falls back to tiffslide's own reader for other layouts.

Neither backend ever touches a slide's associated images (label, macro, thumbnail pages): those can show a
burned-in patient name, so only pyramid levels are read. Only MPP and the level geometry are taken from the
slide's properties; no other metadata (dates, barcodes, file names) is read into medclip.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from medclip.registry import Registry, lazy_import


@dataclass(frozen=True)
class Level:
    """One pyramid level.

    Attributes:
        width: pixels across.
        height: pixels down.
        downsample: level-0 pixels per pixel of this level.
        tile_width: stored tile width (0 when the level is not tiled).
        tile_height: stored tile height (0 when the level is not tiled).
    """

    width: int
    height: int
    downsample: float
    tile_width: int = 0
    tile_height: int = 0


class SlideBackend:
    """What a reader provides; subclasses fill ``levels`` and ``mpp`` when opening.

    Attributes:
        levels: pyramid levels, level 0 (full resolution) first.
        mpp: (x, y) microns per level-0 pixel, or None when the slide does not say.
    """

    name = ""
    levels: list[Level]
    mpp: tuple[float, float] | None

    def read(self, level: int, x: int, y: int, width: int, height: int, out: np.ndarray | None = None) -> np.ndarray:
        """The region at (x, y) in *level* pixels, fully inside the level -> (height, width, 3) uint8 RGB.

        ``out`` is a (height, width, 3) uint8 buffer a backend may decode into (returning it) to save a copy; a
        backend that cannot returns its own array and the caller copies.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release file handles."""


READERS: Registry[type[SlideBackend]] = Registry("wsi reader")


def _positive_mpp(x: object, y: object) -> tuple[float, float] | None:
    try:
        mpp_x, mpp_y = float(x), float(y)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(mpp_x) and math.isfinite(mpp_y)) or mpp_x <= 0 or mpp_y <= 0:
        return None
    return mpp_x, mpp_y


@READERS.register("tiffslide")
class TiffSlideBackend(SlideBackend):
    """tiffslide for the slide's structure and MPP; tile-aligned reads for tiled levels, tiffslide's zarr otherwise."""

    name = "tiffslide"

    def __init__(self, path: str | os.PathLike) -> None:
        tiffslide = lazy_import("tiffslide", "reading slides with the tiffslide reader")
        self._slide = tiffslide.TiffSlide(os.fspath(path))
        properties = self._slide.properties
        self.mpp = _positive_mpp(properties.get("tiffslide.mpp-x"), properties.get("tiffslide.mpp-y"))
        series = self._slide.ts_tifffile.series[properties["tiffslide.series-index"]]
        self._axes = properties["tiffslide.series-axes"]
        self._tiles: list = []
        self.levels = []
        from .tiles import TiledLevel

        for index, (width, height) in enumerate(self._slide.level_dimensions):
            page = series.levels[index].keyframe
            tiled = (
                TiledLevel(page, path) if len(series.levels[index].pages) == 1 and TiledLevel.supports(page) else None
            )
            self._tiles.append(tiled)
            self.levels.append(
                Level(
                    int(width),
                    int(height),
                    float(self._slide.level_downsamples[index]),
                    int(page.tilewidth or 0),
                    int(page.tilelength or 0),
                )
            )

    def read(self, level: int, x: int, y: int, width: int, height: int, out: np.ndarray | None = None) -> np.ndarray:
        tiled = self._tiles[level]
        if tiled is not None:
            return tiled.read(x, y, width, height, out)
        return self._read_zarr(level, x, y, width, height)

    def _read_zarr(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """Other layouts (strips, planar, 16-bit): tiffslide's zarr view of the level, converted to RGB uint8."""
        array = self._slide.zarr_group[str(level)]
        if self._axes == "YXS":
            region = np.asarray(array[y : y + height, x : x + width])  # (H, W, S)
        elif self._axes == "CYX":
            region = np.moveaxis(np.asarray(array[:, y : y + height, x : x + width]), 0, -1)  # (H, W, C)
        elif self._axes == "YX":
            region = np.asarray(array[y : y + height, x : x + width])[..., None]  # (H, W, 1)
        else:
            raise OSError(f"slide axes {self._axes!r} are not supported")
        if region.dtype != np.uint8:
            raise OSError(f"slide pixels are {region.dtype}, only 8-bit slides are supported")
        if region.shape[2] == 1:
            region = np.repeat(region, 3, axis=2)
        return np.ascontiguousarray(region[:, :, :3])  # (H, W, 3)

    def close(self) -> None:
        for tiled in self._tiles:
            if tiled is not None:
                tiled.close()
        self._slide.close()


@READERS.register("openslide")
class OpenSlideBackend(SlideBackend):
    """OpenSlide (C library): the widest format support (SVS, NDPI, MRXS, SCN, ...), when installed."""

    name = "openslide"

    def __init__(self, path: str | os.PathLike) -> None:
        openslide = lazy_import(
            "openslide", "reading slides with the openslide reader", "openslide-python openslide-bin"
        )
        self._slide = openslide.OpenSlide(os.fspath(path))
        properties = self._slide.properties
        self.mpp = _positive_mpp(properties.get("openslide.mpp-x"), properties.get("openslide.mpp-y"))
        self.levels = []
        for index, (width, height) in enumerate(self._slide.level_dimensions):
            self.levels.append(
                Level(
                    int(width),
                    int(height),
                    float(self._slide.level_downsamples[index]),
                    int(properties.get(f"openslide.level[{index}].tile-width", 0)),
                    int(properties.get(f"openslide.level[{index}].tile-height", 0)),
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
