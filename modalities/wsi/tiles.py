"""Tile-aligned reading straight from a tiled TIFF level: the fast path of medclip's slide reader.

A pyramidal TIFF stores each level as a grid of independently compressed tiles. Reading a patch means reading the
bytes of the tiles it covers (``os.pread``: no shared file position, so threads never contend) and decoding them
(imagecodecs, which releases the GIL, so threads decode in parallel). A patch that is exactly one tile - the grid
is tile-aligned whenever the patch size is the tile size and the target MPP is a level's MPP - is one read and one
decode, with no copy. Only the pages of the slide's pyramid are ever touched: associated label and macro images
(which can show a burned-in patient name) are separate pages this reader never opens.

A JPEG or JPEG 2000 chunk carries its own frame size, and decoders allocate what it declares, not what the TIFF
tile holds: a 2 KB tile declaring 65500 x 65500 pixels makes a 12 GB allocation. So every such chunk's header is
read first and a frame larger than its TIFF chunk is refused (``OSError``: the slide reports ``unreadable_level``)
before the decoder runs: here for tiled levels, and through ``ChunkGuard`` for the other layouts, which tifffile
decodes.
"""

from __future__ import annotations

import os
import struct
import threading

import imagecodecs
import numpy as np
from tifffile.tifffile import jpeg_decode_colorspace

# Decoded tiles are RGB uint8; pages in other layouts (planar, 16-bit, ...) are read by the backend itself.
SUPPORTED_SAMPLES = (1, 3, 4)
JPEG = 7  # TIFF Compression tag value of (new-style) JPEG, what scanners and our writer use
JPEG_CODES = (6, 7)  # old- and new-style JPEG
JPEG2000_CODES = (33003, 33004, 33005, 34712)  # Aperio YCbCr / RGB JPEG 2000, JPEG 2000
FRAME_SIZE = struct.Struct(">HH")  # a JPEG frame header's height and width
HEADER_BYTES = 1 << 16  # a chunk's frame header (after its tables) lies within its first 64 KB
# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman and arithmetic): the frame's size follows.
SOF_MARKERS = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))


def declared_frame(data: bytes, compression: int) -> tuple[int, int] | None:
    """(height, width) that a JPEG or JPEG 2000 chunk declares in its header; None for other codecs, or when no
    frame header is found (the decoder then fails on its own)."""
    if compression in JPEG_CODES:
        return _jpeg_frame(data)
    if compression in JPEG2000_CODES:
        start = data.find(b"\xff\x4f\xff\x51")  # start of codestream, then the SIZ marker segment
        if start < 0 or start + 24 > len(data):
            return None
        size = [int.from_bytes(data[start + at : start + at + 4], "big") for at in (8, 12, 16, 20)]  # X, Y, X0, Y0
        return size[1] - size[3], size[0] - size[2]
    return None


def _jpeg_frame(data: bytes) -> tuple[int, int] | None:
    """Height and width from a JPEG's start-of-frame header, or None."""
    at = _jpeg_frame_offset(data)
    if at is None:
        return None
    return int.from_bytes(data[at : at + 2], "big"), int.from_bytes(data[at + 2 : at + 4], "big")


def _jpeg_frame_offset(data: bytes) -> int | None:
    """Offset of the frame height in a JPEG (walking marker segments up to the start-of-frame), or None."""
    position = 2 if data[:2] == b"\xff\xd8" else 0
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        if marker in SOF_MARKERS:
            return position + 5 if position + 9 <= len(data) else None
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return None


class FrameCheck:
    """Refuses (``OSError``) a chunk whose own header declares more rows or columns than its TIFF chunk holds.

    The tiles of one level share their header (tables, then the frame header at the same place), so the bytes up to
    the frame header of the last tile checked are remembered: a tile that starts with the same bytes is checked by
    one comparison and two reads, not by walking its markers again (this runs for every tile decoded).
    """

    def __init__(self, compression: int, chunk_height: int, chunk_width: int) -> None:
        self.compression = int(compression)
        self.active = self.compression in JPEG_CODES + JPEG2000_CODES
        self.chunk_height, self.chunk_width = chunk_height, chunk_width
        self._known: tuple[bytes, int] | None = None  # (header bytes before the frame's size, its offset)

    def __call__(self, data: bytes) -> None:
        if not self.active:
            return
        known = self._known
        if known is not None and len(data) >= known[1] + 4 and data.startswith(known[0]):
            frame = FRAME_SIZE.unpack_from(data, known[1])
        else:
            frame = declared_frame(data, self.compression)
            if self.compression in JPEG_CODES:
                at = _jpeg_frame_offset(data)
                if at is not None:
                    self._known = (bytes(data[:at]), at)
        if frame is not None and (frame[0] > self.chunk_height or frame[1] > self.chunk_width):
            raise OSError("a compressed tile declares a frame larger than the TIFF tile")


def check_frame(data: bytes, compression: int, chunk_height: int, chunk_width: int) -> None:
    """``OSError`` when the chunk's own header declares more rows or columns than its TIFF chunk holds."""
    FrameCheck(compression, chunk_height, chunk_width)(data)


class TiledLevel:
    """Random access to the tiles of one TIFF page (one pyramid level).

    Args:
        page: the ``tifffile.TiffPage`` of the level (tiled, contiguous, uint8).
        path: the slide file, opened here once for ``os.pread``.
    """

    def __init__(self, page, path: str | os.PathLike) -> None:
        self.width = int(page.imagewidth)
        self.height = int(page.imagelength)
        self.tile_width = int(page.tilewidth)
        self.tile_height = int(page.tilelength)
        self.tiles_across = -(-self.width // self.tile_width)
        self.samples = int(page.samplesperpixel)
        self._offsets = np.asarray(page.dataoffsets, dtype=np.int64)
        self._byte_counts = np.asarray(page.databytecounts, dtype=np.int64)
        self._decode = page.decode  # tifffile's decoder for this page's compression, predictor and JPEG tables
        self._jpeg_tables = page.jpegtables
        self._check_frame = FrameCheck(page.compression, self.tile_height, self.tile_width)
        # RGB JPEG tiles decode straight into the caller's buffer (a slot of a patch batch): no intermediate array,
        # which is what lets two reader threads scale (a fresh array per tile costs allocator and GIL time).
        self._jpeg_colorspaces = (
            jpeg_decode_colorspace(page.photometric, page.planarconfig, page.extrasamples, page.is_jfif)
            if page.compression == JPEG and self.samples == 3 and page.bitspersample == 8
            else None
        )
        self._descriptor = os.open(os.fspath(path), os.O_RDONLY)
        self._closed = threading.Event()

    @staticmethod
    def supports(page) -> bool:
        """Whether ``page`` can be read tile by tile here (else the backend's own reader is used)."""
        return bool(
            page.is_tiled
            and page.dtype == np.uint8
            and page.samplesperpixel in SUPPORTED_SAMPLES
            and (page.samplesperpixel == 1 or page.planarconfig == 1)  # 1 = contiguous RGBRGB...
            and page.imagedepth == 1
            and len(page.dataoffsets) == -(-page.imagewidth // page.tilewidth) * -(-page.imagelength // page.tilelength)
        )

    def tile(self, column: int, row: int, out: np.ndarray | None = None) -> np.ndarray:
        """Decode tile (column, row) -> (tile_height, tile_width, 3) uint8 RGB; a tile never written is white.

        With ``out`` (a C-contiguous (tile_height, tile_width, 3) uint8 array) the tile is written into it and ``out``
        is returned.
        """
        index = row * self.tiles_across + column
        byte_count = int(self._byte_counts[index])
        if byte_count == 0:  # sparse TIFF: scanners skip empty (background) tiles
            if out is None:
                return np.full((self.tile_height, self.tile_width, 3), 255, dtype=np.uint8)
            out.fill(255)
            return out
        data = os.pread(self._descriptor, byte_count, int(self._offsets[index]))
        if len(data) != byte_count:
            raise OSError("the slide file ended inside a tile")
        self._check_frame(data)
        if out is not None and self._jpeg_colorspaces is not None and out.flags.c_contiguous:
            colorspace, outcolorspace = self._jpeg_colorspaces
            return imagecodecs.jpeg_decode(
                data,
                tables=self._jpeg_tables,
                colorspace=colorspace,
                outcolorspace=outcolorspace,
                shape=(self.tile_height, self.tile_width),
                bitspersample=8,
                out=out,
            )
        decoded = self._decode_tile(data, index)
        if out is None:
            return decoded
        out[...] = decoded
        return out

    def _decode_tile(self, data: bytes, index: int) -> np.ndarray:
        """tifffile's decode of one tile's bytes -> (tile_height, tile_width, 3) uint8 RGB."""
        decoded = self._decode(data, index, jpegtables=self._jpeg_tables)[0]  # (1, th, tw, S) or (th, tw, S)
        decoded = decoded.reshape(self.tile_height, self.tile_width, self.samples)  # (th, tw, S)
        if self.samples == 1:
            return np.repeat(decoded, 3, axis=2)  # grey -> RGB, (th, tw, 3)
        return decoded[:, :, :3] if self.samples == 4 else decoded  # RGBA -> RGB

    def read(self, x: int, y: int, width: int, height: int, out: np.ndarray | None = None) -> np.ndarray:
        """The in-bounds region at (x, y) of this level, (height, width, 3) uint8, assembled from its tiles.

        A tile-aligned region is decoded into ``out`` when given (then ``out`` is returned); otherwise a new array.
        """
        first_column, first_row = x // self.tile_width, y // self.tile_height
        last_column, last_row = (x + width - 1) // self.tile_width, (y + height - 1) // self.tile_height
        if (
            first_column == last_column
            and first_row == last_row
            and x % self.tile_width == 0
            and y % self.tile_height == 0
            and width == self.tile_width
            and height == self.tile_height
        ):
            return self.tile(first_column, first_row, out)  # the tile-aligned fast path: no copy
        region = np.empty((height, width, 3), dtype=np.uint8)  # (H, W, 3)
        for row in range(first_row, last_row + 1):
            for column in range(first_column, last_column + 1):
                tile = self.tile(column, row)
                tile_x, tile_y = column * self.tile_width, row * self.tile_height
                left, top = max(x, tile_x), max(y, tile_y)
                right = min(x + width, tile_x + self.tile_width)
                bottom = min(y + height, tile_y + self.tile_height)
                region[top - y : bottom - y, left - x : right - x] = tile[
                    top - tile_y : bottom - tile_y, left - tile_x : right - tile_x
                ]
        return region

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            os.close(self._descriptor)


class ChunkGuard:
    """Checks the frame headers of the JPEG / JPEG 2000 chunks a region needs before tifffile decodes them.

    For the layouts ``TiledLevel`` does not read (strips, planar configurations, multi-page levels).

    Args:
        pages: the ``tifffile`` pages (or frames) of one level.
        keyframe: the page that describes them all.
        path: the slide file, opened here for ``os.pread``.
    """

    def __init__(self, pages, keyframe, path: str | os.PathLike) -> None:
        self._chunk_height = int(keyframe.tilelength) if keyframe.is_tiled else max(int(keyframe.rowsperstrip), 1)
        self._chunk_width = int(keyframe.tilewidth) if keyframe.is_tiled else int(keyframe.imagewidth)
        self._check_frame = FrameCheck(keyframe.compression, self._chunk_height, self._chunk_width)
        self.active = self._check_frame.active
        if not self.active:
            return
        self._across = -(-int(keyframe.imagewidth) // self._chunk_width)
        self._down = -(-int(keyframe.imagelength) // self._chunk_height)
        self._chunks = [
            (np.asarray(page.dataoffsets, dtype=np.int64), np.asarray(page.databytecounts, dtype=np.int64))
            for page in pages
        ]
        self._descriptor = os.open(os.fspath(path), os.O_RDONLY)

    def check(self, x: int, y: int, width: int, height: int) -> None:
        """``OSError`` if a chunk under the region (every plane, every page) declares an oversized frame."""
        if not self.active:
            return
        rows = range(y // self._chunk_height, min((y + height - 1) // self._chunk_height + 1, self._down))
        columns = range(x // self._chunk_width, min((x + width - 1) // self._chunk_width + 1, self._across))
        per_plane = self._across * self._down
        for offsets, counts in self._chunks:
            for plane in range(max(1, len(offsets) // max(per_plane, 1))):
                for row in rows:
                    for column in columns:
                        index = plane * per_plane + row * self._across + column
                        if index >= len(offsets) or counts[index] == 0:
                            continue
                        head = os.pread(self._descriptor, int(min(counts[index], HEADER_BYTES)), int(offsets[index]))
                        self._check_frame(head)

    def close(self) -> None:
        if self.active and self._descriptor >= 0:
            os.close(self._descriptor)
            self._descriptor = -1
