"""PNG, JPEG, TIFF and NumPy images through the image plugin: bit depths, colour, alpha, named channel stacks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

import medclip
from medclip.types import ModalityError
from tests.modalities.image.sources import skimage_gray, skimage_retina

CELL_PAINTING = ["DNA", "ER", "RNA", "AGP", "Mito"]


def load(path, cell: str | None = None, **options) -> tuple[np.ndarray, dict]:
    plugin = medclip.get_modality("image", options)
    reference = plugin.resolve(cell, path.parent) if cell else path
    sample = plugin.load(reference)
    return np.asarray(sample["image"]), sample["image_meta"]


def refused(path, cell: str | None = None, **options) -> str:
    with pytest.raises(ModalityError) as error:
        load(path, cell, **options)
    return error.value.reason


def test_8bit_png_and_tiff_read_as_pillow_and_tifffile_decode_them(tmp_path):
    camera = skimage_gray("camera")
    Image.fromarray(camera).save(tmp_path / "camera.png")
    tifffile.imwrite(tmp_path / "camera.tif", camera, compression="zlib")
    for name in ("camera.png", "camera.tif"):
        image, meta = load(tmp_path / name)
        np.testing.assert_allclose(image[0], camera / 255.0, atol=1e-7)
        assert meta["spacing"] is None and meta["color"] == "grayscale"


def test_16bit_png_with_declared_stored_bits(tmp_path):
    moon = skimage_gray("moon").astype(np.uint16) * 16 + 7  # 12-bit values in a 16-bit file
    Image.fromarray(moon).save(tmp_path / "moon16.png")
    assert refused(tmp_path / "moon16.png") == "ambiguous_bit_depth"  # read as 16 bits it would be near black
    image, _ = load(tmp_path / "moon16.png", stored_bits=12)
    np.testing.assert_allclose(image[0], moon / 4095.0, atol=1e-6)
    full = skimage_gray("moon").astype(np.uint16) * 257  # really 16-bit
    Image.fromarray(full).save(tmp_path / "full16.png")
    image, _ = load(tmp_path / "full16.png")
    np.testing.assert_allclose(image[0], full / 65535.0, atol=1e-6)
    assert refused(tmp_path / "full16.png", stored_bits=12) == "values_exceed_stored_bits"


def test_16bit_colour_png_keeps_16_bits(tmp_path):
    import imagecodecs

    retina = skimage_retina().astype(np.uint16) * 257 + 3
    (tmp_path / "retina16.png").write_bytes(imagecodecs.png_encode(retina))
    image, meta = load(tmp_path / "retina16.png", image_type="rgb")
    np.testing.assert_allclose(image, np.moveaxis(retina, -1, 0) / 65535.0, atol=1e-7)
    assert meta["color"] == "rgb"


def test_jpeg_photograph_and_grayscale_saved_as_rgb(tmp_path):
    retina = skimage_retina()
    Image.fromarray(retina).save(tmp_path / "retina.jpg", quality=95)
    image, _ = load(tmp_path / "retina.jpg", image_type="rgb")
    decoded = np.asarray(Image.open(tmp_path / "retina.jpg"))
    np.testing.assert_allclose(image, np.moveaxis(decoded, -1, 0) / 255.0, atol=1e-7)
    assert refused(tmp_path / "retina.jpg") == "not_grayscale"
    camera = skimage_gray("camera")
    Image.fromarray(np.stack([camera] * 3, axis=-1)).save(tmp_path / "camera_rgb.png")
    image, meta = load(tmp_path / "camera_rgb.png")  # three equal channels: exactly grayscale
    np.testing.assert_allclose(image[0], camera / 255.0, atol=1e-7)
    assert image.shape[0] == 1 and meta["color"] == "rgb"


def test_alpha_must_be_opaque_and_palettes_are_refused(tmp_path):
    camera = skimage_gray("camera")
    opaque = np.stack([camera, np.full_like(camera, 255)], axis=-1)
    Image.fromarray(opaque, mode="LA").save(tmp_path / "opaque.png")
    image, _ = load(tmp_path / "opaque.png")
    np.testing.assert_allclose(image[0], camera / 255.0, atol=1e-7)
    holes = opaque.copy()
    holes[:10, :10, 1] = 0
    Image.fromarray(holes, mode="LA").save(tmp_path / "holes.png")
    assert refused(tmp_path / "holes.png") == "has_transparency"
    Image.fromarray(camera).convert("P").save(tmp_path / "palette.png")
    assert refused(tmp_path / "palette.png") == "palette_image"
    Image.fromarray(camera).convert("1").save(tmp_path / "bilevel.png")
    assert refused(tmp_path / "bilevel.png") == "bilevel_image"


def test_multichannel_tiff_with_ome_names_in_any_order_and_subsets(tmp_path):
    sources = [skimage_gray(name)[:256, :256] for name in ("camera", "moon", "coins", "cell", "camera")]
    stack = np.stack([source.astype(np.uint16) * 200 + index for index, source in enumerate(sources)])  # (5, H, W)
    order = ["Mito", "DNA", "AGP", "ER", "RNA"]  # the file's own channel order
    tifffile.imwrite(tmp_path / "site.ome.tif", stack, metadata={"axes": "CYX", "Channel": {"Name": order}})
    options = {"image_type": "multichannel", "channels": CELL_PAINTING, "intensity": "percentile"}
    image, meta = load(tmp_path / "site.ome.tif", **options)
    assert image.shape == (5, 256, 256) and meta["channels_present"] == [True] * 5
    for index, name in enumerate(order):  # each stain lands in its configured slot
        channel = stack[index].astype(np.float64)
        low, high = np.percentile(channel, [0.5, 99.5])
        np.testing.assert_allclose(
            image[CELL_PAINTING.index(name)], np.clip((channel - low) / (high - low), 0, 1), atol=1e-5
        )
    # a three-channel acquisition named in the manifest cell: the two missing stains are zero and marked absent
    tifffile.imwrite(tmp_path / "three.tif", stack[:3], photometric="minisblack")
    image, meta = load(tmp_path / "three.tif", "three.tif#channels=Mito,DNA,AGP", **options)
    assert meta["channels_present"] == [True, False, False, True, True]
    assert not image[1].any() and not image[2].any()


def test_multichannel_names_from_imagej_labels_sidecar_and_refusals(tmp_path):
    stack = np.stack([skimage_gray(name)[:128, :128] for name in ("camera", "moon", "coins")])
    options = {"image_type": "multichannel", "channels": CELL_PAINTING}
    tifffile.imwrite(tmp_path / "ij.tif", stack, imagej=True, metadata={"axes": "CYX", "Labels": ["DNA", "ER", "RNA"]})
    _, meta = load(tmp_path / "ij.tif", **options)
    assert meta["channels_present"] == [True, True, True, False, False]
    np.save(tmp_path / "cells.npy", stack)
    assert refused(tmp_path / "cells.npy", **options) == "unnamed_channels"
    (tmp_path / "cells.json").write_text(json.dumps({"channels": ["AGP", "RNA", "DNA"], "spacing": [0.0007, 0.0007]}))
    image, meta = load(tmp_path / "cells.npy", **options)
    np.testing.assert_allclose(image[CELL_PAINTING.index("AGP")], stack[0] / 255.0, atol=1e-7)
    assert meta["spacing"] == [0.0007, 0.0007]
    assert refused(tmp_path / "cells.npy", "cells.npy#channels=DNA,Actin,RNA", **options) == "unknown_channel"
    assert refused(tmp_path / "cells.npy", "cells.npy#channels=DNA,RNA", **options) == "bad_channel_names"
    assert refused(tmp_path / "cells.npy", "cells.npy#channels=DNA,DNA,RNA", **options) == "bad_channel_names"
    assert refused(tmp_path / "cells.npy") == "not_grayscale"  # three different channels where one image is expected
    tifffile.imwrite(
        tmp_path / "zstack.tif", np.stack([stack, stack]), photometric="minisblack", metadata={"axes": "ZCYX"}
    )
    assert refused(tmp_path / "zstack.tif", **options) == "not_2d"


def test_numpy_float_images_and_intensity_rules(tmp_path):
    camera = skimage_gray("camera") / 255.0
    np.save(tmp_path / "unit.npy", camera.astype(np.float32))
    image, _ = load(tmp_path / "unit.npy")
    np.testing.assert_allclose(image[0], camera, atol=1e-7)
    np.save(tmp_path / "hu.npy", (camera * 3000 - 1000).astype(np.float32))
    assert refused(tmp_path / "hu.npy") == "values_out_of_range"
    image, _ = load(tmp_path / "hu.npy", intensity="percentile", percentiles=[0.0, 100.0])
    np.testing.assert_allclose(image[0], (camera - camera.min()) / (camera.max() - camera.min()), atol=1e-5)
    nan = camera.copy()
    nan[3, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    assert refused(tmp_path / "nan.npy") == "non_finite_values"
    np.save(tmp_path / "flat.npy", np.full((64, 64), 7, dtype=np.uint8))
    assert refused(tmp_path / "flat.npy") == "blank_image"
    np.save(tmp_path / "tiny.npy", np.zeros((1, 1), dtype=np.uint8))
    assert refused(tmp_path / "tiny.npy") == "too_small"


def test_numpy_channel_first_grayscale_and_colour(tmp_path):
    camera = skimage_gray("camera")
    np.save(tmp_path / "one.npy", camera[None])  # (1, H, W)
    image, _ = load(tmp_path / "one.npy")
    np.testing.assert_allclose(image[0], camera / 255.0, atol=1e-7)
    retina = np.moveaxis(skimage_retina(), -1, 0)  # (3, H, W)
    np.save(tmp_path / "retina.npy", np.ascontiguousarray(retina))
    image, meta = load(tmp_path / "retina.npy", image_type="rgb")
    np.testing.assert_allclose(image, retina / 255.0, atol=1e-7)
    assert meta["color"] == "rgb"
    np.save(tmp_path / "pages.npy", np.stack([camera, camera]))  # two pages: not one image
    assert refused(tmp_path / "pages.npy") == "multiframe"


def test_inspect_shows_allow_listed_metadata_only(tmp_path, capsys):
    from medclip.cli import main

    Image.fromarray(skimage_gray("camera")).save(tmp_path / "Doe_Jane_MRN0042917.png")
    assert main(["inspect", str(tmp_path / "Doe_Jane_MRN0042917.png")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["modality"] == "image" and summary["meta"]["shape"] == [1, 512, 512]
    assert "Doe" not in json.dumps(summary) and "MRN" not in json.dumps(summary)


def test_inputs_that_are_not_images(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    assert refused(tmp_path / "notes.txt") == "unsupported_format"
    (tmp_path / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    assert refused(tmp_path / "fake.png") == "unreadable"
    assert refused(tmp_path / "missing.png") == "missing_file"
    (tmp_path / "folder.png").mkdir()
    assert refused(tmp_path / "folder.png") == "not_regular_file"
