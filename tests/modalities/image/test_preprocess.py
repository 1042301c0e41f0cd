"""Image geometry and the preprocessing cache: fit/pad like torchvision, spacing resampling, cached == uncached."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import medclip
from medclip.types import ModalityError
from modalities.image.dicom_write import image_dataset, write_dicom_image
from modalities.image.geometry import fitted_size
from tests.modalities.image.sources import pydicom_8bit, skimage_gray, twelve_bit


def eval_image(plugin, reference) -> np.ndarray:
    sample = plugin.transforms(train=False)(plugin.load(reference))
    return np.asarray(sample["image"], dtype=np.float32)


def test_fit_and_pad_equals_torchvisions_resize_and_centre_crop(tmp_path):
    """A 303 x 384 image into 96 x 96: the same pixels as torchvision's Resize(max_size) + CenterCrop padding."""
    from torchvision.transforms import v2

    coins = skimage_gray("coins")
    Image.fromarray(coins).save(tmp_path / "coins.png")
    plugin = medclip.get_modality("image", {"size": [96, 96]})
    ours = eval_image(plugin, tmp_path / "coins.png")
    peer = v2.Compose([v2.Resize(size=None, max_size=96, antialias=True), v2.CenterCrop(96)])
    expected = peer(torch.from_numpy(coins / 255.0).float()[None]).numpy()  # (1, 96, 96)
    assert ours.shape == expected.shape == (1, 96, 96)
    np.testing.assert_allclose(ours, expected, atol=1e-3)  # float16 storage
    assert (ours[:, :10] == 0).all() and (ours[:, -10:] == 0).all()  # letterbox bands above and below


def test_physical_aspect_of_non_square_pixels(tmp_path):
    stored = twelve_bit(pydicom_8bit()[:, :256])  # 512 rows x 256 columns at 0.1 x 0.2 mm: a square field of view
    dataset = image_dataset(stored, "CR", bits_stored=12, spacing=(0.1, 0.2))
    path = write_dicom_image(tmp_path / "cr.dcm", dataset)
    plugin = medclip.get_modality("image", {"size": [64, 64], "cache_dir": str(tmp_path / "cache")})
    sample = plugin.load(path)
    assert sample["image_meta"]["placement"] == [64, 64, 0, 0]  # fills the square: no padding
    assert sample["image_meta"]["spacing"] == [0.8, 0.8] and sample["image_meta"]["source_shape"] == [1, 512, 256]
    assert fitted_size((512, 256), None, (64, 64)) == (64, 32)  # without a pixel size, pixels count as square


def test_spacing_resampling_then_crop_or_pad(tmp_path):
    stored = twelve_bit(pydicom_8bit())  # 512 x 512 at 0.2 mm = 102.4 mm
    path = write_dicom_image(tmp_path / "cr.dcm", image_dataset(stored, "CR", bits_stored=12, spacing=(0.2, 0.2)))
    plugin = medclip.get_modality("image", {"size": [64, 64], "spacing": 0.8, "cache_dir": str(tmp_path / "c")})
    meta = plugin.load(path)["image_meta"]
    assert meta["placement"] == [128, 128, -32, -32]  # 128 pixels of 0.8 mm, centre 64 kept
    assert meta["spacing"] == [0.8, 0.8]
    coarse = medclip.get_modality("image", {"size": [64, 64], "spacing": 3.2})
    assert eval_image(coarse, path).shape == (1, 64, 64)
    png = tmp_path / "camera.png"
    Image.fromarray(skimage_gray("camera")).save(png)
    with pytest.raises(ModalityError) as error:
        eval_image(coarse, png)
    assert error.value.reason == "unknown_spacing"
    tiny = medclip.get_modality("image", {"size": [64, 64], "spacing": 0.0005, "max_decoded_mb": 64})
    with pytest.raises(ModalityError) as error:  # 204800 x 204800 pixels: refused before resampling
        eval_image(tiny, path)
    assert error.value.reason == "too_large"


def test_cache_returns_the_uncached_pipelines_output_as_a_memory_map(tmp_path):
    Image.fromarray(skimage_gray("camera")).save(tmp_path / "camera.png")
    cached = medclip.get_modality("image", {"size": [64, 64], "cache_dir": str(tmp_path / "cache")})
    plain = medclip.get_modality("image", {"size": [64, 64]})
    first = cached.load(tmp_path / "camera.png")
    second = cached.load(tmp_path / "camera.png")
    assert isinstance(second["image"], np.memmap) and second["image"].dtype == np.float16
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 1
    np.testing.assert_array_equal(np.asarray(first["image"]), np.asarray(second["image"]))
    np.testing.assert_array_equal(
        eval_image(cached, tmp_path / "camera.png"), eval_image(plain, tmp_path / "camera.png")
    )
    meta = second["image_meta"]
    assert meta["preprocessed"] == cached.preprocessing.fingerprint_hash and meta["source_shape"] == [1, 512, 512]
    other = medclip.get_modality("image", {"size": [32, 32]})
    with pytest.raises(ModalityError) as error:  # a sample cached with other settings is refused, not reused
        other.transforms(train=False)(second)
    assert error.value.reason == "preprocess_mismatch"
    # batches from the cache: collate copies the memory maps into one float16 tensor
    batch = cached.collate([cached.transforms(train=False)(cached.load(tmp_path / "camera.png"))])
    assert batch["image"].shape == (1, 1, 64, 64) and batch["image"].dtype == torch.float16


def test_cache_key_follows_the_cells_channel_names_and_the_sidecar(tmp_path):
    stack = np.stack([skimage_gray(name)[:96, :96] for name in ("camera", "moon")])
    np.save(tmp_path / "s.npy", stack)
    options = {
        "image_type": "multichannel",
        "channels": ["DNA", "ER"],
        "size": [32, 32],
        "cache_dir": str(tmp_path / "c"),
    }
    plugin = medclip.get_modality("image", options)
    one = plugin.load(plugin.resolve("s.npy#channels=DNA,ER", tmp_path))
    two = plugin.load(plugin.resolve("s.npy#channels=ER,DNA", tmp_path))
    np.testing.assert_array_equal(np.asarray(one["image"])[0], np.asarray(two["image"])[1])
    assert len(list((tmp_path / "c").rglob("*.npy"))) == 2


def test_quarantine_off_never_caches(tmp_path):
    dataset = image_dataset(twelve_bit(pydicom_8bit()), "CR", bits_stored=12, tags={"BurnedInAnnotation": "YES"})
    path = write_dicom_image(tmp_path / "x.dcm", dataset)
    plugin = medclip.get_modality("image", {"quarantine": False, "cache_dir": str(tmp_path / "c"), "size": [32, 32]})
    plugin.load(path)
    assert not list((tmp_path / "c").rglob("*.npy"))
    quarantined = medclip.get_modality("image", {"cache_dir": str(tmp_path / "c"), "size": [32, 32]})
    with pytest.raises(ModalityError) as error:
        quarantined.load(path)
    assert error.value.reason == "quarantined_burned_in_annotation"


def test_preprocess_state_round_trip_and_mismatch():
    plugin = medclip.get_modality("image", {"size": [64, 64]})
    state = plugin.preprocess_state()
    assert state["fingerprint"]["size"] == [64, 64] and state["fingerprint"]["image_type"] == "grayscale"
    medclip.get_modality("image", {"size": [64, 64]}).load_preprocess_state(state)
    with pytest.raises(ValueError, match="fingerprint"):
        medclip.get_modality("image", {"size": [64, 64], "stored_bits": 12}).load_preprocess_state(state)
