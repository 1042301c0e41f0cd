"""A disk cache of preprocessed ECG records as memory-mapped int16 / float16 arrays (never pickle).

int16 (the default) stores each lead scaled to its own peak: the rounding error is at most peak / 65534 (0.03 uV for a
2 mV lead), and decoding is a cast and a multiply. float16 keeps ~0.05 % relative error and decodes ~20x slower.

Preprocessing (reading, unit conversion, notch, resampling, band-pass) costs milliseconds per record and gives the
same result every epoch, so its output is stored once and memory-mapped afterwards.

Keys. An entry's key is ``sha256(content hash of the record's files + preprocessing fingerprint)``: it changes when a
file's bytes or a preprocessing setting changes, and it holds nothing that identifies a patient (no file name, path
or header field), so neither do the cache's file names. To avoid re-reading every source file on each access, the
content hash of a record is remembered *in this process only* against its files' (size, mtime, inode) signature;
that memo lives in memory and is never written anywhere.

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
import struct
import uuid
from pathlib import Path
from typing import Any

import numpy as np

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

# str(primary path) -> (files, their stat signature, content hash). In-memory only; never persisted.
_CONTENT_HASHES: dict[str, tuple[tuple[Path, ...], tuple[tuple[int, int, int], ...], str]] = {}


def _signature(files: tuple[Path, ...]) -> tuple[tuple[int, int, int], ...]:
    stats = [os.stat(file) for file in files]
    return tuple((stat.st_size, stat.st_mtime_ns, stat.st_ino) for stat in stats)


def hash_files(files: tuple[Path, ...]) -> str:
    """sha256 over every file's length and bytes, in order."""
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as handle:
            data = handle.read()
        digest.update(struct.pack("<Q", len(data)))
        digest.update(data)
    return digest.hexdigest()


def content_hash(path: Path, reader: Reader) -> str:
    """The content hash of the record at ``path`` (all its files), memoised on their stat signature."""
    remembered = _CONTENT_HASHES.get(str(path))
    if remembered is not None:
        files, signature, digest = remembered
        try:
            if _signature(files) == signature:
                return digest
        except OSError:
            pass  # a file vanished: recompute below, which raises the reader's error
    files = tuple(reader.source_files(path))
    signature = _signature(files)
    digest = hash_files(files)
    _CONTENT_HASHES[str(path)] = (files, signature, digest)
    return digest


def forget_content_hashes() -> None:
    """Empty this process's memo (as a fresh process would start), e.g. to time a cold start."""
    _CONTENT_HASHES.clear()


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

    def key(self, record_hash: str) -> str:
        return hashlib.sha256(f"{record_hash}:{self.fingerprint}:{self.dtype}".encode()).hexdigest()

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
