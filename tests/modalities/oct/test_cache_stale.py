"""The OCT preprocessing cache never returns a stale entry (issue 14): a file rewritten under the same name with its
timestamps kept, or a NumPy volume whose sidecar changed, is read again."""

from __future__ import annotations

import json
import os

import numpy as np
import tifffile

import medclip
from modalities.oct.synthetic import synthetic_oct_volume

SMALL = {"n_bscans": 8, "bscan_size": [32, 48], "patch_size": [8, 8, 8], "augment": False}


def plugins(tmp_path):
    cached = medclip.get_modality("oct", {**SMALL, "cache_dir": str(tmp_path / "cache")})
    return cached, medclip.get_modality("oct", SMALL)


def finished(plugin, path) -> np.ndarray:
    sample = plugin.load(path)
    return np.asarray(plugin.transforms(train=False)(sample)["oct"], dtype=np.float32)


def test_a_tiff_rewritten_in_place_with_its_timestamps_kept_is_read_again(tmp_path):
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, synthetic_oct_volume(1, shape=(40, 64, 10)).transpose(2, 1, 0))
    cached, plain = plugins(tmp_path)
    before = finished(cached, path)
    times = os.stat(path)
    other = tmp_path / "other.tif"
    tifffile.imwrite(other, synthetic_oct_volume(2, shape=(40, 64, 10)).transpose(2, 1, 0))
    assert other.stat().st_size == times.st_size
    with open(path, "r+b") as handle:  # same path, inode, size and (restored) mtime: only the bytes differ
        handle.write(other.read_bytes())
    os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))
    after = finished(cached, path)
    np.testing.assert_array_equal(after, finished(plain, path))
    assert not np.array_equal(after, before)


def test_an_edited_sidecar_is_read_again(tmp_path):
    np.save(tmp_path / "scan.npy", synthetic_oct_volume(3, shape=(40, 64, 10)))
    (tmp_path / "scan.json").write_text(json.dumps({"spacing": [0.012, 0.004, 0.24]}))
    cached, _ = plugins(tmp_path)
    assert cached.load(tmp_path / "scan.npy")["oct_meta"]["source_spacing"] == [0.012, 0.004, 0.24]
    (tmp_path / "scan.json").write_text(json.dumps({"spacing": [0.011, 0.0039, 0.12]}))
    assert cached.load(tmp_path / "scan.npy")["oct_meta"]["source_spacing"] == [0.011, 0.0039, 0.12]
