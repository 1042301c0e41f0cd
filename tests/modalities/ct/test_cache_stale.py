"""The CT preprocessing cache never returns a stale entry (issue 14): an entry belongs to one reference (path and
series selection) and to the exact content of every file the reader reads."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

import medclip
from medclip.types import ModalityError
from modalities.volume.dicom_write import write_dicom_series

SMALL = {"spacing": [4.0, 4.0, 5.0], "size": [16, 16, 16], "patch_size": [8, 8, 8], "augment": False}
AFFINE = np.diag([2.0, 2.0, 5.0, 1.0])


def hounsfield(seed: int, shape=(12, 10, 6)) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1500, size=shape).astype(np.int16)  # (I, J, K)


def plugins(tmp_path):
    """A cached and an uncached CT plugin with the same preprocessing."""
    cached = medclip.get_modality("ct", {**SMALL, "cache_dir": str(tmp_path / "cache")})
    return cached, medclip.get_modality("ct", SMALL)


def finished(plugin, reference) -> np.ndarray:
    """The encoder input (C, I, J, K) float16 the plugin makes of ``reference``."""
    sample = plugin.load(reference)
    return np.asarray(plugin.transforms(train=False)(sample)["ct"], dtype=np.float32)


def test_series_selection_is_part_of_the_key(tmp_path):
    folder = tmp_path / "study"
    write_dicom_series(folder / "a", hounsfield(1), AFFINE, series_number=1)
    write_dicom_series(folder / "b", hounsfield(2), AFFINE, series_number=2)
    cached, plain = plugins(tmp_path)
    first = cached.resolve("study#series=1", tmp_path)
    second = cached.resolve("study#series=2", tmp_path)
    np.testing.assert_array_equal(finished(cached, first), finished(plain, first))
    # Before the fix the folder's content hash was the whole key: series 2 and the bare folder got series 1's entry.
    np.testing.assert_array_equal(finished(cached, second), finished(plain, second))
    assert not np.array_equal(finished(cached, first), finished(cached, second))
    with pytest.raises(ModalityError) as raised:
        cached.load(cached.resolve("study", tmp_path))
    assert raised.value.reason == "mixed_series"


def test_a_slice_rewritten_in_place_with_its_timestamps_kept_is_read_again(tmp_path):
    files = write_dicom_series(tmp_path / "series", hounsfield(3), AFFINE)
    cached, plain = plugins(tmp_path)
    before = finished(cached, tmp_path / "series")
    target = files[2]
    times = os.stat(target)
    replacement = tmp_path / "other"
    other_files = write_dicom_series(replacement, hounsfield(4), AFFINE)
    # Same size, same path, same inode, same mtime: only the bytes (and the ctime, which no user can set) change.
    with open(target, "r+b") as handle:
        handle.write(_with_geometry_of(other_files[2], target))
    os.utime(target, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert os.stat(target).st_size == times.st_size and os.stat(target).st_mtime_ns == times.st_mtime_ns
    after = finished(cached, tmp_path / "series")
    np.testing.assert_array_equal(after, finished(plain, tmp_path / "series"))
    assert not np.array_equal(after, before)


def _with_geometry_of(source, target) -> bytes:
    """``source``'s pixels in ``target``'s header (same UIDs and position): a same-size rewrite of ``target``."""
    import pydicom

    pixels = pydicom.dcmread(source).PixelData
    dataset = pydicom.dcmread(target)
    dataset.PixelData = pixels
    from io import BytesIO

    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    assert len(data) == os.stat(target).st_size
    return data


def test_added_and_removed_slices_are_read_again(tmp_path):
    volume = hounsfield(5, shape=(12, 10, 7))
    files = write_dicom_series(tmp_path / "full", volume, AFFINE)
    shutil.copytree(tmp_path / "full", tmp_path / "series")
    (tmp_path / "series" / files[-1].name).unlink()  # the last slice missing: a shorter, regular series
    cached, plain = plugins(tmp_path)
    shorter = finished(cached, tmp_path / "series")
    np.testing.assert_array_equal(shorter, finished(plain, tmp_path / "series"))
    shutil.copy2(files[-1], tmp_path / "series" / files[-1].name)  # added back
    full = finished(cached, tmp_path / "series")
    np.testing.assert_array_equal(full, finished(plain, tmp_path / "full"))
    assert not np.array_equal(full, shorter)
    (tmp_path / "series" / files[3].name).unlink()  # an inner slice removed: refused, not served from the cache
    with pytest.raises(ModalityError) as raised:
        cached.load(tmp_path / "series")
    assert raised.value.reason == "missing_slices"


def test_an_edited_sidecar_is_read_again(tmp_path):
    np.save(tmp_path / "scan.npy", hounsfield(6))
    (tmp_path / "scan.json").write_text(json.dumps({"spacing": [2.0, 2.0, 5.0]}))
    cached, _ = plugins(tmp_path)
    assert cached.load(tmp_path / "scan.npy")["ct_meta"]["source_spacing"] == [2.0, 2.0, 5.0]
    (tmp_path / "scan.json").write_text(json.dumps({"spacing": [3.0, 3.0, 6.0]}))
    # Before the fix only the .npy was hashed: the entry of the old spacing came back.
    assert cached.load(tmp_path / "scan.npy")["ct_meta"]["source_spacing"] == [3.0, 3.0, 6.0]


def test_identical_files_at_two_paths_keep_their_own_study(tmp_path):
    np.save(tmp_path / "a.npy", hounsfield(7))
    (tmp_path / "a.json").write_text(json.dumps({"spacing": [2.0, 2.0, 5.0]}))
    shutil.copy(tmp_path / "a.npy", tmp_path / "b.npy")
    shutil.copy(tmp_path / "a.json", tmp_path / "b.json")
    cached, plain = plugins(tmp_path)
    first = cached.load(tmp_path / "a.npy")["ct_meta"]["study_pseudonym"]
    second = cached.load(tmp_path / "b.npy")["ct_meta"]["study_pseudonym"]
    # The study of a NIfTI / NumPy input is its path: two copies are two studies, not one cached entry.
    assert first != second
    assert second == plain.load(tmp_path / "b.npy")["ct_meta"]["study_pseudonym"]
