"""Opening DICOM files safely: which files a series folder holds, and parsing one file with bounded memory.

- ``list_dicom_files``: every regular, non-hidden file below a folder, walked without recursion (a folder nested
  thousands deep must not exhaust Python's stack), never following linked sub-folders; a FIFO, socket or device among
  them is an error (``not_regular_file``): opening it would block or never end.
- ``read_dicom_file``: a regular file no larger than the budget, parsed with large values (pixel data, big
  sequences) left on disk until used, so parsing a series holds its headers, not its pixels. Parsing reads through
  ``CountedReader``, which refuses a file needing more than ``MAX_READS`` reads (``header_too_complex``): pydicom
  keeps about 300 bytes of Python objects per element, so 10 MB of 12-byte elements would take 250 MB and seconds of
  parsing, and real headers have hundreds of elements. A Deflated Explicit VR Little Endian dataset is inflated once,
  counting bytes, before pydicom inflates it whole: a few MB can inflate to gigabytes. A file that ends inside an
  element (its declared length runs past the end of the file, or pydicom kept a shortened value) is
  ``truncated_file``.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import zlib
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import DeflatedExplicitVRLittleEndian

from medclip.data.safe_io import TOO_LARGE, regular_files, require_regular_file
from medclip.types import ModalityError

SKIPPED_FILE_NAMES = frozenset({"DICOMDIR"})  # media directory files describe a disc; they are not images
DEFER_BYTES = 1024  # values larger than this stay on disk until read (pixel data, large sequences)
UNDEFINED_LENGTH = 0xFFFFFFFF
INFLATE_CHUNK = 1 << 22  # bytes read (and inflated at most) per step when counting a deflated dataset
PREAMBLE_AND_PREFIX = 132  # 128-byte preamble + "DICM"
GROUP_LENGTH_ELEMENT = 12  # (0002,0000) UL: tag, VR, 2-byte length, 4-byte value
MAX_READS = 100_000  # reads while parsing one file: 1-3 per element; a CT header has a few hundred elements


class CountedReader(io.BufferedReader):
    """A file opened for pydicom that refuses to be read more than ``MAX_READS`` times (``header_too_complex``).

    A subclass of ``io.BufferedReader``, so pydicom treats it as a file it may reopen by name for deferred values.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(io.FileIO(os.fspath(path), "rb"))  # a str name: pydicom reopens it by name
        self.reads_left = MAX_READS

    def read(self, size: int | None = -1) -> bytes:
        self.reads_left -= 1
        if self.reads_left < 0:
            raise ModalityError("header_too_complex", f"a DICOM file holds more than {MAX_READS} elements to parse")
        return super().read(size)


def list_dicom_files(folder: Path) -> list[Path]:
    """Every regular, non-hidden file under ``folder`` (recursively, sorted), except media directory files.

    Raises:
        ModalityError: ``not_regular_file`` for a FIFO, socket or device entry; ``missing_file`` for an entry that
            cannot be examined (a link loop, a dangling link).
    """
    files: list[Path] = []
    pending = [Path(folder)]
    while pending:
        directory = pending.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError:
            raise ModalityError("missing_file", "a folder of the DICOM series cannot be listed") from None
        names = []
        for entry in entries:
            if entry.name.startswith(".") or entry.name.upper() in SKIPPED_FILE_NAMES:
                continue
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            elif entry.is_symlink() and _is_folder(entry.path):
                continue  # a linked folder is not walked into (it could lead back up)
            else:
                names.append(entry.path)
        files.extend(regular_files(names, what="DICOM series"))
    return sorted(files)


def _is_folder(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False


def read_dicom_file(path: Path, max_bytes: int) -> Dataset:
    """Parse one DICOM file with its large values deferred (see the module docstring).

    Raises:
        ModalityError: ``missing_file`` / ``not_regular_file``, ``too_large`` (the file, or its inflated dataset,
            exceeds ``max_bytes``), ``not_dicom``, ``truncated_file``, ``header_too_complex`` (more elements or deeper
            nesting than any real header), ``bad_header`` (a deflated file without its meta group length),
            ``unreadable`` (the file cannot be read).
    """
    size = require_regular_file(path, "DICOM").st_size
    if size > max_bytes:
        raise ModalityError(TOO_LARGE, f"a DICOM file has {size} bytes, over the budget of {max_bytes}")
    try:
        deflated = _deflated_start(path)
        if deflated is not None:
            _check_inflated_size(path, deflated, max_bytes)
        # a deflated dataset is parsed from memory: its deferred values could not be re-read from the file
        with CountedReader(path) as handle:
            dataset = pydicom.dcmread(handle, defer_size=None if deflated is not None else DEFER_BYTES)
    except ModalityError:
        raise
    except InvalidDicomError:
        raise ModalityError("not_dicom", "a file is not DICOM (no DICM prefix or file meta information)") from None
    except (EOFError, ValueError, struct.error, zlib.error, KeyError, TypeError, IndexError):
        raise ModalityError("not_dicom", "a file could not be parsed as DICOM") from None
    except RecursionError:
        raise ModalityError("header_too_complex", "a DICOM file nests sequences too deeply to parse") from None
    except OSError as error:
        raise ModalityError("unreadable", f"a DICOM file could not be read ({type(error).__name__})") from None
    if _ends_inside_an_element(dataset, size):
        raise ModalityError("truncated_file", "a DICOM file ends inside an element")
    return dataset


def _deflated_start(path: Path) -> int | None:
    """Where the deflated dataset starts, for a Deflated Explicit VR Little Endian file; None for other syntaxes."""
    meta = pydicom.filereader.read_file_meta_info(path)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return None
    group_length = meta.get("FileMetaInformationGroupLength")
    if group_length is None:
        raise ModalityError("bad_header", "a deflated DICOM file has no file meta group length")
    return PREAMBLE_AND_PREFIX + GROUP_LENGTH_ELEMENT + int(group_length)


def _check_inflated_size(path: Path, start: int, max_bytes: int) -> None:
    """Inflate the dataset chunk by chunk, keeping nothing, and refuse it once it exceeds ``max_bytes``."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    with open(path, "rb") as handle:
        handle.seek(start)
        while not inflater.eof and (chunk := handle.read(INFLATE_CHUNK)):
            while chunk:
                total += len(inflater.decompress(chunk, INFLATE_CHUNK))
                if total > max_bytes:
                    raise ModalityError(
                        TOO_LARGE, f"a deflated DICOM file inflates to over {max_bytes} bytes, the budget"
                    )
                chunk = inflater.unconsumed_tail
    if not inflater.eof:
        raise ModalityError("truncated_file", "a deflated DICOM file ends inside its compressed dataset")


def _ends_inside_an_element(dataset: Dataset, file_size: int) -> bool:
    """Whether the file ended inside an element: pydicom keeps a shortened value, or defers one past the end.

    Reading stops at the end of the file, so only the last element can be short; a deferred value is only a position
    and a length until read, which must both lie inside the file.
    """
    tags = list(dataset.keys())
    if not tags:
        return False
    raw = dataset.get_item(tags[-1], keep_deferred=True)
    value, length = getattr(raw, "value", None), getattr(raw, "length", 0)
    if length in (0, UNDEFINED_LENGTH) or not hasattr(raw, "value_tell"):
        return False
    if value is None:  # deferred: still on disk
        return raw.value_tell + length > file_size
    return isinstance(value, bytes) and len(value) < length
