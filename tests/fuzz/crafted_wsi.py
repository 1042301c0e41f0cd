"""Crafted whole-slide images (issue 14): each written with tifffile (or as plain bytes / special files) and run through
the wsi plugin by ``tests.fuzz.crafted.run_crafted``.

The cases: memory from small files (a single-level slide whose whole level the thumbnail used to decode, absurd
tile sizes, a JPEG tile declaring a 65500-pixel frame, a huge declared level, a single-strip page, patch cells asking
for huge regions), bogus resolutions (MPP tags of 0, NaN, 1e9 and 1e-6, anisotropic pixels, manifest cells with
absurd MPP), files that are not files (FIFO, folder, /dev/zero, a link to a FIFO), damaged structure (truncated
tiles, tile offsets past the end, zero-sized levels, corrupt JPEG tables, unsupported sample layouts), and good
slides, which must still load.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import numpy as np
import tifffile

from tests.fuzz.crafted import LOADS, Crafted

SMALL = {"patch_size": 32, "mpp": 0.5, "max_patches": 4, "thumbnail_size": 128, "threads": 1}


def _tissue(size: int) -> np.ndarray:
    from modalities.wsi.synthetic import render_tissue, tissue_type_map

    rng = np.random.default_rng(14)
    return render_tissue(tissue_type_map(size, size, rng, tissue_fraction=0.9), rng)  # (size, size, 3)


def _slide(path: Path, image: np.ndarray, **options) -> Path:
    from modalities.wsi.synthetic import write_slide

    return write_slide(path, image, **options)


def _tag(path: Path, page: int, name: str):
    with tifffile.TiffFile(path) as handle:
        return handle.pages[page].tags[name]


def _set_long(path: Path, page: int, name: str, value: int) -> None:
    """Rewrite a tag's entry in place as one LONG (classic little-endian TIFF, as tifffile writes small files)."""
    tag = _tag(path, page, name)
    with path.open("r+b") as handle:
        handle.seek(tag.offset)
        handle.write(struct.pack("<HHII", tag.code, 4, 1, value))


def _set_rational(path: Path, page: int, name: str, numerator: int, denominator: int) -> None:
    tag = _tag(path, page, name)
    with path.open("r+b") as handle:
        handle.seek(tag.valueoffset)
        handle.write(struct.pack("<II", numerator, denominator))


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def _tiles(path: Path, page: int) -> list[tuple[int, int]]:
    with tifffile.TiffFile(path) as handle:
        tiles = handle.pages[page]
        return list(zip(tiles.dataoffsets, tiles.databytecounts, strict=True))


def _single_level(path: Path, side: int, tile: int, tissue: bool) -> Path:
    """A one-level zlib-tiled slide of ``side`` pixels: two distinct tiles, each compressed once and written as bytes,
    so a 30720-pixel level makes a 2.8 MB file in a fraction of a second."""
    import zlib

    pattern = zlib.compress((_tissue(tile) if tissue else np.full((tile, tile, 3), 242, np.uint8)).tobytes())
    glass = zlib.compress(np.full((tile, tile, 3), 242, np.uint8).tobytes())
    across = -(-side // tile)

    def tiles():
        for row in range(across):
            for column in range(across):
                middle = abs(row - across / 2) < across / 4 and abs(column - across / 2) < across / 4
                yield pattern if middle else glass

    with tifffile.TiffWriter(path, bigtiff=side * side * 3 > 2**31) as writer:
        writer.write(tiles(), shape=(side, side, 3), dtype=np.uint8, tile=(tile, tile), compression="zlib",
                     photometric="rgb", resolution=(2e4, 2e4), resolutionunit="CENTIMETER", metadata=None)  # fmt: skip
    return path


def cases(root: Path) -> list[Crafted]:
    root.mkdir(parents=True, exist_ok=True)
    image = _tissue(512)
    good = _slide(root / "good.tiff", image, mpp=0.5, levels=3, tile=128)
    out: list[Crafted] = [
        Crafted("wsi_good_pyramid", "wsi", "good.tiff", (LOADS,), SMALL),
        Crafted("wsi_good_patch_by_mpp", "wsi", "good.tiff#mpp=1.0,x=64,y=64,size=32", (LOADS,), SMALL),
        Crafted("wsi_good_patch_by_level", "wsi", "good.tiff#x=0,y=0,level=2,size=32", (LOADS,), SMALL),
    ]

    # --- memory from small files -------------------------------------------------------------------------------------
    # The finding: one level, no pyramid; the thumbnail decoded the whole 2.7 GB level (7 GB RSS).
    _single_level(root / "single_level_huge.tiff", 30720, 1024, tissue=False)
    out.append(Crafted("wsi_single_level_30k", "wsi", "single_level_huge.tiff", ("too_large",), SMALL, seconds=30))
    # Within the budget it loads, and the thumbnail costs a block, not the 113 MB level.
    _single_level(root / "single_level_6k.tiff", 6144, 256, tissue=True)
    out.append(Crafted("wsi_single_level_6k_loads", "wsi", "single_level_6k.tiff", (LOADS,), SMALL, peak_mb=48))
    # One untiled strip: decoding any pixel decodes the whole 48 MB page.
    strip = np.full((4096, 4096, 3), 242, np.uint8)
    tifffile.imwrite(root / "one_strip.tiff", strip, compression="zlib", rowsperstrip=4096, photometric="rgb",
                     resolution=(2e4, 2e4), resolutionunit="CENTIMETER", metadata=None)  # fmt: skip
    strip_budget = {**SMALL, "max_decoded_mb": 16}
    out.append(Crafted("wsi_single_strip_page", "wsi", "one_strip.tiff", ("too_large",), strip_budget, peak_mb=40))
    absurd_tile = shutil.copyfile(good, root / "absurd_tile.tiff")
    _set_long(absurd_tile, 0, "TileWidth", 65536)
    _set_long(absurd_tile, 0, "TileLength", 65536)
    out.append(Crafted("wsi_absurd_tile_size", "wsi", "absurd_tile.tiff", ("too_large", "unreadable"), SMALL))
    huge_level = shutil.copyfile(good, root / "huge_level.tiff")
    _set_long(huge_level, 0, "ImageWidth", 2**31)
    _set_long(huge_level, 0, "ImageLength", 2**31)
    out.append(Crafted("wsi_huge_declared_level", "wsi", "huge_level.tiff", ("too_large", "unreadable"), SMALL))
    # A 2 KB JPEG tile whose frame header declares 65500 x 65500 pixels: a 12 GB decode, on every tile of the slide.
    bomb = _slide(root / "jpeg_bomb.tiff", image, mpp=0.5, levels=1, tile=128)
    for offset, count in _tiles(bomb, 0):
        with bomb.open("rb") as handle:
            handle.seek(offset)
            head = handle.read(count)
        frame = head.find(b"\xff\xc0")
        _overwrite(bomb, offset + frame + 5, struct.pack(">HH", 65500, 65500))
    out.append(Crafted("wsi_jpeg_frame_bomb", "wsi", "jpeg_bomb.tiff", ("unreadable_level",), SMALL))
    out.append(Crafted("wsi_patch_size_huge", "wsi", "good.tiff#x=0,y=0,level=0,size=200000", ("too_large",), SMALL))
    out.append(Crafted("wsi_patch_mpp_huge", "wsi", "good.tiff#mpp=1e9,x=0,y=0,size=32", ("implausible_spacing",),
                       SMALL))  # fmt: skip
    out.append(Crafted("wsi_patch_mpp_tiny", "wsi", "good.tiff#mpp=1e-9,x=0,y=0,size=32", ("implausible_spacing",),
                       SMALL))  # fmt: skip
    out.append(Crafted("wsi_patch_centre_infinite", "wsi", "good.tiff#mpp=0.5,cx=1e999,cy=5,size=32",
                       ("bad_reference",), SMALL))  # fmt: skip
    out.append(Crafted("wsi_patch_far_off_slide", "wsi", "good.tiff#x=1000000000000000,y=0,level=0,size=32",
                       ("out_of_bounds",), SMALL))  # fmt: skip

    # --- bogus resolutions -----------------------------------------------------------------------------------------
    assumed = {**SMALL, "assume_mpp": 0.5}  # a bogus MPP must never be silently replaced by the assumed one
    for name, (numerator, denominator) in {"zero": (0, 1), "1e9": (1, 100000), "1e-3": (4000000000, 400)}.items():
        path = shutil.copyfile(good, root / f"mpp_{name}.tiff")
        for axis in ("XResolution", "YResolution"):
            _set_rational(path, 0, axis, numerator, denominator)  # pixels per centimetre
        out.append(Crafted(f"wsi_mpp_tag_{name}", "wsi", path.name, ("implausible_spacing",), assumed))
    anisotropic = shutil.copyfile(good, root / "mpp_anisotropic.tiff")
    _set_rational(anisotropic, 0, "YResolution", 200, 1)  # x 0.5, y 50 microns per pixel
    out.append(Crafted("wsi_mpp_anisotropic", "wsi", anisotropic.name, ("implausible_spacing",), SMALL))
    aperio = "Aperio Image Library v12.0.15\n512x512 [0,0 512x512] (128x128) JPEG/RGB Q=90|AppMag = 20|MPP = nan"
    with tifffile.TiffWriter(root / "aperio_nan.svs") as writer:
        writer.write(image, tile=(128, 128), compression="jpeg", photometric="rgb", description=aperio, metadata=None)
    out.append(Crafted("wsi_aperio_mpp_nan", "wsi", "aperio_nan.svs", ("implausible_spacing",), assumed))

    # --- not regular files -------------------------------------------------------------------------------------------
    fifo = root / "pipe.tiff"
    if not fifo.exists():
        os.mkfifo(fifo)
    (root / "folder.tiff").mkdir(exist_ok=True)
    link = root / "link_to_pipe.svs"
    if not link.is_symlink():
        link.symlink_to(fifo)
    out += [
        Crafted("wsi_fifo", "wsi", "pipe.tiff", ("not_regular_file",), SMALL, seconds=5),
        Crafted("wsi_fifo_patch_cell", "wsi", "pipe.tiff#x=0,y=0,level=0,size=32", ("not_regular_file",), SMALL,
                seconds=5),
        Crafted("wsi_link_to_fifo", "wsi", "link_to_pipe.svs", ("not_regular_file",), SMALL, seconds=5),
        Crafted("wsi_directory", "wsi", "folder.tiff", ("not_regular_file",), SMALL, seconds=5),
        Crafted("wsi_dev_zero", "wsi", "/dev/zero", ("not_regular_file",), SMALL, seconds=5),
        Crafted("wsi_cached_features_fifo", "wsi", "pipe.tiff",  ("not_regular_file",),
                {**SMALL, "source": "features", "feature_dim": 8, "feature_cache": str(root)}, seconds=5),
    ]  # fmt: skip

    # --- damaged structure -------------------------------------------------------------------------------------------
    tiles = _tiles(good, 0)
    truncated = root / "truncated.tiff"
    truncated.write_bytes(good.read_bytes()[: tiles[len(tiles) // 2][0] + 10])
    out.append(Crafted("wsi_truncated_in_tiles", "wsi", "truncated.tiff", ("unreadable", "unreadable_level"), SMALL))
    past_end = shutil.copyfile(good, root / "offset_past_end.tiff")
    offsets = _tag(past_end, 2, "TileOffsets")  # the thumbnail's level
    _overwrite(past_end, offsets.valueoffset if offsets.count > 1 else offsets.offset + 8, struct.pack("<I", 2**31))
    out.append(Crafted("wsi_tile_offset_past_end", "wsi", "offset_past_end.tiff", ("unreadable_level",), SMALL))
    zero_width = shutil.copyfile(good, root / "zero_width.tiff")
    _set_long(zero_width, 2, "ImageWidth", 0)
    # tifffile leaves a page of zero width out of the pyramid (a separate series, never read): the slide is its two
    # intact levels, which load.
    out.append(Crafted("wsi_zero_width_level", "wsi", "zero_width.tiff", (LOADS, "empty_level"), SMALL))
    zero_all = shutil.copyfile(good, root / "zero_size.tiff")
    _set_long(zero_all, 0, "ImageWidth", 0)
    _set_long(zero_all, 0, "ImageLength", 0)
    out.append(Crafted("wsi_zero_sized_base_level", "wsi", "zero_size.tiff", ("empty_level", "unreadable"), SMALL))
    tables = shutil.copyfile(good, root / "corrupt_tables.tiff")
    for page in range(3):  # every tile's Huffman and quantisation tables overwritten with 0xFF
        for offset, count in _tiles(tables, page):
            with tables.open("rb") as handle:
                handle.seek(offset)
                head = handle.read(count)
            for marker in (b"\xff\xc4", b"\xff\xdb"):
                start = head.find(marker)
                if start >= 0:
                    _overwrite(tables, offset + start + 4, b"\xff" * 16)
    out.append(Crafted("wsi_corrupt_jpeg_tables", "wsi", "corrupt_tables.tiff", ("unreadable_level",), SMALL))
    tifffile.imwrite(root / "sixteen_bit.tiff", image.astype(np.uint16) * 257, tile=(128, 128), photometric="rgb",
                     resolution=(2e4, 2e4), resolutionunit="CENTIMETER", metadata=None)  # fmt: skip
    out.append(Crafted("wsi_16_bit_samples", "wsi", "sixteen_bit.tiff", ("unsupported_layout",), SMALL))
    grey_alpha = np.stack([image[..., 0], np.full(image.shape[:2], 255, np.uint8)], axis=-1)  # (512, 512, 2)
    tifffile.imwrite(root / "grey_alpha.tiff", grey_alpha, tile=(128, 128), photometric="minisblack",
                     planarconfig="contig", extrasamples=[2], resolution=(2e4, 2e4), resolutionunit="CENTIMETER",
                     metadata=None)  # fmt: skip
    out.append(Crafted("wsi_two_samples", "wsi", "grey_alpha.tiff", ("unsupported_layout",), SMALL))
    (root / "not_a_slide.svs").write_bytes(b"II*\x00" + bytes(range(256)) * 8)
    (root / "empty.tiff").write_bytes(b"")
    out += [
        Crafted("wsi_not_a_tiff", "wsi", "not_a_slide.svs", ("unreadable",), SMALL),
        Crafted("wsi_empty_file", "wsi", "empty.tiff", ("unreadable",), SMALL),
    ]
    return out
