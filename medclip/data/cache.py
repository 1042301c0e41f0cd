"""A preprocessing cache: deterministic transforms run once, their output is stored as a compact memory-mapped array.

Modality-neutral: any plugin (CT, OCT, ECG, ...) hands over a *content hash* of its input and a *preprocessing
fingerprint* (the JSON-able settings of its deterministic transforms) and gets back a read-only memory map.

- Key: ``sha256(content hash + fingerprint hash)``. The content hash is computed from the input's bytes
  (``content_hash``), or from a keyed pseudonym of the input's reference plus its files' bytes (``input_hash``, see
  below), never from a path in clear, so no file name, patient name or UID can reach a key or a cache file name;
  editing an input makes a new entry, and a changed fingerprint misses (the old entry is simply not used again).
- Entry: ``<root>/<namespace>/<key[:2]>/<key>.npy`` (int16, float16, uint8 or int8 only: compact, and never pickled)
  + ``<key>.json`` sidecar with the caller's allow-listed metadata, the fingerprint hash and the exact ``.npy`` header
  bytes. A read checks the fingerprint and that header (a replaced, truncated or pickled file is refused and rebuilt),
  then memory-maps the data. Both files are written to temporary files and renamed, so a crash or a concurrent writer
  never leaves a half entry.
- Content hashes of large inputs take time (a 100 MB CT reads at ~1 GB/s); ``ContentHasher`` remembers them per
  (path, size, mtime, ctime, inode, device) of every file, under a keyed pseudonym of those values, so warm epochs
  skip the hashing. A remembered hash is trusted only when every file was last changed more than
  ``RACY_SECONDS`` before it was computed: a file rewritten in place with the same size within the file system's
  timestamp granularity (or with its mtime set back) keeps its stat values, and is then hashed again, as git does
  for "racily clean" files. ctime cannot be set back by a user.
- One input = one reference + its source files (``input_hash``): volume plugins key an entry by the keyed pseudonym
  of the full reference (the resolved path plus what selects within it, e.g. ``#series=2``) and the content of every
  file the reader reads (each slice of a series, a .npy and its sidecar), so selecting another series of a folder,
  replacing, adding or removing a file, or editing a sidecar never returns a stale entry. Only regular files are
  read (a FIFO in a folder would block the hashing forever).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..types import ModalityError
from .safe_io import regular_files, require_regular_file

logger = logging.getLogger("medclip.data")

CACHE_FORMAT = "medclip.cache/2"  # 2: entries keyed by reference + source files (issue 14); /1 entries are not used
CACHE_DTYPES = (np.dtype(np.int16), np.dtype(np.float16), np.dtype(np.uint8), np.dtype(np.int8))
CHUNK_BYTES = 1 << 22  # 4 MiB reads when hashing
RACY_SECONDS = 2.0  # coarser than any file system's timestamp granularity (ext4 ~ms, NFS and FAT up to 2 s)


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
    """sha256 (hex) of a regular file's bytes (a FIFO or device is ``not_regular_file``: never opened)."""
    require_regular_file(path, "input")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def folder_files(path: str | os.PathLike) -> list[Path]:
    """Every non-hidden regular file below ``path``, sorted; walked without recursion, linked folders not entered.

    Raises:
        ModalityError: ``not_regular_file`` for a FIFO, socket or device below it.
    """
    files: list[Path] = []
    pending = [Path(path)]
    while pending:
        directory = pending.pop()
        names = []
        for entry in sorted(os.scandir(directory), key=lambda entry: entry.name):
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            elif not (entry.is_symlink() and _links_to_folder(entry.path)):  # linked folders could lead back up
                names.append(entry.path)
        files.extend(regular_files(names, what="input"))
    return sorted(files)


def _links_to_folder(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:  # a dangling link or a link loop: regular_files names the problem
        return False


def folder_content_hash(path: str | os.PathLike) -> str:
    """sha256 over the sorted content hashes of every non-hidden file below ``path`` (names do not count)."""
    hashes = [file_content_hash(file) for file in folder_files(path)]
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()


def content_hash(path: str | os.PathLike) -> str:
    """Content hash of a file, or of a folder's files (a DICOM series)."""
    return folder_content_hash(path) if Path(path).is_dir() else file_content_hash(path)


def files_content_hash(files: Sequence[str | os.PathLike]) -> str:
    """sha256 over the content hashes of ``files``, in their order (a .npy before its sidecar, slices sorted)."""
    return hashlib.sha256("\n".join(file_content_hash(file) for file in files).encode()).hexdigest()


def _stat_signature(files: Sequence[Path]) -> tuple[str, int]:
    """(signature, newest change in ns) of ``files``: path, size, mtime, ctime, inode and device of each.

    The signature changes whenever a file may have: replaced (new inode), rewritten (mtime, ctime), touched back
    (ctime), added or removed (the list). The newest change decides whether a hash of it may be trusted later.
    """
    parts, newest = [], 0
    for file in files:
        info = require_regular_file(file, "input")
        parts.append(
            f"{os.path.abspath(file)}\0{info.st_size}\0{info.st_mtime_ns}\0{info.st_ctime_ns}\0{info.st_ino}"
            f"\0{info.st_dev}"
        )
        newest = max(newest, info.st_mtime_ns, info.st_ctime_ns)
    return "\n".join(parts), newest


class ContentHasher:
    """Content hashes, remembered across processes and runs by the files' stat values (see the module docstring).

    The memo file is named by a *keyed* pseudonym (HMAC with the institution's pseudonym key) of the paths and stat
    values, so it reveals neither (a plain hash of a path holding a patient's name could be reversed by guessing).

    Args:
        folder: where memo files live (inside the cache root).
        pseudonymizer: the keyed hash; defaults to ``Pseudonymizer.from_environment()``.
    """

    def __init__(self, folder: str | os.PathLike, pseudonymizer=None) -> None:
        from .pseudonym import Pseudonymizer

        self.folder = Path(folder)
        self.pseudonymizer = pseudonymizer if pseudonymizer is not None else Pseudonymizer.from_environment()
        # signature -> (content hash, when hashing began in ns), for this process (never written out)
        self._known: dict[str, tuple[str, int]] = {}

    def __call__(self, path: str | os.PathLike) -> str:
        """The content hash of a file, or of a folder's files (names do not count: ``content_hash``)."""
        path = Path(path)
        if path.is_dir():
            files = folder_files(path)
            return self._remembered(f"folder\0{os.path.abspath(path)}", files, lambda: folder_content_hash(path))
        return self._remembered("file", [path], lambda: file_content_hash(path))

    def files(self, files: Sequence[str | os.PathLike]) -> str:
        """The content hash of ``files`` in order (``files_content_hash``), remembered."""
        paths = [Path(file) for file in files]
        return self._remembered("files", paths, lambda: files_content_hash(paths))

    def _remembered(self, kind: str, files: Sequence[Path], compute) -> str:
        signature, newest = _stat_signature(files)
        signature = f"{kind}\n{signature}"
        known = self._known.get(signature) or self._read_memo(signature)
        if known is not None and self._trusted(known[1], newest):
            return known[0]
        began = time.time_ns()
        digest = compute()
        self._known[signature] = (digest, began)
        self._write_memo(signature, digest, began)
        return digest

    @staticmethod
    def _trusted(hashed_at_ns: int, newest_change_ns: int) -> bool:
        """Whether a hash begun at ``hashed_at_ns`` certainly saw the files' last change (not "racily clean")."""
        return hashed_at_ns - newest_change_ns > RACY_SECONDS * 1e9

    def _memo_path(self, signature: str) -> Path:
        return self.folder / f"{self.pseudonymizer.pseudonym(signature, kind='study')}.sha256"

    def _read_memo(self, signature: str) -> tuple[str, int] | None:
        try:
            digest, _, began = self._memo_path(signature).read_text().strip().partition(" ")
            if len(digest) == 64 and began.isdigit():
                return digest, int(began)
        except OSError:
            pass
        return None

    def _write_memo(self, signature: str, digest: str, began: int) -> None:
        _atomic_write_bytes(self._memo_path(signature), f"{digest} {began}".encode())


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

    def _hasher(self) -> ContentHasher:
        if self.hasher is None:
            self.hasher = ContentHasher(self.root / "content-hashes")
        return self.hasher

    def content_hash(self, path: str | os.PathLike) -> str:
        """The (memoised) content hash of an input file or folder: its bytes only, whatever its name."""
        return self._hasher()(path)

    def input_hash(self, reference: str, files: Sequence[str | os.PathLike]) -> str:
        """The identity of one input, to pass to ``get`` / ``put``: the reference and the content of its files.

        Args:
            reference: everything that selects the input: the resolved path plus any selection within it
                (``"/data/study#series=2"``). It enters as a keyed pseudonym, never as text.
            files: every file the reader reads for it, in a fixed order (must be regular files).
        """
        hasher = self._hasher()
        reference_token = hasher.pseudonymizer.pseudonym(f"cache-reference\0{reference}", kind="study")
        return hashlib.sha256(f"{reference_token}\0{hasher.files(files)}".encode()).hexdigest()

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


def check_preprocessed_with(meta: Mapping[str, Any], fingerprint_hash: str) -> None:
    """Refuse a sample preprocessed (cached) with other settings than the ones whose hash is ``fingerprint_hash``.

    Raises:
        ModalityError: ``preprocess_mismatch``.
    """
    done = meta.get("preprocessed")
    if done is not None and done != fingerprint_hash:
        raise ModalityError(
            "preprocess_mismatch",
            f"the input was preprocessed with settings {done} but this model expects {fingerprint_hash}",
        )


class OwnsPreprocessCache:
    """Mixin of plugins whose preprocessing results are cached: ``self.cache``, the ``PreprocessCache`` of
    ``config.cache_dir`` for ``preprocessing.fingerprint()``, opened on first use (None without a cache folder).

    Opened lazily so that building a plugin (``medclip inspect``, ``--help``, loading a checkpoint) never touches the
    cache folder; the plugin needs ``name``, ``config.cache_dir`` and ``preprocessing``.
    """

    _cache: PreprocessCache | None = None

    @property
    def cache(self) -> PreprocessCache | None:
        """The preprocessing cache of ``config.cache_dir`` (opened on first use), or None without one."""
        if not self.config.cache_dir:  # type: ignore[attr-defined]
            return None
        if self._cache is None:
            self._cache = PreprocessCache(
                self.config.cache_dir,  # type: ignore[attr-defined]
                self.name,  # type: ignore[attr-defined]
                self.preprocessing.fingerprint(),  # type: ignore[attr-defined]
            )
        return self._cache
