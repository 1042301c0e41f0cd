"""A preprocessing cache: deterministic transforms run once, their output is stored as a compact memory-mapped array.

Modality-neutral: any plugin (CT, OCT, ECG, ...) hands over a *content hash* of its input and a *preprocessing
fingerprint* (the JSON-able settings of its deterministic transforms) and gets back a read-only memory map.

- Key: ``sha256(content hash + fingerprint hash)``. The content hash is computed from the input's bytes, never from
  its path, so no file name, patient name or UID can reach a key or a cache file name; renaming an input keeps its
  entry, editing it makes a new one, and a changed fingerprint misses (the old entry is simply not used again).
- Entry: ``<root>/<namespace>/<key[:2]>/<key>.npy`` (int16, float16, uint8 or int8 only: compact, and never pickled)
  + ``<key>.json`` sidecar with the caller's allow-listed metadata, the fingerprint hash and the exact ``.npy`` header
  bytes. A read checks the fingerprint and that header (a replaced, truncated or pickled file is refused and rebuilt),
  then memory-maps the data. Both files are written to temporary files and renamed, so a crash or a concurrent writer
  never leaves a half entry.
- Content hashes of large inputs take time (a 100 MB CT reads at ~1 GB/s); ``ContentHasher`` remembers them per
  (path, size, mtime), under a keyed pseudonym of that tuple, so warm epochs skip the hashing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("medclip.data")

CACHE_FORMAT = "medclip.cache/1"
CACHE_DTYPES = (np.dtype(np.int16), np.dtype(np.float16), np.dtype(np.uint8), np.dtype(np.int8))
CHUNK_BYTES = 1 << 22  # 4 MiB reads when hashing


class CacheError(ValueError):
    """A cache entry or request is invalid (wrong dtype, corrupt sidecar); the message never holds an identifier."""


def fingerprint_digest(fingerprint: Mapping[str, Any]) -> str:
    """sha256 (hex) of a JSON-able preprocessing fingerprint, independent of key order."""
    try:
        text = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"))
    except TypeError as error:
        raise CacheError(f"the preprocessing fingerprint must be JSON-serialisable: {error}") from error
    return hashlib.sha256(text.encode()).hexdigest()


def file_content_hash(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def folder_content_hash(path: str | os.PathLike) -> str:
    """sha256 over the sorted content hashes of every non-hidden file below ``path`` (names do not count)."""
    hashes = []
    for directory, subdirectories, names in os.walk(path):
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        hashes.extend(file_content_hash(Path(directory) / name) for name in names if not name.startswith("."))
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()


def content_hash(path: str | os.PathLike) -> str:
    """Content hash of a file, or of a folder's files (a DICOM series)."""
    return folder_content_hash(path) if Path(path).is_dir() else file_content_hash(path)


def _stat_signature(path: Path) -> str:
    """Size and modification time of a file, or of every file in a folder: changes whenever the content may have."""
    if not path.is_dir():
        stat = path.stat()
        return f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ino}"
    parts = [os.path.abspath(path)]
    for directory, subdirectories, names in os.walk(path):
        subdirectories[:] = sorted(name for name in subdirectories if not name.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                stat = (Path(directory) / name).stat()
                parts.append(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ino}")
    return "\n".join(parts)


class ContentHasher:
    """Content hashes, remembered across processes and runs by file size and modification time.

    The memo file is named by a *keyed* pseudonym (HMAC with the institution's pseudonym key) of the path and stat
    values, so it reveals neither (a plain hash of a path holding a patient's name could be reversed by guessing).

    Args:
        folder: where memo files live (inside the cache root).
        pseudonymizer: the keyed hash; defaults to ``Pseudonymizer.from_environment()``.
    """

    def __init__(self, folder: str | os.PathLike, pseudonymizer=None) -> None:
        from .pseudonym import Pseudonymizer

        self.folder = Path(folder)
        self.pseudonymizer = pseudonymizer if pseudonymizer is not None else Pseudonymizer.from_environment()
        self._known: dict[str, str] = {}  # stat signature -> content hash, for this process (never written out)

    def __call__(self, path: str | os.PathLike) -> str:
        path = Path(path)
        signature = _stat_signature(path)
        if signature in self._known:
            return self._known[signature]
        self._known[signature] = digest = self._lookup(path, signature)
        return digest

    def _lookup(self, path: Path, signature: str) -> str:
        token = self.pseudonymizer.pseudonym(signature, kind="study")
        memo = self.folder / f"{token}.sha256"
        try:
            remembered = memo.read_text().strip()
            if len(remembered) == 64:
                return remembered
        except OSError:
            pass
        digest = content_hash(path)
        _atomic_write_bytes(memo, digest.encode())
        return digest


@dataclass
class CachedArray:
    """A cache hit: the memory-mapped array (read-only) and the metadata stored with it."""

    array: np.ndarray
    meta: dict[str, Any]


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class PreprocessCache:
    """Stores deterministic preprocessing outputs by (content hash, fingerprint).

    Args:
        root: the cache folder (shared by every modality; each gets its own ``namespace`` sub-folder).
        namespace: a short name such as "ct" or "ecg".
        fingerprint: the JSON-able settings of the deterministic transforms; part of every key.
    """

    def __init__(self, root: str | os.PathLike, namespace: str, fingerprint: Mapping[str, Any]) -> None:
        if not namespace.isidentifier():
            raise CacheError(f"cache namespace must be a plain name, got {namespace!r}")
        self.root = Path(root)
        self.folder = self.root / namespace
        self.fingerprint = dict(fingerprint)
        self.fingerprint_hash = fingerprint_digest(self.fingerprint)
        self.hasher = None  # created on first use (it reads the pseudonym key)

    def content_hash(self, path: str | os.PathLike) -> str:
        """The (memoised) content hash of an input file or folder."""
        if self.hasher is None:
            self.hasher = ContentHasher(self.root / "content-hashes")
        return self.hasher(path)

    def key(self, content: str) -> str:
        """The entry key of an input's content hash under this cache's fingerprint."""
        if len(content) != 64 or any(char not in "0123456789abcdef" for char in content):
            raise CacheError("a content hash must be 64 lowercase hex characters (sha256)")
        return hashlib.sha256(f"{content}\0{self.fingerprint_hash}".encode()).hexdigest()

    def _paths(self, key: str) -> tuple[Path, Path]:
        base = self.folder / key[:2] / key
        return base.with_suffix(".npy"), base.with_suffix(".json")

    def get(self, content: str) -> CachedArray | None:
        """The entry for ``content`` under this fingerprint, memory-mapped, or None when absent or stale."""
        array_path, meta_path = self._paths(self.key(content))
        try:
            sidecar = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None
        if sidecar.get("format") != CACHE_FORMAT or sidecar.get("fingerprint") != self.fingerprint_hash:
            return None
        array = self._map(array_path, sidecar)
        if array is None:
            logger.warning("preprocessing cache: an entry in %s is unreadable; it will be rebuilt", self.folder)
            return None
        return CachedArray(array=array, meta=dict(sidecar.get("meta", {})))

    @staticmethod
    def _map(array_path: Path, sidecar: Mapping[str, Any]) -> np.ndarray | None:
        """Memory-map an entry whose .npy header is byte-for-byte the one recorded when it was written.

        Comparing the recorded header is both the integrity check (a replaced or truncated file, a planted pickle:
        refused) and the fast path: NumPy's own header parsing costs more than reading a small volume.
        """
        try:
            header = bytes.fromhex(sidecar["npy_header"])
            dtype = np.dtype(sidecar["dtype"])
            shape = tuple(int(size) for size in sidecar["shape"])
            if dtype not in CACHE_DTYPES:
                return None
            with open(array_path, "rb") as handle:
                if handle.read(len(header)) != header:
                    return None
            expected = len(header) + dtype.itemsize * int(np.prod(shape))
            if array_path.stat().st_size != expected:
                return None
            return np.memmap(array_path, dtype=dtype, mode="r", shape=shape, offset=len(header))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, content: str, array: np.ndarray, meta: Mapping[str, Any] | None = None) -> CachedArray:
        """Store ``array`` (a cache dtype) with JSON-able ``meta``; returns the memory-mapped entry."""
        array = np.asarray(array)
        if array.dtype not in CACHE_DTYPES:
            raise CacheError(
                f"cache arrays must be one of {[str(dtype) for dtype in CACHE_DTYPES]} (compact), got {array.dtype}"
            )
        array = np.ascontiguousarray(array)
        array_path, meta_path = self._paths(self.key(content))
        array_path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=array_path.parent, prefix=".tmp-", suffix=".npy")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                np.save(handle, array, allow_pickle=False)
            header_length = Path(temporary).stat().st_size - array.nbytes
            with open(temporary, "rb") as handle:
                header = handle.read(header_length)
            os.replace(temporary, array_path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        sidecar = {
            "format": CACHE_FORMAT,
            "fingerprint": self.fingerprint_hash,
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "npy_header": header.hex(),
            "meta": dict(meta or {}),
        }
        try:
            text = json.dumps(sidecar, sort_keys=True)
        except TypeError as error:
            raise CacheError(f"cache metadata must be JSON-serialisable: {error}") from error
        _atomic_write_bytes(meta_path, text.encode())  # written last: an entry counts only once its sidecar exists
        cached = self.get(content)
        if cached is None:  # pragma: no cover - only on a concurrent fingerprint change or a full disk
            raise CacheError("a cache entry could not be read back right after writing it")
        return cached

    def size_bytes(self) -> int:
        """Bytes of every array in this namespace (for reports and the benchmark)."""
        return sum(path.stat().st_size for path in self.folder.rglob("*.npy")) if self.folder.exists() else 0
