"""Crafted 2-D image inputs for the image plugin (issue 16's bad inputs and more), run by ``tests.fuzz.crafted``.

Every file is written with the format's real writer (pydicom, Pillow, tifffile, NumPy) from real pixels, or as raw
bytes where the point is a header no writer would produce (a 50 000 x 50 000 PNG, a TIFF whose tags lie).
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from pydicom.dataset import Dataset

from modalities.image.dicom_write import image_dataset, write_dicom_image
from tests.fuzz.crafted import LOADS, Crafted

CHANNELS = {"image_type": "multichannel", "channels": ["DNA", "ER", "RNA", "AGP", "Mito"]}


def _pixels() -> np.ndarray:
    """A real image to build from: scikit-image's camera man when installed, else pydicom's bundled 8-bit image."""
    try:
        import skimage.data

        return np.asarray(skimage.data.camera(), dtype=np.uint8)[::2, ::2]
    except ImportError:
        import pydicom
        from pydicom.data import get_testdata_file

        return np.asarray(pydicom.dcmread(get_testdata_file("image_dfl.dcm")).pixel_array, dtype=np.uint8)[::2, ::2]


def _cr(pixels: np.ndarray, **tags) -> Dataset:
    return image_dataset(pixels.astype(np.uint16) * 16, "CR", bits_stored=12, tags=tags)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A valid-looking PNG declaring ``width`` x ``height`` 8-bit gray pixels with one row of data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")
    )


def _tiff_with_lying_size(path: Path, pixels: np.ndarray, width: int, height: int) -> None:
    """A small TIFF whose ImageWidth/ImageLength tags are rewritten to claim a huge image."""
    tifffile.imwrite(path, pixels)
    with tifffile.TiffFile(path) as tiff:
        tags = tiff.pages[0].tags
        offsets = {name: (tags[name].valueoffset, tags[name].dtype) for name in ("ImageWidth", "ImageLength")}
    raw = bytearray(path.read_bytes())
    for name, value in (("ImageWidth", width), ("ImageLength", height)):
        offset, dtype = offsets[name]
        fmt = "<H" if int(dtype) == 3 else "<I"
        raw[offset : offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    path.write_bytes(bytes(raw))


def _npy_with_shape(path: Path, shape: tuple[int, ...], payload: bytes) -> None:
    """An .npy header declaring ``shape`` (uint8) followed by only ``payload``."""
    header = {"descr": "|u1", "fortran_order": False, "shape": shape}
    text = repr(header).encode("latin1")
    text += b" " * ((64 - (10 + len(text) + 1) % 64) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + payload)


def cases(root: Path) -> list[Crafted]:
    pixels = _pixels()  # (256, 256) uint8
    cases: list[Crafted] = []

    def dicom(name: str, dataset: Dataset, expect: tuple[str, ...], **options) -> None:
        write_dicom_image(root / f"{name}.dcm", dataset)
        cases.append(Crafted(f"image_{name}", "image", f"{name}.dcm", expect, options))

    # --- DICOM ---------------------------------------------------------------------------------------------------
    dicom("dicom_good_cr", _cr(pixels, WindowCenter="2000", WindowWidth="4000"), (LOADS,))
    no_pixels = _cr(pixels)
    del no_pixels.PixelData
    dicom("dicom_without_pixel_data", no_pixels, ("no_pixel_data",))
    huge = _cr(pixels)
    huge.Rows, huge.Columns = 50000, 50000  # 2.5 billion pixels declared over 128 KB of data
    dicom("dicom_50k_x_50k_header", huge, ("too_large",))
    dicom("dicom_1x1", image_dataset(np.array([[7]], dtype=np.uint16), "CR"), ("too_small",))
    zero = _cr(pixels)
    zero.Rows = 0
    dicom("dicom_zero_rows", zero, ("too_small",))
    wide = pixels.astype(np.uint16) * 257  # full 16-bit values declared as 12 stored bits
    dicom(
        "dicom_12bit_declared_16bit_values", image_dataset(wide, "DX", bits_stored=12), ("values_exceed_bits_stored",)
    )
    palette = _cr(pixels)
    palette.PhotometricInterpretation = "PALETTE COLOR"
    dicom("dicom_palette_colour", palette, ("palette_image",))
    short = _cr(pixels)
    short.PixelData = short.PixelData[: len(short.PixelData) // 3]
    dicom("dicom_truncated_pixel_data", short, ("truncated_file",))
    dicom("dicom_burned_in_annotation", _cr(pixels, BurnedInAnnotation="YES"), ("quarantined_burned_in_annotation",))
    secondary = _cr(pixels)
    secondary.Modality = "SC"
    dicom("dicom_secondary_capture", secondary, ("quarantined_modality",))
    dicom("dicom_multiframe", _cr(pixels, NumberOfFrames="40"), ("multiframe",))
    dicom("dicom_zero_window_width", _cr(pixels, WindowCenter="100", WindowWidth="0"), ("bad_window",))
    dicom("dicom_nan_window", _cr(pixels, WindowCenter="nan", WindowWidth="400"), ("bad_window", "bad_header"))
    lut = Dataset()
    lut.add_new(0x00283002, "US", [4096, 0, 12])
    lut.add_new(0x00283006, "OW", np.arange(16, dtype="<u2").tobytes())  # 16 entries where 4096 are declared
    dicom("dicom_voi_lut_shorter_than_declared", _cr(pixels, VOILUTSequence=[lut]), ("bad_voi_lut",))
    bits32 = _cr(pixels)
    bits32.BitsAllocated = 32
    dicom("dicom_32_bits_allocated", bits32, ("bad_header",))
    constant = image_dataset(np.full((64, 64), 900, dtype=np.uint16), "CR")
    dicom("dicom_constant_image", constant, ("blank_image",))
    (root / "garbage.dcm").write_bytes(os.urandom(4096))
    cases.append(Crafted("image_dicom_random_bytes", "image", "garbage.dcm", ("not_dicom",)))
    good = root / "dicom_good_cr.dcm"
    (root / "cut.dcm").write_bytes(good.read_bytes()[:400])
    cut_reasons = ("not_dicom", "no_pixel_data", "truncated_file", "bad_header")
    cases.append(Crafted("image_dicom_cut_after_header", "image", "cut.dcm", cut_reasons))

    # --- PNG / JPEG ----------------------------------------------------------------------------------------------
    Image.fromarray(pixels).save(root / "good.png")
    cases.append(Crafted("image_png_good", "image", "good.png", (LOADS,)))
    _png_header_only(root / "huge.png", 50000, 50000)
    cases.append(Crafted("image_png_50k_x_50k_header", "image", "huge.png", ("too_large",)))
    _png_header_only(root / "huge_small_budget.png", 12000, 12000)  # under Pillow's own limit: our budget decides
    cases.append(
        Crafted(
            "image_png_12k_header_small_budget",
            "image",
            "huge_small_budget.png",
            ("too_large",),
            {"max_decoded_mb": 64},
        )
    )
    Image.fromarray(np.array([[128]], dtype=np.uint8)).save(root / "one.png")
    cases.append(Crafted("image_png_1x1", "image", "one.png", ("too_small",)))
    Image.fromarray(pixels).convert("P").save(root / "palette.png")
    cases.append(Crafted("image_png_palette", "image", "palette.png", ("palette_image",)))
    Image.fromarray(pixels.astype(np.uint16) * 16).save(root / "twelve_in_sixteen.png")
    cases.append(Crafted("image_png_12bit_range_in_16bit", "image", "twelve_in_sixteen.png", ("ambiguous_bit_depth",)))
    full = (root / "good.png").read_bytes()
    (root / "cut.png").write_bytes(full[: len(full) // 2])
    cases.append(Crafted("image_png_truncated", "image", "cut.png", ("undecodable_pixels", "unreadable")))
    (root / "text.png").write_text("FINDINGS: none. This is not an image.")
    cases.append(Crafted("image_png_that_is_text", "image", "text.png", ("unreadable",)))
    Image.fromarray(np.full((64, 64), 40, dtype=np.uint8)).save(root / "flat.png")
    cases.append(Crafted("image_png_constant", "image", "flat.png", ("blank_image",)))
    frames = [Image.fromarray(pixels), Image.fromarray(255 - pixels)]
    frames[0].save(root / "animated.png", save_all=True, append_images=frames[1:])
    cases.append(Crafted("image_png_animated", "image", "animated.png", ("multiframe",)))
    Image.fromarray(np.stack([pixels] * 4, axis=-1), mode="RGBA").convert("CMYK").save(root / "cmyk.jpg")
    cases.append(Crafted("image_jpeg_cmyk", "image", "cmyk.jpg", ("unsupported_mode",)))
    fifo = root / "pipe.png"
    if not fifo.exists():
        os.mkfifo(fifo)
    cases.append(Crafted("image_png_fifo", "image", "pipe.png", ("not_regular_file",), seconds=5))

    # --- TIFF / NumPy stacks -------------------------------------------------------------------------------------
    stack = np.stack([pixels, 255 - pixels, pixels // 2])
    tifffile.imwrite(root / "good.ome.tif", stack, metadata={"axes": "CYX", "Channel": {"Name": ["DNA", "ER", "Mito"]}})
    cases.append(Crafted("image_tiff_named_channels", "image", "good.ome.tif", (LOADS,), CHANNELS))
    _tiff_with_lying_size(root / "lying.tif", pixels, 60000, 60000)
    cases.append(Crafted("image_tiff_tags_claim_60k", "image", "lying.tif", ("too_large", "undecodable_pixels")))
    tifffile.imwrite(root / "zstack.tif", np.stack([stack] * 3), photometric="minisblack", metadata={"axes": "ZCYX"})
    cases.append(Crafted("image_tiff_z_stack", "image", "zstack.tif", ("not_2d",), CHANNELS))
    cases.append(
        Crafted(
            "image_tiff_unknown_channel",
            "image",
            "good.ome.tif#channels=DNA,Actin,Mito",
            ("unknown_channel",),
            CHANNELS,
        )
    )
    np.save(root / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    cases.append(Crafted("image_npy_pickled_objects", "image", "objects.npy", ("unreadable",)))
    _npy_with_shape(root / "huge.npy", (50000, 50000), b"\x00" * 1024)
    cases.append(Crafted("image_npy_50k_header", "image", "huge.npy", ("too_large",)))
    _npy_with_shape(root / "short.npy", (256, 256), b"\x01" * 1024)
    cases.append(Crafted("image_npy_truncated", "image", "short.npy", ("truncated_file",)))
    np.save(root / "stack.npy", stack)
    (root / "stack.json").write_text("{not json")
    cases.append(Crafted("image_npy_bad_sidecar", "image", "stack.npy", ("bad_sidecar",), CHANNELS))
    np.save(root / "plain.npy", pixels)
    (root / "plain.json").write_text(json.dumps({"spacing": [0.2, 0.2]}))
    tiny_spacing = {"spacing": 0.00001, "max_decoded_mb": 64}
    cases.append(Crafted("image_resample_to_tiny_spacing", "image", "plain.npy", ("too_large",), tiny_spacing))
    return cases
