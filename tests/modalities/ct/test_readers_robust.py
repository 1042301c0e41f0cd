"""CT readers against hostile inputs (issue 14): special files, sizes declared in headers, rescales that make garbage,
deflated and deeply nested inputs, messages that must not quote file names or content.

The crafted-input suite (``tests/fuzz/crafted_volume.py``) runs the same attacks and many more in a child process;
these are the fast in-process checks of each rule.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import threading
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut
from pydicom.uid import DeflatedExplicitVRLittleEndian

import medclip
from medclip.types import ModalityError
from modalities.volume.dicom_write import write_dicom_series
from tests.fuzz.crafted_volume import deflate_bomb

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])
MEGABYTE = 1024 * 1024


def hounsfield(seed: int = 0, shape=(8, 8, 4)) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1500, size=shape).astype(np.int16)  # (I, J, K)


def edit_all(paths, **values) -> None:
    for path in paths:
        dataset = pydicom.dcmread(path)
        for keyword, value in values.items():
            setattr(dataset, keyword, value)
        dataset.save_as(path, enforce_file_format=True)


def refusal(reference, options=None) -> ModalityError:
    plugin = medclip.get_modality("ct", options or {})
    with pytest.raises(ModalityError) as raised:
        plugin.transforms(train=False)(plugin.load(reference))
    return raised.value


def refused_without_blocking(reference, fifo: Path) -> str:
    """The reason ``load`` gives, from a thread; a reader blocked on the FIFO is released and the test fails."""
    outcome: list[BaseException | None] = []

    def load() -> None:
        try:
            medclip.get_modality("ct").load(reference)
            outcome.append(None)
        except BaseException as error:  # handed to the test thread
            outcome.append(error)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=20)
    if worker.is_alive():
        descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # a writer that closes at once: the reader sees EOF
        os.close(descriptor)
        worker.join(timeout=20)
        pytest.fail("the reader opened a FIFO and blocked on it")
    assert isinstance(outcome[0], ModalityError), outcome
    return outcome[0].reason


def test_special_files_are_refused_without_being_opened(tmp_path):
    os.mkfifo(tmp_path / "scan.nii.gz")
    assert refused_without_blocking(tmp_path / "scan.nii.gz", tmp_path / "scan.nii.gz") == "not_regular_file"
    write_dicom_series(tmp_path / "series", hounsfield(), AFFINE)
    os.mkfifo(tmp_path / "series" / "IM99999.dcm")
    fifo = tmp_path / "series" / "IM99999.dcm"
    assert refused_without_blocking(tmp_path / "series", fifo) == "not_regular_file"
    np.save(tmp_path / "volume.npy", hounsfield())
    os.mkfifo(tmp_path / "volume.json")
    assert refused_without_blocking(tmp_path / "volume.npy", tmp_path / "volume.json") == "not_regular_file"
    (tmp_path / "zero.nii").symlink_to("/dev/zero")
    assert refusal(tmp_path / "zero.nii").reason == "not_regular_file"
    assert refusal("/dev/urandom").reason == "not_regular_file"


@pytest.mark.parametrize(
    "values,expected",
    [
        ({"RescaleSlope": "NaN"}, "non_finite"),
        ({"RescaleSlope": "1e308"}, "non_finite"),
        ({"RescaleSlope": "0"}, "bad_rescale"),
        ({"RescaleIntercept": "1e20"}, "implausible_values"),
        ({"RescaleSlope": "10000"}, "implausible_values"),
    ],
    ids=["slope_nan", "slope_1e308", "slope_zero", "intercept_1e20", "slope_1e4"],
)
def test_hounsfield_units_are_checked_after_the_rescale(tmp_path, values, expected):
    edit_all(write_dicom_series(tmp_path / "series", hounsfield(), AFFINE), **values)
    # Before the fix these loaded: the int16 storage turned NaN / inf / 1e20 into finite garbage, and a slope of 0
    # was silently replaced by 1.
    assert refusal(tmp_path / "series").reason == expected


def test_plausible_rescales_still_load_exactly(tmp_path):
    volume = hounsfield(1, shape=(64, 48, 4))  # 6 KB of pixels per slice: parsed deferred, read when decoded
    files = write_dicom_series(tmp_path / "exact", volume, AFFINE)
    loaded = medclip.get_modality("ct").load(tmp_path / "exact")["ct"]
    assert loaded.dtype == np.int16 and np.array_equal(loaded, volume)
    edit_all(files, RescaleSlope="0.5", RescaleIntercept="-1024")
    scaled = medclip.get_modality("ct").load(tmp_path / "exact")["ct"]
    assert scaled.dtype == np.float32
    for path in files:  # pydicom's own modality LUT, slice by slice
        dataset = pydicom.dcmread(path)
        index = round((float(dataset.ImagePositionPatient[2]) - 0.0) / 2.0)
        np.testing.assert_allclose(scaled[:, :, index], apply_modality_lut(dataset.pixel_array, dataset).T, rtol=1e-6)


def test_declared_sizes_are_refused_before_anything_is_decoded(tmp_path):
    edit_all(write_dicom_series(tmp_path / "rows", hounsfield(), AFFINE), Rows=65535, Columns=65535)
    with gzip.open(tmp_path / "dims.nii.gz", "wb") as handle:  # 40 KB declaring 1100 x 1000 x 1000 int16
        header = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), AFFINE).header
        header.set_data_shape((1100, 1000, 1000))
        header.set_sform(AFFINE, code=1)
        header["vox_offset"] = 352
        handle.write(header.binaryblock + bytes(4) + bytes(40_000))
    npy_header = np.lib.format.header_data_from_array_1_0(np.zeros((2, 2, 2), np.int16))
    npy_header["shape"] = (100_000, 100_000, 100)
    with open(tmp_path / "shape.npy", "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, npy_header)
        handle.write(bytes(1000))
    (tmp_path / "shape.json").write_text(json.dumps({"spacing": [1, 1, 1]}))
    tracemalloc.start()
    try:
        for reference in ("rows", "dims.nii.gz", "shape.npy"):
            assert refusal(tmp_path / reference).reason == "too_large"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * MEGABYTE  # nibabel allocated the declared 2.2 GB before the fix


def test_a_nifti_extension_declaring_2_gb_is_refused_before_nibabel_allocates_it(tmp_path):
    header = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), AFFINE).header
    header.set_sform(AFFINE, code=1)
    header["vox_offset"] = 352 + 16
    body = header.binaryblock + b"\x01\0\0\0" + struct.pack("<ii", 0x7FFFFFF0, 6) + bytes(8) + bytes(16)
    (tmp_path / "extension.nii").write_bytes(body)
    tracemalloc.start()
    try:
        assert refusal(tmp_path / "extension.nii").reason == "bad_extension"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * MEGABYTE


def test_the_resampled_grid_is_checked_before_resampling(tmp_path):
    volume = np.full((16, 16, 16), 40, np.int16)
    write_dicom_series(tmp_path / "coarse", volume, np.diag([20.0, 20.0, 20.0, 1.0]))  # 20 mm voxels
    # 16^3 at 20 mm resampled to the default 3 mm is 107^3 float32 (4.7 MB): over a 4 MB budget, before any resampling
    assert refusal(tmp_path / "coarse", {"max_decoded_mb": 4}).reason == "too_large"
    write_dicom_series(tmp_path / "absurd", volume, np.diag([90.0, 90.0, 90.0, 1.0]))
    assert refusal(tmp_path / "absurd").reason == "implausible_spacing"


def test_a_deflated_series_loads_and_a_deflate_bomb_is_refused_while_inflating(tmp_path):
    volume = hounsfield(2)
    files = write_dicom_series(tmp_path / "deflated", volume, AFFINE)
    for path in files:
        dataset = pydicom.dcmread(path)
        dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        dataset.save_as(path, enforce_file_format=True)
    assert np.array_equal(medclip.get_modality("ct").load(tmp_path / "deflated")["ct"], volume)
    (tmp_path / "bomb").mkdir()
    deflate_bomb(tmp_path / "bomb" / "IM0.dcm", files[0], inflated_bytes=64 * MEGABYTE)  # ~70 KB on disk
    tracemalloc.start()
    try:
        assert refusal(tmp_path / "bomb", {"max_decoded_mb": 16}).reason == "too_large"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MEGABYTE  # pydicom inflates the whole dataset into memory: counted and refused first


def test_a_series_folder_nested_1100_deep_is_listed_without_recursion(tmp_path):
    deepest = tmp_path / "study"
    deepest.mkdir()
    for _ in range(1100):  # os.walk and os.makedirs recurse once per level: past Python's limit here
        deepest = deepest / "d"
        deepest.mkdir()
    try:
        write_dicom_series(deepest, hounsfield(3), AFFINE)
        assert np.array_equal(medclip.get_modality("ct").load(tmp_path / "study")["ct"], hounsfield(3))
    finally:
        _remove_chain(tmp_path / "study")


def _remove_chain(top: Path) -> None:
    """Remove a chain of nested folders deepest first (shutil.rmtree recurses too)."""
    chain = [top]
    while (chain[-1] / "d").is_dir():
        chain.append(chain[-1] / "d")
    for folder in reversed(chain):
        for entry in folder.iterdir():
            if not entry.is_dir():
                entry.unlink()
        folder.rmdir()


def test_messages_quote_no_file_name_or_content(tmp_path):
    (tmp_path / "Doe_Jane.Smith").write_bytes(b"x")
    np.save(tmp_path / "volume.npy", hounsfield())
    (tmp_path / "volume.json").write_text(json.dumps({"spacing": [1, 1, 2], "orientation": "Doe^Jane"}))
    np.save(tmp_path / "fields.npy", np.zeros((4, 4, 4), dtype=[("Doe_Jane", "f4")]))
    (tmp_path / "fields.json").write_text(json.dumps({"spacing": [1, 1, 2]}))
    expected = {
        "Doe_Jane.Smith": "unsupported_format",  # the suffix of a file name is part of the name
        "volume.npy": "bad_orientation",
        "fields.npy": "unsupported_dtype",
    }
    for name, reason in expected.items():
        error = refusal(tmp_path / name)
        assert error.reason == reason
        assert "doe" not in str(error).lower() and "smith" not in str(error).lower(), str(error)
