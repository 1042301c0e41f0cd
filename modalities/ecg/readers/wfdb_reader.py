"""WFDB records (PhysioNet's format: a ``.hea`` text header and one or more binary ``.dat`` signal files).

The header is checked against the data before the samples are trusted: the ``.dat`` sizes must hold exactly the
samples the header declares, and the per-lead checksums in the header must match the samples read. A truncated
download or a header copied from another record otherwise gives a plausible-looking but wrong signal.

Header comment lines (``# ...``) often carry age, sex or even names in hospital exports; they are never read.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from medclip.data.safe_io import read_limited, require_regular_file
from medclip.registry import lazy_import
from medclip.types import ModalityError

from ..limits import check_declared_size, check_sampling_rate
from ..record import RawRecord
from . import Reader, ReadOptions

# Bytes per sample of each WFDB storage format (FLAC formats 508/516/524 are compressed: sizes are not checked).
BYTES_PER_SAMPLE = {
    "8": 1.0,
    "16": 2.0,
    "24": 3.0,
    "32": 4.0,
    "61": 2.0,
    "80": 1.0,
    "160": 2.0,
    "212": 1.5,
    "310": 4.0 / 3.0,
    "311": 4.0 / 3.0,
}


HEADER_MAX_BYTES = 1 << 20  # a header is a few hundred bytes; 1 MiB leaves room for long comment blocks
WFDB_DEFAULT_RATE = 250.0  # the WFDB specification's sampling frequency when the header omits it

# wfdb opens files through fsspec, which logs every opened path at DEBUG level; file names can hold patient names.
_PATH_LOGGERS = ("fsspec", "fsspec.local")


def _wfdb():
    return lazy_import("wfdb", "reading WFDB ECG records")


@contextmanager
def without_path_logging() -> Iterator[None]:
    """Silence the loggers that would write a record's path while wfdb reads it (restored afterwards)."""
    loggers = [logging.getLogger(name) for name in _PATH_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.INFO))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def record_stem(path: Path) -> Path:
    """``rec.hea``, ``rec.dat`` or ``rec`` -> ``rec`` (what wfdb calls the record name)."""
    return path.with_suffix("") if path.suffix.lower() in (".hea", ".dat") else path


def read_header_text(path: Path) -> str:
    """The header's text, read only from a regular file of at most ``HEADER_MAX_BYTES``.

    Raises:
        ModalityError: ``missing_file``, ``not_regular_file`` (a FIFO or device would block or never end) or
            ``too_large``.
    """
    data = read_limited(record_stem(path).with_suffix(".hea"), HEADER_MAX_BYTES, "WFDB header")
    return data.decode("latin-1")


def record_line(header_text: str) -> list[str]:
    """The fields of the header's record line (its first line that is neither blank nor a comment).

    Raises:
        ModalityError: ``bad_header`` when there is none or it lacks the record name and signal count.
    """
    for line in header_text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            fields = line.split()
            if len(fields) >= 2:
                return fields
            break
    raise ModalityError("bad_header", "WFDB header has no record line (record name and number of signals)")


def declared_sampling_rate(header_text: str) -> float:
    """The sampling frequency as the header's record line writes it: ``fs[/counter_frequency[(base_counter)]]``.

    Read from the text because wfdb's parser hides bad values: "nan", "inf" and "-250" do not match its pattern and
    become the 250 Hz default, and "1e12" is read as 1 Hz. A header without the field means 250 Hz, the WFDB
    specification's default.

    Raises:
        ModalityError: ``bad_header`` when the field is not a number (its range is checked by the caller).
    """
    fields = record_line(header_text)
    if len(fields) < 3:
        return WFDB_DEFAULT_RATE
    text = re.split(r"[/(]", fields[2], maxsplit=1)[0]
    try:
        return float(text)
    except ValueError:
        raise ModalityError("bad_header", "the WFDB header's sampling frequency is not a number") from None


def read_header(path: Path):
    """The parsed header; raises ``missing_file`` or ``bad_header`` without quoting the file."""
    stem = record_stem(path)
    require_regular_file(stem.with_suffix(".hea"), "WFDB header")
    try:
        with without_path_logging():
            return _wfdb().rdheader(str(stem))
    except Exception as error:
        raise ModalityError("bad_header", f"WFDB header could not be parsed ({type(error).__name__})") from None


def signal_file_names(header_text: str) -> list[str] | None:
    """The signal file names of a single-segment header, read from its text (None when it is not that simple).

    The first token of each signal line is its file name. Parsing just this is ~50x faster than ``wfdb.rdheader``,
    which matters because the cache asks for the files of every record once per process.
    """
    lines = [line.strip() for line in header_text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return None
    record = lines[0].split()
    if len(record) < 2 or "/" in record[0] or not record[1].isdigit():  # "name/segments": multi-segment record
        return None
    count = int(record[1])
    if len(lines) < 1 + count:
        return None
    return list(dict.fromkeys(line.split()[0] for line in lines[1 : 1 + count]))  # ordered, unique


def data_files(path: Path) -> list[Path]:
    """The header and every signal file it names (all of them define the record's content)."""
    stem = record_stem(path)
    names = signal_file_names(read_header_text(path))
    if names is None:
        names = list(dict.fromkeys(read_header(path).file_name or []))
    return [stem.with_suffix(".hea"), *(stem.parent / name for name in names)]


def _frame_layout(header) -> tuple[dict[str, float], dict[str, int]] | None:
    """Bytes per frame and byte offset of each signal file; None when a format is compressed (FLAC) or unknown."""
    frame_bytes: dict[str, float] = {}
    offsets: dict[str, int] = {}
    for index, (name, fmt) in enumerate(zip(header.file_name, header.fmt, strict=True)):
        if fmt not in BYTES_PER_SAMPLE:
            return None
        per_frame = (header.samps_per_frame[index] if header.samps_per_frame else 1) or 1
        frame_bytes[name] = frame_bytes.get(name, 0.0) + per_frame * BYTES_PER_SAMPLE[fmt]
        offsets[name] = (header.byte_offset[index] if header.byte_offset else None) or 0
    return frame_bytes, offsets


def signal_files(header, folder: Path) -> dict[str, int]:
    """Each signal file the header names -> its size, after checking it is a regular file.

    Raises:
        ModalityError: ``missing_file`` or ``not_regular_file`` (a FIFO or device named as signal file).
    """
    return {
        name: require_regular_file(folder / name, "WFDB signal file").st_size
        for name in dict.fromkeys(header.file_name)
    }


def declared_samples(header, sizes: dict[str, int]) -> int:
    """Samples per signal: the header's count, else what the signal files can hold (WFDB allows omitting it).

    Raises:
        ModalityError: ``bad_header`` for a compressed record without a sample count (its size cannot be bounded
            before decompressing it).
    """
    if header.sig_len is not None:
        return int(header.sig_len)
    layout = _frame_layout(header)
    if layout is None:
        raise ModalityError("bad_header", "a compressed WFDB record must declare its number of samples")
    frame_bytes, offsets = layout
    return max(int(max(0, sizes[name] - offsets[name]) // per_frame) for name, per_frame in frame_bytes.items())


def check_sizes(header, sizes: dict[str, int]) -> None:
    """Each ``.dat`` must hold the header's sample count (one frame of tolerance for formats packing samples).

    Raises:
        ModalityError: ``header_data_mismatch``.
    """
    layout = _frame_layout(header)
    if header.sig_len is None or layout is None:
        return
    frame_bytes, offsets = layout
    for name, per_frame in frame_bytes.items():
        expected = offsets[name] + math.ceil(per_frame * header.sig_len)
        actual = sizes[name]
        if actual < expected:
            raise ModalityError(
                "header_data_mismatch",
                f"WFDB signal file holds {actual} bytes but the header declares {header.sig_len} samples "
                f"({expected} bytes): the file is truncated or the header belongs to another record",
            )
        if actual > expected + math.ceil(per_frame):
            raise ModalityError(
                "header_data_mismatch",
                f"WFDB signal file holds {actual} bytes, more than the {expected} bytes of the {header.sig_len} "
                "samples the header declares",
            )


def check_checksums(record) -> None:
    """The header's 16-bit checksums (sum of each lead's samples) must match the samples read."""
    if not record.checksum or record.d_signal is None:
        return
    # The header stores the sum modulo 2^16; writers differ on printing it signed or unsigned, so compare modulo 2^16.
    found = record.d_signal.astype(np.int64).sum(axis=0) % 65536  # (C,)
    for channel, (declared, actual) in enumerate(zip(record.checksum, found.tolist(), strict=True)):
        if declared is not None and int(declared) % 65536 != actual:
            raise ModalityError(
                "header_data_mismatch",
                f"WFDB checksum of channel {channel} disagrees with its samples: the data does not match the header",
            )


def read_wfdb(path: Path, options: ReadOptions) -> RawRecord:
    """A WFDB record in physical units; invalid-sample markers become NaN (rejected later as ``non_finite``).

    Before any sample is read: the header is a regular file of bounded size, its sampling frequency (from its text)
    is plausible, the declared samples fit the memory budget as read and as resampled, every signal file is a
    regular file of the declared size.
    """
    rate = check_sampling_rate(declared_sampling_rate(read_header_text(path)), options.limits)
    header = read_header(path)
    if not math.isclose(float(header.fs), rate, rel_tol=1e-9):
        raise ModalityError("bad_header", "the WFDB header's sampling frequency field is malformed")
    if getattr(header, "seg_name", None) is not None or getattr(header, "file_name", None) is None:
        raise ModalityError(
            "unsupported_format",
            "multi-segment (or signal-less) WFDB records are not supported; convert to one segment",
        )
    stem = record_stem(path)
    sizes = signal_files(header, stem.parent)
    check_declared_size(int(header.n_sig), declared_samples(header, sizes), rate, options.limits)
    check_sizes(header, sizes)
    try:
        with without_path_logging():
            record = _wfdb().rdrecord(str(stem), physical=False, return_res=64)
    except FileNotFoundError:
        raise ModalityError("missing_file", "a WFDB signal file named in the header does not exist") from None
    except Exception as error:
        raise ModalityError("unreadable", f"WFDB record could not be read ({type(error).__name__})") from None
    if record.d_signal is None or record.d_signal.ndim != 2 or record.d_signal.shape[1] != record.n_sig:
        raise ModalityError("header_data_mismatch", "WFDB samples do not have the header's number of signals")
    check_checksums(record)
    physical = record.dac(expanded=False, return_res=64)  # (T, C) float64, NaN where a sample is marked invalid
    units = [unit or "mV" for unit in (record.units or ["mV"] * record.n_sig)]  # WFDB's documented default is mV
    return RawRecord(
        signal=np.ascontiguousarray(physical.T),  # (C, T)
        channel_names=[str(name) for name in record.sig_name],
        units=units,
        sampling_rate=rate,
        source_format="wfdb",
    )


WFDB_READER = Reader(name="wfdb", read=read_wfdb, source_files=data_files)
READERS_BY_SUFFIX = {".hea": WFDB_READER, ".dat": WFDB_READER}
