"""A disk cache of preprocessed ECG records as memory-mapped int16 / float16 arrays (never pickle).

int16 (the default) stores each lead scaled to its own peak: the rounding error is at most peak / 65534 (0.03 uV for a
2 mV lead), and decoding is a cast and a multiply. float16 keeps ~0.05 % relative error and decodes ~20x slower.

Preprocessing (reading, unit conversion, notch, resampling, band-pass) costs milliseconds per record and gives the
same result every epoch, so its output is stored once and memory-mapped afterwards.

Keys. An entry's key is ``sha256(content hash of the record's files + preprocessing fingerprint)``: it changes when a
file's bytes or a preprocessing setting changes, and it holds nothing that identifies a patient (no file name, path
or header field), so neither do the cache's file names. To avoid re-reading every source file on each access, the
content hash of a record is remembered *in this process only* against its files' identities (size, mtime, ctime,
inode, device); a file changed within ``RACY_NANOSECONDS`` of its hashing is hashed again, so a record replaced under
the same name is never served from the old record's entry. The memo lives in memory and is never written anywhere.
Only regular files of bounded size are hashed (a FIFO or ``/dev/zero`` named as a record would block or never end).

File layout (``<cache_dir>/<key[:2]>/<key>.ecg``): the magic ``MEDCLIPECG\\x00\\x01``, a little-endian uint32 length,
a UTF-8 JSON header (dtype, shape, per-lead int16 scales, allow-listed metadata, fingerprint), zero padding to a
64-byte boundary, then the (L, T) samples in C order. Entries are written to a temporary file and renamed into place,
so concurrent DataLoader workers never see half an entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import stat
import struct
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medclip.data.safe_io import TOO_LARGE, require_regular_file
from medclip.types import ModalityError

from .config import ECGConfig
from .preprocess import META_KEYS, fingerprint_digest
from .readers import Reader

logger = logging.getLogger("medclip.ecg")

MAGIC = b"MEDCLIPECG\x00\x01"
ALIGNMENT = 64
READ_WHOLE_BELOW = 1 << 20  # entries up to 1 MiB are read in one call; larger ones are memory-mapped
INT16_MAX = 32767
# MAP_POPULATE (Linux) faults the whole small entry in with the mmap call instead of one page at a time on first read.
MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)

# A file changed less than this long before it was hashed may change again within the file system's timestamp
# granularity (a coarse clock tick, or seconds on some network file systems) without its stat signature changing:
# its memo is not trusted, and it is hashed again (as git does with "racily clean" index entries).
RACY_NANOSECONDS = 2_000_000_000
HASH_CHUNK_BYTES = 1 << 20

# (size, mtime, ctime, inode, device) of a file; None when it does not exist (an optional sidecar).
Identity = tuple[int, int, int, int, int] | None


@dataclass(frozen=True)
class _Memo:
    files: tuple[Path, ...]
    identities: tuple[Identity, ...]
    digest: str
    hashed_at_ns: int  # wall-clock time just before the files were examined


# str(primary path) -> what its files were when hashed. In-memory only; never persisted.
_CONTENT_HASHES: dict[str, _Memo] = {}


def _identity(file: Path) -> Identity:
    """A file's identity (ctime too: it changes on every write and cannot be set back, unlike mtime).

    Raises:
        ModalityError: ``not_regular_file`` for a FIFO, device or folder (it would block or never end when read).
    """
    try:
        info = os.stat(file)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        require_regular_file(file, "ECG record")  # raises with the kind of file in the message
    return (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev)


def hash_files(files: tuple[Path, ...], max_bytes: int) -> str:
    """sha256 over every file's length and bytes, in order (an absent file counts as a marker, so that adding an
    optional sidecar changes the hash), read in chunks from regular files of at most ``max_bytes``.

    Raises:
        ModalityError: ``not_regular_file``, ``too_large``, ``unreadable`` (a file changed while it was read).
    """
    digest = hashlib.sha256()
    for file in files:
        identity = _identity(file)
        if identity is None:
            digest.update(b"\xffabsent")
            continue
        size = identity[0]
        if size > max_bytes:
            raise ModalityError(TOO_LARGE, f"an ECG record file has {size} bytes, over the limit of {max_bytes}")
        digest.update(struct.pack("<Q", size))
        read = 0
        with open(file, "rb") as handle:
            while chunk := handle.read(min(HASH_CHUNK_BYTES, size + 1 - read)):
                read += len(chunk)
                if read > size:
                    break
                digest.update(chunk)
        if read != size:
            raise ModalityError("unreadable", "an ECG record file changed while it was read")
    return digest.hexdigest()


def content_hash(path: Path, reader: Reader, max_bytes: int) -> str:
    """The content hash of the record at ``path`` (all its files), memoised on their identities.

    The memo is used only when every file still has the identity it had when hashed and was last changed well before
    that (``RACY_NANOSECONDS``): a record replaced under the same name, rewritten in place with the same size, or with
    its modification time set back is hashed again, so the cache never serves the old record's entry.
    """
    remembered = _CONTENT_HASHES.get(str(path))
    if remembered is not None:
        try:
            if _trusted(remembered):
                return remembered.digest
        except (OSError, ModalityError):
            pass  # the file vanished or changed kind: recompute below, which raises the right error
    hashed_at = time.time_ns()
    files = tuple(reader.source_files(path))
    identities = tuple(_identity(file) for file in files)
    digest = hash_files(files, max_bytes)
    if tuple(_identity(file) for file in files) == identities:  # unchanged while hashed
        _CONTENT_HASHES[str(path)] = _Memo(files, identities, digest, hashed_at)
    return digest


def _trusted(memo: _Memo) -> bool:
    identities = tuple(_identity(file) for file in memo.files)
    if identities != memo.identities:
        return False
    changed = max((identity[2] for identity in identities if identity is not None), default=0)
    return memo.hashed_at_ns - changed > RACY_NANOSECONDS


def forget_content_hashes() -> None:
    """Empty this process's memo (as a fresh process would start), e.g. to time a cold start."""
    _CONTENT_HASHES.clear()


def validation_digest(cfg: ECGConfig) -> str:
    """The acceptance limits (sampling-rate range, amplitude limit): an entry made under looser limits is not served
    under stricter ones. Not part of the preprocessing fingerprint: they never change an accepted record's values."""
    limits = [list(cfg.source_rate_range_hz), cfg.max_amplitude_mv]
    return hashlib.sha256(json.dumps(limits).encode()).hexdigest()[:16]


class ECGCache:
    """Preprocessed records of one preprocessing setting, under ``directory``.

    Args:
        directory: the cache folder (created on first write).
        cfg: the plugin's settings; their fingerprint is part of every key, so one folder can hold several.
    """

    def __init__(self, directory: str | os.PathLike, cfg: ECGConfig) -> None:
        self.directory = Path(directory)
        self._root = os.fspath(self.directory)
        self.dtype = cfg.cache_dtype
        self.fingerprint = fingerprint_digest(cfg)
        self.validation = validation_digest(cfg)

    def key(self, record_hash: str) -> str:
        return hashlib.sha256(f"{record_hash}:{self.fingerprint}:{self.dtype}:{self.validation}".encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.ecg"

    def get(self, key: str) -> tuple[np.ndarray, dict[str, Any]] | None:
        """((L, T) float32 millivolts, metadata) of a cached record, or None when absent (or unreadable).

        Entries are laid out to be memory-mapped (aligned samples after a JSON header). A typical 10-s 12-lead entry
        is ~120 KiB: one ``read`` of it is about twice as fast as mapping it (mapping costs page-table set-up and
        faults per entry), so entries below ``READ_WHOLE_BELOW`` are read, larger ones (long Holter records) mapped.
        """
        try:
            handle = open(os.path.join(self._root, key[:2], key + ".ecg"), "rb", buffering=0)
        except FileNotFoundError:
            return None
        with handle:
            try:
                if os.fstat(handle.fileno()).st_size <= READ_WHOLE_BELOW:
                    buffer = handle.readall()
                else:
                    buffer = mmap.mmap(handle.fileno(), 0, flags=MAP_FLAGS, prot=mmap.PROT_READ)
                head, data_offset = self._parse_head(buffer)
                shape = tuple(head["shape"])
                count = shape[0] * shape[1]
                if len(buffer) != data_offset + count * np.dtype(head["dtype"]).itemsize:
                    raise ValueError("entry size disagrees with its header")
                stored = np.frombuffer(buffer, dtype=head["dtype"], count=count, offset=data_offset).reshape(shape)
            except (ValueError, KeyError, TypeError, OSError) as error:
                logger.warning("ECG cache entry %s is unreadable (%s); recomputing it", key, type(error).__name__)
                return None
        signal = stored.astype(np.float32)  # (L, T) copied out of the buffer
        if head["dtype"] == "int16":
            signal *= np.asarray(head["scales"], dtype=np.float32)[:, None]
        return signal, head["meta"]

    @staticmethod
    def _parse_head(buffer) -> tuple[dict[str, Any], int]:
        """The JSON header and the byte offset of the samples, from the entry's bytes (read or mapped)."""
        if bytes(buffer[: len(MAGIC)]) != MAGIC:
            raise ValueError("not an ECG cache entry")
        (length,) = struct.unpack_from("<I", buffer, len(MAGIC))
        start = len(MAGIC) + 4
        if start + length > len(buffer):
            raise ValueError("entry header is truncated")
        head = json.loads(bytes(buffer[start : start + length]).decode("utf-8"))
        return head, -(-(start + length) // ALIGNMENT) * ALIGNMENT

    def put(self, key: str, signal: np.ndarray, meta: dict[str, Any]) -> Path:
        """Store (L, T) millivolts and allow-listed metadata atomically; returns the entry's path."""
        extra = sorted(set(meta) - set(META_KEYS))
        if extra:  # the allow-list is enforced here too: nothing else may reach the disk
            raise ValueError(f"ECG cache metadata may only hold {META_KEYS}; got extra keys {extra}")
        scales = None
        if self.dtype == "int16":
            peak = np.abs(signal).max(axis=1)  # (L,)
            scales = np.where(peak > 0, peak / INT16_MAX, 1.0).astype(np.float32)  # (L,) millivolts per step
            steps = np.round(signal / scales[:, None])  # (L, T) within +-32767 up to float rounding
            stored = np.clip(steps, -INT16_MAX, INT16_MAX).astype(np.int16)
        else:
            stored = signal.astype(np.float16)  # (L, T)
        head = {
            "dtype": self.dtype,
            "shape": list(stored.shape),
            "scales": None if scales is None else [float(scale) for scale in scales],
            "fingerprint": self.fingerprint,
            "meta": meta,
        }
        encoded = json.dumps(head, sort_keys=True).encode("utf-8")
        start = len(MAGIC) + 4 + len(encoded)
        padding = -(-start // ALIGNMENT) * ALIGNMENT - start
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.parent / f".{key}.{uuid.uuid4().hex}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(MAGIC + struct.pack("<I", len(encoded)) + encoded + b"\x00" * padding)
            handle.write(np.ascontiguousarray(stored).tobytes())
        os.replace(temporary, path)
        return path
