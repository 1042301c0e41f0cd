"""ECG file readers, one per format, registered by file suffix.

Each reader turns a file into a ``RawRecord`` (physical units, file channel order) and lists the files whose bytes
define the record (for the cache's content hash). Readers read signal-describing fields only: sampling rate, channel
names, units, sample counts. Patient fields (WFDB header comments, DICOM patient/study tags, EDF patient header) are
never read into anything medclip keeps, and errors never quote a path or a header value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medclip.registry import Registry
from medclip.types import ModalityError

from ..limits import SignalLimits
from ..record import RawRecord


@dataclass(frozen=True)
class ReadOptions:
    """What the manifest cell (``file.csv#fs=500&units=uV``) says about a record that the file itself may not, and
    the bounds the plugin's settings put on what a file may declare.

    Attributes:
        sampling_rate: samples per second, for formats without one (CSV, NumPy); checked against a sidecar's.
        units: the physical unit of every channel, for formats without one.
        limits: sampling-rate range and memory budget, checked from the header before the samples are read.
        lead_aliases: the user's extra channel name -> standard lead mapping (``ECGConfig.lead_aliases``), for readers
            that pick ECG channels by name (EDF).
    """

    sampling_rate: float | None = None
    units: str | None = None
    limits: SignalLimits = field(default_factory=SignalLimits)
    lead_aliases: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Reader:
    """One file format.

    Attributes:
        name: short format name, recorded in metadata.
        read: (path, options) -> ``RawRecord``; raises ``ModalityError`` with a reason code.
        source_files: path -> every file whose bytes make up the record (the cache hashes them all).
    """

    name: str
    read: Callable[[Path, ReadOptions], RawRecord]
    source_files: Callable[[Path], list[Path]]


def single_file(path: Path) -> list[Path]:
    """Formats whose record is one file."""
    return [path]


ECG_READERS: Registry[Reader] = Registry("ECG file format")


def reader_for(path: Path) -> Reader:
    """The reader registered for ``path``'s suffix.

    Raises:
        ModalityError: ``unsupported_format``.
    """
    suffix = path.suffix.lower()
    if suffix not in ECG_READERS:  # the suffix is part of the file name: never quoted
        raise ModalityError(
            "unsupported_format", f"the ECG file's type is not supported; use one of {', '.join(ECG_READERS.names())}"
        )
    return ECG_READERS.get(suffix)


def _register_builtin_readers() -> None:
    from . import dicom_reader, edf_reader, table_reader, wfdb_reader

    for module in (wfdb_reader, dicom_reader, table_reader, edf_reader):
        for suffix, reader in module.READERS_BY_SUFFIX.items():
            ECG_READERS.register(suffix, reader)


_register_builtin_readers()

__all__ = ["ECG_READERS", "ReadOptions", "Reader", "reader_for", "single_file"]
