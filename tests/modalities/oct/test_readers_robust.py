"""OCT readers against hostile inputs (issue 14): page shapes and frame counts checked from headers before decoding,
TIFFs whose pages differ, complex or non-finite intensities, broken voxel sizes, folders and names in messages."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile
from PIL import Image

import medclip
from medclip.types import ModalityError
from modalities.oct.synthetic import synthetic_oct_volume
from tests.fuzz.crafted_volume import oct_dicom, tiff_bomb

SMALL = {"n_bscans": 8, "bscan_size": [32, 48], "patch_size": [8, 8, 8]}
MEGABYTE = 1024 * 1024


def refusal(path, options=None) -> ModalityError:
    plugin = medclip.get_modality("oct", {**SMALL, **(options or {})})
    with pytest.raises(ModalityError) as raised:
        plugin.transforms(train=False)(plugin.load(path))
    return raised.value


def test_a_compressed_tiff_is_sized_from_its_page_headers_before_decoding(tmp_path):
    tiff_bomb(tmp_path / "bomb.tif")  # 1.2 MB of zlib pages decoding to 1.1 GiB of uint16 (2.25 GiB as float32)
    tracemalloc.start()
    try:
        assert refusal(tmp_path / "bomb.tif").reason == "too_large"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * MEGABYTE


def test_a_tiff_with_pages_of_two_sizes_is_refused_not_cut_to_its_first_run(tmp_path):
    pages = [Image.fromarray(np.full((24, 16), 100 * index, np.uint16)) for index in range(1, 4)]
    pages.append(Image.fromarray(np.full((12, 16), 400, np.uint16)))
    pages[0].save(tmp_path / "two_sizes.tif", save_all=True, append_images=pages[1:])
    assert tifffile.imread(tmp_path / "two_sizes.tif").shape == (3, 24, 16)  # what the old reader kept, silently
    assert refusal(tmp_path / "two_sizes.tif").reason == "multiple_series"


def test_intensities_are_real_finite_and_plausible(tmp_path):
    volume = synthetic_oct_volume(1, shape=(16, 24, 6)).transpose(2, 1, 0)  # (B-scan, axial, lateral)
    tifffile.imwrite(tmp_path / "complex.tif", (volume + 1j * volume[::-1]).astype(np.complex64))
    nan = volume.astype(np.float32)
    nan[1, 2, 3] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", nan)
    tifffile.imwrite(tmp_path / "huge.tif", volume * np.float32(1e30))
    expected = {"complex.tif": "complex_data", "nan.tif": "non_finite", "huge.tif": "implausible_values"}
    for name, reason in expected.items():
        assert refusal(tmp_path / name).reason == reason


def test_dicom_frames_and_voxel_sizes_are_checked_before_decoding(tmp_path):
    volume = synthetic_oct_volume(2, shape=(16, 24, 6))
    oct_dicom(tmp_path / "good.dcm", volume)
    sample = medclip.get_modality("oct", SMALL).load(tmp_path / "good.dcm")
    assert np.array_equal(sample["oct"], volume) and sample["oct_meta"]["spacing_known"]
    oct_dicom(tmp_path / "frames.dcm", volume, frames=1_000_000_000)
    assert refusal(tmp_path / "frames.dcm").reason == "too_large"
    # A broken voxel size used to be treated as absent (spacing 1, "unknown"): now it is refused.
    oct_dicom(tmp_path / "nan.dcm", volume, spacing=("NaN", "0.012"))
    assert refusal(tmp_path / "nan.dcm").reason == "bad_affine"
    oct_dicom(tmp_path / "far.dcm", volume, thickness="90")
    assert refusal(tmp_path / "far.dcm").reason == "implausible_spacing"


def test_folders_and_names_in_messages(tmp_path):
    (tmp_path / "scan.tif").mkdir()
    assert refusal(tmp_path / "scan.tif").reason == "not_regular_file"
    (tmp_path / "Roe_Richard.Eye").write_bytes(b"x")
    error = refusal(tmp_path / "Roe_Richard.Eye")
    assert error.reason == "unsupported_format" and "eye" not in str(error).lower()
