"""What identifies a cache entry (issue 14): the keyed reference plus the content of every source file; remembered
content hashes are trusted only when the files were last changed well before the hash was taken."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from medclip.data.cache import RACY_SECONDS, ContentHasher, PreprocessCache, file_content_hash, files_content_hash
from medclip.types import ModalityError

FINGERPRINT = {"orientation": "RAS", "size": [2, 2, 2]}


def test_the_reference_and_every_file_are_part_of_the_identity(tmp_path):
    slices = [tmp_path / "Doe_Jane" / f"IM{index}" for index in range(3)]
    slices[0].parent.mkdir()
    for index, path in enumerate(slices):
        path.write_bytes(f"slice {index}".encode())
    cache = PreprocessCache(tmp_path / "cache", "ct", FINGERPRINT)
    folder = str(tmp_path / "Doe_Jane")
    whole = cache.input_hash(folder, slices)
    assert cache.input_hash(folder, slices) == whole
    assert cache.input_hash(f"{folder}#series=2", slices) != whole  # another selection in the same files
    assert cache.input_hash(folder, slices[:2]) != whole  # a slice fewer
    slices[1].write_bytes(b"slice X")  # same size, other bytes
    assert cache.input_hash(folder, slices) != whole
    cache.put(whole, np.zeros((2, 2, 2), np.int16))
    names = " ".join(str(path) for path in (tmp_path / "cache").rglob("*"))
    assert "Doe" not in names and "series" not in names


def test_a_remembered_hash_is_trusted_only_once_the_files_are_older_than_the_racy_window(tmp_path):
    path = tmp_path / "scan.nii"
    path.write_bytes(b"voxels")
    hasher = ContentHasher(tmp_path / "memo")
    assert hasher.files([path]) == files_content_hash([path])
    signature = next((tmp_path / "memo").iterdir())
    newest = max(os.stat(path).st_mtime_ns, os.stat(path).st_ctime_ns)
    planted = "f" * 64  # what a stale memo would say
    signature.write_text(f"{planted} {newest}")  # hashed at the very moment of the last change: racily clean
    assert ContentHasher(tmp_path / "memo").files([path]) == files_content_hash([path])
    later = newest + int((RACY_SECONDS + 1) * 1e9)
    signature.write_text(f"{planted} {later}")  # hashed well after the last change: trusted without reading
    assert ContentHasher(tmp_path / "memo").files([path]) == planted


def test_a_file_rewritten_with_its_size_and_mtime_kept_gets_a_new_hash(tmp_path):
    path = tmp_path / "scan.nii"
    path.write_bytes(b"first study")
    old = time.time_ns() - 3_600 * 10**9
    os.utime(path, ns=(old, old))  # an hour old: its hash is remembered and trusted
    cache = PreprocessCache(tmp_path / "cache", "ct", FINGERPRINT)
    first = cache.content_hash(path)
    with open(path, "r+b") as handle:
        handle.write(b"other study")  # same size, in place: same inode
    os.utime(path, ns=(old, old))  # mtime set back; ctime cannot be
    assert cache.content_hash(path) == file_content_hash(path) != first


def test_a_fifo_is_refused_by_the_hashing_without_being_opened(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    (folder / "IM0").write_bytes(b"slice")
    os.mkfifo(folder / "IM1")
    cache = PreprocessCache(tmp_path / "cache", "ct", FINGERPRINT)
    outcome: list[BaseException | None] = []

    def hash_folder() -> None:
        try:
            cache.content_hash(folder)
            outcome.append(None)
        except BaseException as error:  # handed to the test thread
            outcome.append(error)

    worker = threading.Thread(target=hash_folder, daemon=True)
    worker.start()
    worker.join(timeout=20)
    if worker.is_alive():
        os.close(os.open(folder / "IM1", os.O_WRONLY | os.O_NONBLOCK))  # release the blocked reader
        pytest.fail("the cache opened a FIFO and blocked on it")
    assert isinstance(outcome[0], ModalityError) and outcome[0].reason == "not_regular_file"
