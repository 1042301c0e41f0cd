"""Opening untrusted inputs safely: regular files only, bounded reads, decoded sizes checked before decoding.

A manifest cell can name anything on disk. A FIFO blocks ``open`` forever, ``/dev/zero`` never ends, and a 40 KB
compressed file can declare an image of 50 000 x 50 000 pixels or a volume that resampling turns into gigabytes. So
every reader asks this module first:

- ``require_regular_file``: a regular file (after following links), never a FIFO, socket or device; checked with
  ``os.stat``, which does not open the file and so cannot block;
- ``read_limited``: read at most ``max_bytes`` of a regular file (larger is ``too_large``);
- ``check_decoded_size``: the size an input will have once decoded (from its header: shape x item size) against the
  modality's budget (``ModalityConfig.max_decoded_mb``), before any decoding or resampling allocates it.

Failures are ``ModalityError`` with a reason code, and messages never quote the file's name or content (a file name
can hold a patient's name).
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..types import ModalityError

NOT_REGULAR_FILE = "not_regular_file"  # a FIFO, socket, device or folder where a file is expected
TOO_LARGE = "too_large"  # the file, or what it decodes to, exceeds the budget
MISSING_FILE = "missing_file"
MEGABYTE = 1024 * 1024
READ_CHUNK = 1 << 20


def require_regular_file(path: str | os.PathLike, what: str = "input") -> os.stat_result:
    """The ``os.stat`` of ``path`` if it is a regular file; otherwise ``missing_file`` or ``not_regular_file``.

    ``os.stat`` follows symbolic links (a link to a regular file is accepted) and never opens the file, so a FIFO
    is refused without blocking.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ModalityError(MISSING_FILE, f"the {what} file does not exist") from None
    except OSError as error:
        raise ModalityError(MISSING_FILE, f"the {what} file cannot be examined ({type(error).__name__})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = _kind(info.st_mode)
        raise ModalityError(NOT_REGULAR_FILE, f"the {what} is a {kind}, not a regular file; only files are read")
    return info


def read_limited(path: str | os.PathLike, max_bytes: int, what: str = "input") -> bytes:
    """The bytes of a regular file no larger than ``max_bytes`` (``too_large`` otherwise, before reading)."""
    info = require_regular_file(path, what)
    if info.st_size > max_bytes:
        raise ModalityError(TOO_LARGE, f"the {what} file has {info.st_size} bytes, over the limit of {max_bytes}")
    with open(path, "rb") as handle:  # read up to what the file holds: read(max_bytes + 1) allocated max_bytes at once
        data = handle.read(info.st_size + 1)
        while len(data) <= max_bytes and (more := handle.read(min(READ_CHUNK, max_bytes + 1 - len(data)))):
            data += more  # the file grew between stat and read
    if len(data) > max_bytes:  # the file grew between stat and read
        raise ModalityError(TOO_LARGE, f"the {what} file exceeds the limit of {max_bytes} bytes")
    return data


def regular_files(paths: Iterable[str | os.PathLike], what: str = "input") -> Iterator[Path]:
    """The regular files among ``paths``; any other kind of entry (FIFO, device, socket) is an error, not skipped.

    Folders are passed over silently (a DICOM series folder may hold sub-folders that are not part of it).
    """
    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            raise ModalityError(MISSING_FILE, f"an entry of the {what} folder cannot be examined") from None
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            raise ModalityError(
                NOT_REGULAR_FILE, f"the {what} folder holds a {_kind(mode)}, not a regular file; only files are read"
            )
        yield Path(path)


def decoded_bytes(shape: Iterable[int], itemsize: int) -> int:
    """Bytes of an array of ``shape`` and ``itemsize`` (Python integers: no overflow for absurd header values)."""
    dims = [int(dim) for dim in shape]
    if any(dim < 0 for dim in dims):
        raise ModalityError("bad_header", f"the header declares a negative dimension in a shape of {len(dims)} axes")
    return math.prod(dims) * int(itemsize)


def check_decoded_size(shape: Iterable[int], itemsize: int, budget_mb: float, what: str = "input") -> int:
    """Refuse (``too_large``) an input whose decoded array would exceed ``budget_mb`` megabytes; returns its bytes.

    Call it with the shape read from the header (or the shape a resampling will produce) before allocating.
    """
    size = decoded_bytes(shape, itemsize)
    if size > budget_mb * MEGABYTE:
        raise ModalityError(
            TOO_LARGE,
            f"the {what} would take {size / MEGABYTE:.0f} MB once decoded, over the budget of {budget_mb:g} MB "
            "(raise max_decoded_mb in the modality's config if this input is genuine)",
        )
    return size


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISDIR(mode):
        return "folder"
    return "special file"
