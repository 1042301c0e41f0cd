"""``Slide``: one open whole-slide image, read at a target resolution with reason-coded errors.

Coordinates throughout medclip are level-0 pixels of a patch's top-left corner (OpenSlide's convention), so a
coordinate means the same place whatever level a patch is read from. ``read_patch`` picks the coarsest pyramid level
at least as fine as the target MPP and resizes from there (a 0.5 MPP patch of a slide with 0.25 / 1.0 MPP levels
is read at 0.25 and halved); when the target equals a level's MPP there is no resize and a grid with stride = tile
size is tile-aligned.

Untrusted files are checked before anything is decoded (issue 14): the path must be a regular file (a FIFO or a
device would block or never end; ``medclip.data.safe_io``), every level's decode unit (tile, strip or page, from the
header) and every region a read allocates must fit ``max_decoded_mb``, and the thumbnail is read block by block
into its small output, so memory is bounded by the thumbnail, not by the level it is read from (a 2.6 MB
single-level file used to take 7 GB here).

Errors are ``ModalityError`` with a reason: ``missing_file``, ``not_regular_file``, ``unreadable`` (the file cannot
be opened, or is truncated), ``unsupported_layout`` (not 8-bit grey / RGB / RGBA), ``empty_level`` (a level of
zero width or height), ``too_large`` (a decode unit, a read region or the thumbnail's level over the budget),
``no_mpp`` (no resolution metadata and no ``assume_mpp``), ``implausible_spacing`` (a bogus declared MPP,
``spacing.py``), ``unreadable_level`` (a level's tiles fail to decode), ``out_of_bounds``, ``bad_reference``.
Messages never contain the path, file content or slide metadata.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from medclip.data.safe_io import MEGABYTE, check_decoded_size, require_regular_file
from medclip.types import ModalityError

from .backends import WSI_READERS, Level, SlideBackend
from .spacing import check_slide_mpp

# A level whose MPP is within this fraction of the target counts as the target resolution (scanners report 0.2527).
MPP_TOLERANCE = 0.01
# Slides kept open per process; the least recently used one is closed beyond this.
MAX_OPEN_SLIDES = 16
WHITE = 255  # glass: the padding outside the slide
THUMBNAIL_BLOCK = 1024  # level pixels per side read at once while building a thumbnail (3 MB of RGB)
SUM_STRIP = 128  # rows of a block summed at once into the thumbnail
DEFAULT_MAX_DECODED_MB = 2048.0  # ModalityConfig.max_decoded_mb's default


class Slide:
    """An open slide with its reader.

    Args:
        path: the slide file.
        reader: a name in ``backends.WSI_READERS``.
        assume_mpp: MPP to use when the slide declares none (0 = none: ``mpp`` is None and MPP-based reads refuse).
            It never replaces a declared but bogus MPP.
        max_decoded_mb: the most one decode (tile, strip), one read region or the thumbnail's level may take.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        reader: str = "tiffslide",
        assume_mpp: float = 0.0,
        max_decoded_mb: float = DEFAULT_MAX_DECODED_MB,
    ) -> None:
        path = Path(path)
        require_regular_file(path, "slide")  # before any library opens it: a FIFO would block, /dev/zero never end
        backend_class = WSI_READERS.get(reader)
        try:
            self.backend: SlideBackend = backend_class(path)
        except (ImportError, ModalityError):
            raise
        except Exception as error:  # each library raises its own types; the message could hold the path
            raise ModalityError(
                "unreadable", f"the slide could not be opened by the {reader} reader ({type(error).__name__})"
            ) from None
        self.reader = reader
        self.max_decoded_mb = max_decoded_mb
        self._max_bytes = max_decoded_mb * MEGABYTE  # the per-read check inline: it runs for every patch
        self.levels: list[Level] = self.backend.levels
        try:
            self._check_levels()
        except ModalityError:
            self.backend.close()
            raise
        declared = self.backend.mpp
        self.mpp_source = "slide" if declared is not None else ("assumed" if assume_mpp > 0 else "none")
        self._mpp_error: ModalityError | None = None
        self.mpp: float | None = assume_mpp or None
        if declared is not None:
            try:
                self.mpp = check_slide_mpp(*declared)
            except ModalityError as error:  # raised when the MPP is used: level references need none
                self.mpp, self._mpp_error = None, error

    def _check_levels(self) -> None:
        """Refuse, from the header alone, levels that are empty or whose decode unit is over the budget."""
        if not self.levels:
            raise ModalityError("unreadable", f"the {self.reader} reader found no pyramid level in the slide")
        for index, level in enumerate(self.levels):
            if level.width < 1 or level.height < 1:
                raise ModalityError("empty_level", f"level {index} of the slide has no pixels (zero width or height)")
            check_decoded_size((level.decode_bytes,), 1, self.max_decoded_mb, f"decode unit of slide level {index}")

    @property
    def dimensions(self) -> tuple[int, int]:
        """(width, height) of level 0."""
        return self.levels[0].width, self.levels[0].height

    def require_mpp(self) -> float:
        """The level-0 MPP; ``implausible_spacing`` when the declared one is bogus, ``no_mpp`` when there is none."""
        if self._mpp_error is not None:
            raise self._mpp_error
        if self.mpp is None:
            raise ModalityError(
                "no_mpp",
                "the slide has no microns-per-pixel metadata; set wsi.assume_mpp if you know the scanner's resolution, "
                "or reference patches by level",
            )
        return self.mpp

    def level_mpp(self, level: int) -> float:
        return self.require_mpp() * self.levels[level].downsample

    def level_for_mpp(self, target_mpp: float) -> int:
        """The coarsest level at least as fine as ``target_mpp`` (level 0 when the target is finer than the scan)."""
        base = self.require_mpp()
        fine_enough = [
            index
            for index, level in enumerate(self.levels)
            if base * level.downsample <= target_mpp * (1 + MPP_TOLERANCE)
        ]
        return max(fine_enough, key=lambda index: self.levels[index].downsample) if fine_enough else 0

    # --- reading --------------------------------------------------------------------------------------------------
    def read_region(
        self, x: int, y: int, level: int, width: int, height: int, out: np.ndarray | None = None
    ) -> np.ndarray:
        """(height, width, 3) uint8 at ``level``, top-left at level-0 (x, y); outside the slide is white.

        ``out``, a (height, width, 3) uint8 buffer, may receive the pixels (then it is returned) when the region lies
        inside the slide and the backend can decode into it.

        Raises:
            ModalityError: ``out_of_bounds`` (no overlap with the slide at all), ``too_large`` (the region is over
                the budget) or ``unreadable_level``.
        """
        if not 0 <= level < len(self.levels):
            raise ModalityError("bad_reference", f"level {level} does not exist; the slide has {len(self.levels)}")
        if width < 1 or height < 1:
            raise ModalityError("bad_reference", "a slide region needs a width and height of at least one pixel")
        if height * width * 3 > self._max_bytes:
            check_decoded_size((height, width, 3), 1, self.max_decoded_mb, "requested slide region")  # raises
        info = self.levels[level]
        left = int(np.floor(x / info.downsample))  # level pixels
        top = int(np.floor(y / info.downsample))
        inner_left, inner_top = max(left, 0), max(top, 0)
        inner_right, inner_bottom = min(left + width, info.width), min(top + height, info.height)
        if inner_right <= inner_left or inner_bottom <= inner_top:
            raise ModalityError("out_of_bounds", "the requested patch lies entirely outside the slide")
        whole = (inner_left, inner_top, inner_right, inner_bottom) == (left, top, left + width, top + height)
        inner = self._read_level(
            level, inner_left, inner_top, inner_right - inner_left, inner_bottom - inner_top, out if whole else None
        )
        if inner.shape[:2] == (height, width):
            return inner
        region = np.full((height, width, 3), WHITE, dtype=np.uint8)  # (H, W, 3)
        region[inner_top - top : inner_bottom - top, inner_left - left : inner_right - left] = inner
        return region

    def _read_level(
        self, level: int, x: int, y: int, width: int, height: int, out: np.ndarray | None = None
    ) -> np.ndarray:
        """The backend's read of an in-bounds region in ``level`` pixels; library errors -> ``unreadable_level``."""
        try:
            return self.backend.read(level, x, y, width, height, out)
        except ModalityError:
            raise
        except Exception as error:
            raise ModalityError(
                "unreadable_level", f"level {level} of the slide could not be read ({type(error).__name__})"
            ) from None

    def patch_extent(self, size: int, mpp: float) -> float:
        """Level-0 pixels covered by ``size`` pixels at ``mpp``."""
        return size * mpp / self.require_mpp()

    def read_patch(self, x: int, y: int, size: int, mpp: float, out: np.ndarray | None = None) -> np.ndarray:
        """A (size, size, 3) uint8 patch at ``mpp`` whose top-left is level-0 (x, y): level choice, then resize.

        ``out``, a (size, size, 3) uint8 buffer, may receive the pixels (then it is returned): a tile-aligned patch
        is decoded straight into it.
        """
        if size * size * 3 > self._max_bytes:
            check_decoded_size((size, size, 3), 1, self.max_decoded_mb, "requested patch")  # raises
        level = self.level_for_mpp(mpp)
        extent = self.patch_extent(size, mpp)  # level-0 pixels
        level_size = max(1, round(extent / self.levels[level].downsample))
        region = self.read_region(x, y, level, level_size, level_size, out if level_size == size else None)
        if level_size == size:
            return region
        # Area averaging when shrinking avoids aliasing nuclei texture; bicubic when the scan is coarser than asked.
        method = Image.Resampling.BOX if level_size > size else Image.Resampling.BICUBIC
        return np.asarray(Image.fromarray(region).resize((size, size), method))

    def read_patches(
        self, coordinates: Sequence[tuple[int, int]] | np.ndarray, size: int, mpp: float, threads: int = 1
    ) -> np.ndarray:
        """Patches at level-0 top-left ``coordinates`` (N, 2) -> (N, size, size, 3) uint8, read in ``threads``."""
        coordinates = np.asarray(coordinates, dtype=np.int64).reshape(-1, 2)  # (N, 2)
        out = np.empty((len(coordinates), size, size, 3), dtype=np.uint8)  # (N, S, S, 3)

        def read_one(index: int) -> None:
            slot = out[index]  # (S, S, 3)
            patch = self.read_patch(int(coordinates[index, 0]), int(coordinates[index, 1]), size, mpp, slot)
            if patch is not slot:  # the reader could not decode into the slot
                slot[...] = patch

        def read_stride(first: int, step: int) -> None:
            for index in range(first, len(coordinates), step):
                read_one(index)

        threads = max(1, min(threads, len(coordinates)))
        if threads == 1:
            read_stride(0, 1)
        else:
            # One task per thread, each reading every threads-th patch: a task per patch would spend a good part of
            # a ~0.3 ms tile decode on executor bookkeeping under the GIL, which is what limits 2-thread scaling.
            with ThreadPoolExecutor(max_workers=threads) as pool:
                tasks = [pool.submit(read_stride, first, threads) for first in range(threads)]
                for task in tasks:
                    task.result()  # re-raises the first error
        return out

    def thumbnail(self, max_side: int) -> tuple[np.ndarray, float]:
        """The whole slide, longest side at most ``max_side`` -> (image (h, w, 3) uint8, level-0 pixels per pixel).

        Read from the coarsest level whose longest side is still at least ``max_side`` (level 0 for a small slide or
        a slide without a pyramid). That level is read block by block and each block averaged into the thumbnail,
        so memory is the thumbnail plus one block whatever the level's size; the level's decoded size still bounds
        the work and must fit ``max_decoded_mb`` (``too_large``), checked before any decoding.
        """
        candidates = [index for index, level in enumerate(self.levels) if max(level.width, level.height) >= max_side]
        level = max(candidates, key=lambda i: self.levels[i].downsample) if candidates else 0
        info = self.levels[level]
        check_decoded_size((info.height, info.width, 3), 1, self.max_decoded_mb, "level the thumbnail is read from")
        scale = max(info.width, info.height) / max_side
        if scale > 1:
            size = (max(1, round(info.width / scale)), max(1, round(info.height / scale)))
            image = self._binned_level(level, *size)
        else:
            image = self.read_region(0, 0, level, info.width, info.height)
        width0 = self.levels[0].width
        return image, width0 / image.shape[1]

    def _binned_level(self, level: int, out_width: int, out_height: int) -> np.ndarray:
        """Level ``level`` averaged down to (out_height, out_width, 3) uint8, read in tile-aligned blocks.

        Level pixel (x, y) falls in output pixel (x * out_width // width, y * out_height // height); each output
        pixel is the mean of the level pixels that fall in it (area averaging, as a box filter).
        """
        info = self.levels[level]
        width, height = info.width, info.height
        block_w = _aligned(THUMBNAIL_BLOCK, info.tile_width, width)
        block_h = _aligned(THUMBNAIL_BLOCK, info.tile_height, height)
        if not info.tile_width:  # strips span the full width: read whole-width bands of at most one block's pixels
            block_w, block_h = width, max(1, min(height, THUMBNAIL_BLOCK * THUMBNAIL_BLOCK // width))
        columns = np.arange(width, dtype=np.int64) * out_width // width  # (width,) output column of each column
        rows = np.arange(height, dtype=np.int64) * out_height // height  # (height,)
        sums = np.zeros((out_height, out_width, 3), dtype=np.float64)  # (h, w, 3)
        counts = np.zeros((out_height, out_width, 1), dtype=np.float64)
        for top in range(0, height, block_h):
            bottom = min(top + block_h, height)
            for left in range(0, width, block_w):
                right = min(left + block_w, width)
                block = self._read_level(level, left, top, right - left, bottom - top)  # (bh, bw, 3) uint8
                column_ids, column_starts = np.unique(columns[left:right], return_index=True)
                column_sizes = np.diff(np.append(column_starts, right - left))
                # Strips of rows, so the float copy reduceat makes of its input stays small (1.5 MB, not 12 MB).
                for strip in range(0, bottom - top, SUM_STRIP):
                    part = block[strip : strip + SUM_STRIP]  # (s, bw, 3)
                    row_ids, row_starts = np.unique(rows[top + strip : top + strip + len(part)], return_index=True)
                    across = np.add.reduceat(part, column_starts, axis=1, dtype=np.float32)  # (s, nc, 3), exact
                    summed = np.add.reduceat(across, row_starts, axis=0, dtype=np.float64)  # (nr, nc, 3)
                    row_sizes = np.diff(np.append(row_starts, len(part)))
                    window = (slice(row_ids[0], row_ids[-1] + 1), slice(column_ids[0], column_ids[-1] + 1))
                    sums[window] += summed
                    counts[window] += np.outer(row_sizes, column_sizes)[..., None]
        return np.round(sums / np.maximum(counts, 1)).astype(np.uint8)

    def close(self) -> None:
        self.backend.close()


_OPEN: OrderedDict[tuple[str, str, float, float, int], Slide] = OrderedDict()
_OPEN_PID = os.getpid()


def _aligned(target: int, tile: int, limit: int) -> int:
    """The largest multiple of ``tile`` up to ``target`` (at least one tile; ``target`` when untiled), capped at
    ``limit``."""
    if tile <= 0:
        return min(target, limit)
    return min(max(tile, target // tile * tile), limit)


def open_slide(
    path: str | os.PathLike,
    reader: str = "tiffslide",
    assume_mpp: float = 0.0,
    max_decoded_mb: float = DEFAULT_MAX_DECODED_MB,
) -> Slide:
    """The cached open ``Slide`` for ``path`` in this process (DataLoader workers reopen after fork)."""
    global _OPEN_PID
    if os.getpid() != _OPEN_PID:  # a forked worker must not share the parent's file handles
        _OPEN.clear()
        _OPEN_PID = os.getpid()
    absolute = Path(path).expanduser().absolute()
    # stat never opens the file (a FIFO cannot block here); a rewritten file is reopened, never served stale
    modified = require_regular_file(absolute, "slide").st_mtime_ns
    key = (str(absolute), reader, float(assume_mpp), float(max_decoded_mb), modified)
    if key in _OPEN:
        _OPEN.move_to_end(key)
        return _OPEN[key]
    slide = Slide(key[0], reader=reader, assume_mpp=assume_mpp, max_decoded_mb=max_decoded_mb)
    _OPEN[key] = slide
    while len(_OPEN) > MAX_OPEN_SLIDES:
        _, oldest = _OPEN.popitem(last=False)
        oldest.close()
    return slide


def close_slides() -> None:
    """Close every cached slide of this process (tests and long-running services)."""
    while _OPEN:
        _, slide = _OPEN.popitem(last=False)
        slide.close()
