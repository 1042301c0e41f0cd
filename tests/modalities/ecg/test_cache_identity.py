"""The ECG cache never serves a replaced record: the in-process content-hash memo follows each file's identity
(ctime included), a recently changed file is hashed again, and an added sidecar changes the key (issue 14)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

import medclip
from modalities.ecg import cache
from modalities.ecg.readers import reader_for
from tests.modalities.ecg.writers import sine_leads, write_array

RAW = {"bandpass_hz": [], "notch_hz": 0.0, "cache_dtype": "float16"}


def backdate(*paths) -> None:
    """Make files look written long ago (as a record that was on disk before the run)."""
    for path in paths:
        os.utime(path, ns=(1_600_000_000 * 10**9, 1_600_000_000 * 10**9))


def test_record_rewritten_in_place_with_its_mtime_restored_is_read_again(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "RACY_NANOSECONDS", 0)  # only the identity check is under test here
    ecg = medclip.get_modality("ecg", {**RAW, "cache_dir": str(tmp_path / "cache")})
    path = write_array(tmp_path / "rec.npy", sine_leads(12, 10.0, 500.0))
    ref = {"path": path, "sampling_rate": 500.0, "units": "mV"}
    first = ecg.load(ref)["ecg"]
    before = os.stat(path)
    with open(path, "r+b") as handle:  # same size, same inode, other samples
        np.save(handle, -sine_leads(12, 10.0, 500.0))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # size, mtime and inode as before
    assert (os.stat(path).st_size, os.stat(path).st_mtime_ns, os.stat(path).st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )
    np.testing.assert_allclose(ecg.load(ref)["ecg"], -first, atol=1e-3)


def test_recently_changed_files_are_hashed_again(tmp_path, monkeypatch):
    ecg = medclip.get_modality("ecg", {**RAW, "cache_dir": str(tmp_path / "cache")})
    path = write_array(tmp_path / "a.npy", sine_leads(12, 10.0, 500.0), sampling_rate=500, units="mV")
    ecg.load(path)
    memo = cache._CONTENT_HASHES[str(path)]
    assert not cache._trusted(memo)  # changed just now: a same-size rewrite in this clock tick would look identical
    # Hashed well after the last change: trusted, and the files are not read again.
    cache._CONTENT_HASHES[str(path)] = dataclasses.replace(memo, hashed_at_ns=memo.hashed_at_ns + 10**10)

    def read_again(*args):
        raise AssertionError("a trusted memo must not hash the files again")

    monkeypatch.setattr(cache, "hash_files", read_again)
    assert cache.content_hash(path, reader_for(path), 1 << 30) == memo.digest


def test_a_sidecar_added_later_changes_the_record(tmp_path):
    ecg = medclip.get_modality("ecg", {**RAW, "cache_dir": str(tmp_path / "cache"), "default_units": "mV"})
    path = write_array(tmp_path / "a.npy", sine_leads(12, 10.0, 500.0))
    ref = {"path": path, "sampling_rate": 500.0}
    backdate(path)
    in_millivolts = ecg.load(ref)["ecg"]
    (tmp_path / "a.json").write_text('{"units": "uV"}')  # the same samples are microvolts after all
    backdate(tmp_path / "a.json")
    np.testing.assert_allclose(ecg.load(ref)["ecg"], in_millivolts / 1000.0, atol=1e-5)
