"""The preprocessing cache (medclip.data.cache): content + fingerprint keys, compact memory maps, no identifiers."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from medclip.data.cache import CacheError, PreprocessCache, content_hash, folder_content_hash

IDENTIFIER = "Doe_John_MRN0012345"
FINGERPRINT = {"orientation": "RAS", "spacing": [1.5, 1.5, 3.0], "size": [8, 8, 4]}


def _every_cache_byte(root) -> str:
    """Every file name and every file's bytes under the cache root, as one text to search."""
    parts = []
    for directory, _, names in os.walk(root):
        for name in names:
            parts.append(os.path.join(directory, name))
            with open(os.path.join(directory, name), "rb") as handle:
                parts.append(handle.read().decode("latin-1"))
    return "\n".join(parts)


@pytest.fixture
def input_file(tmp_path):
    path = tmp_path / f"{IDENTIFIER}.nii"  # an input whose name holds a patient identifier
    path.write_bytes(b"voxels of one study" * 100)
    return path


def test_round_trip_is_a_read_only_memory_map_with_its_metadata(tmp_path, input_file):
    cache = PreprocessCache(tmp_path / "cache", "ct", FINGERPRINT)
    content = cache.content_hash(input_file)
    assert cache.get(content) is None
    array = np.arange(8 * 8 * 4, dtype=np.int16).reshape(8, 8, 4) - 1000
    stored = cache.put(content, array, {"spacing": [1.5, 1.5, 3.0]})
    hit = cache.get(content)
    assert isinstance(hit.array, np.memmap) and not hit.array.flags.writeable
    assert hit.array.dtype == np.int16 and np.array_equal(hit.array, array)
    assert hit.meta == {"spacing": [1.5, 1.5, 3.0]} == stored.meta
    assert not list((tmp_path / "cache").rglob(".tmp-*"))  # atomic writes leave nothing behind


def test_no_identifier_in_any_key_file_name_or_file(tmp_path, input_file):
    cache = PreprocessCache(tmp_path / "cache", "ct", FINGERPRINT)
    content = cache.content_hash(input_file)
    cache.put(content, np.zeros((2, 2, 2), dtype=np.float16), {"orientation": "RAS"})
    text = _every_cache_byte(tmp_path / "cache")
    assert IDENTIFIER not in text and "Doe" not in text and "MRN" not in text
    assert str(input_file) not in text
    for path in (tmp_path / "cache" / "ct").rglob("*"):
        if path.is_file():
            assert len(path.stem) == 64 and set(path.stem) <= set("0123456789abcdef")


def test_key_follows_content_not_name_and_fingerprint_changes_miss(tmp_path, input_file):
    cache = PreprocessCache(tmp_path / "cache", "ct", FINGERPRINT)
    cache.put(cache.content_hash(input_file), np.ones((2, 2, 2), dtype=np.int16))
    renamed = tmp_path / "renamed.nii"
    renamed.write_bytes(input_file.read_bytes())
    assert cache.get(cache.content_hash(renamed)) is not None  # same bytes, other name: same entry
    edited = tmp_path / "edited.nii"
    edited.write_bytes(input_file.read_bytes() + b"!")
    assert cache.get(cache.content_hash(edited)) is None
    other = PreprocessCache(tmp_path / "cache", "ct", {**FINGERPRINT, "spacing": [1.0, 1.0, 1.0]})
    assert other.get(other.content_hash(input_file)) is None  # changed preprocessing: invalidated
    assert other.key(content_hash(input_file)) != cache.key(content_hash(input_file))


def test_memoised_hash_follows_modification(tmp_path, input_file):
    cache = PreprocessCache(tmp_path / "cache", "ecg", {"sampling_rate": 500})
    first = cache.content_hash(input_file)
    assert first == content_hash(input_file)
    assert len(list((tmp_path / "cache" / "content-hashes").iterdir())) == 1
    assert cache.content_hash(input_file) == first  # served from the memo
    input_file.write_bytes(b"a different study")
    os.utime(input_file, ns=(1, 1))  # a new mtime (and size): the memo no longer applies
    assert cache.content_hash(input_file) == content_hash(input_file) != first


def test_folder_hash_ignores_file_names(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for folder, names in ((first, ("IM1", "IM2")), (second, ("Doe_1.dcm", "Doe_2.dcm"))):
        folder.mkdir()
        (folder / names[0]).write_bytes(b"slice one")
        (folder / names[1]).write_bytes(b"slice two")
    assert folder_content_hash(first) == folder_content_hash(second)
    (second / "Doe_2.dcm").write_bytes(b"slice 2")
    assert folder_content_hash(first) != folder_content_hash(second)


def test_rejects_wide_dtypes_unserialisable_metadata_and_bad_hashes(tmp_path, input_file):
    cache = PreprocessCache(tmp_path / "cache", "ct", FINGERPRINT)
    content = cache.content_hash(input_file)
    with pytest.raises(CacheError, match="compact"):
        cache.put(content, np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(CacheError, match="JSON"):
        cache.put(content, np.zeros((2, 2), dtype=np.int16), {"bad": object()})
    with pytest.raises(CacheError, match="sha256"):
        cache.key("not-a-hash")
    with pytest.raises(CacheError, match="JSON"):
        PreprocessCache(tmp_path / "cache", "ct", {"bad": {1, 2}})


def test_pickled_or_stale_entries_are_never_loaded(tmp_path, input_file, caplog):
    cache = PreprocessCache(tmp_path / "cache", "ct", FINGERPRINT)
    content = cache.content_hash(input_file)
    cache.put(content, np.zeros((2, 2, 2), dtype=np.int16))
    key = cache.key(content)
    array_path = cache.folder / key[:2] / f"{key}.npy"
    sidecar_path = array_path.with_suffix(".json")
    np.save(array_path, np.array([{"payload": 1}], dtype=object), allow_pickle=True)  # a planted pickle
    assert cache.get(content) is None
    assert "unreadable" in caplog.text
    cache.put(content, np.zeros((2, 2, 2), dtype=np.int16))  # rebuilt
    sidecar = json.loads(sidecar_path.read_text())
    sidecar_path.write_text(json.dumps({**sidecar, "fingerprint": "0" * 64}))
    assert cache.get(content) is None  # a sidecar from other settings is stale
