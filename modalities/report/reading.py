"""From a manifest cell or reference to raw report text: inline text, or a .txt/.md file.

Error messages name the reason only, never the text or the path: report files are often named after accession
numbers or patient names, and report text is protected health information.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medclip.data.safe_io import read_limited
from medclip.types import ModalityError

REPORT_FILE_SUFFIXES = (".txt", ".md")
DEFAULT_MAX_CHARS = 200_000  # ReportConfig.max_chars's default
MAX_UTF8_BYTES_PER_CHAR = 4
_MAX_PATH_CHARS = 4096  # longer cells are report text, never a path


def _path_candidate(value: str) -> bool:
    """A single line ending in a report-file suffix: it might be a path."""
    return "\n" not in value and len(value) <= _MAX_PATH_CHARS and value.strip().lower().endswith(REPORT_FILE_SUFFIXES)


def _names_file(value: str, root: Path | None) -> Path | None:
    """The file a cell names, or None when the cell is report text.

    A cell is a path when it names an existing report file (relative to ``root`` or absolute), or when it is one
    word ending in ``.txt``/``.md`` (a report is never a single file-name-like word): that second rule turns a
    missing file into a ``missing_file`` error instead of silently using the file name as the report.
    """
    if not _path_candidate(value):
        return None
    path = Path(value.strip()).expanduser()
    if not path.is_absolute() and root is not None:
        path = root / path
    if path.is_file() or len(value.split()) == 1:
        return path
    return None


def resolve_cell(value: Any, root: str | os.PathLike) -> Any:
    """A manifest cell -> a ``Path`` when it names a report file, else the cell itself (inline text)."""
    if not isinstance(value, str):
        return value  # load() rejects it with a reason code
    path = _names_file(value, Path(root))
    return path if path is not None else value


def _read_file(path: Path, max_chars: int) -> str:
    """The text of a regular report file of at most ``max_chars`` characters.

    Raises:
        ModalityError: ``missing_file``, ``not_regular_file`` (a FIFO, device or folder: reading it would block,
            never end or fail), ``too_large``, ``not_utf8``, ``binary_file`` or ``unreadable``.
    """
    try:
        data = read_limited(path, max_chars * MAX_UTF8_BYTES_PER_CHAR, "report")
    except OSError as error:
        raise ModalityError("unreadable", f"report file could not be read ({type(error).__name__})") from None
    try:
        text = data.decode("utf-8-sig")  # tolerate the byte-order mark some Windows editors write
    except UnicodeDecodeError as error:
        raise ModalityError("not_utf8", f"report file is not UTF-8 text (bad byte at offset {error.start})") from None
    if "\x00" in text:
        raise ModalityError("binary_file", "report file holds binary data (NUL bytes), not text")
    return _limited(text, max_chars)


def _limited(text: str, max_chars: int) -> str:
    """``text`` if it has at most ``max_chars`` characters (``too_large`` otherwise: de-identification, sentence
    splitting and tokenisation of a report run on all of it)."""
    if len(text) > max_chars:
        raise ModalityError(
            "too_large", f"report has {len(text)} characters, over the limit of {max_chars} (report.max_chars)"
        )
    return text


def read_report(ref: str | os.PathLike | Mapping[str, Any], max_chars: int = DEFAULT_MAX_CHARS) -> tuple[str, str]:
    """Raw report text and its source ("inline" or "file").

    Accepts inline text, a path (``str`` naming a report file, or ``os.PathLike``), or a mapping with exactly one
    of ``{"text": ...}`` or ``{"path": ...}``. Files are read only when they are regular files; files and inline
    text are limited to ``max_chars`` characters.

    Raises:
        ModalityError: "missing_file", "not_regular_file", "too_large", "not_utf8", "binary_file", "unreadable" or
            "invalid_reference".
    """
    if isinstance(ref, Mapping):
        keys = {"text", "path"} & set(ref)
        if len(keys) != 1:
            raise ModalityError("invalid_reference", "a report mapping needs exactly one of the keys 'text' or 'path'")
        if "path" in keys:
            return read_report(Path(os.fspath(ref["path"])), max_chars)
        if not isinstance(ref["text"], str):
            kind = type(ref["text"]).__name__
            raise ModalityError("invalid_reference", f"report 'text' must be a string, got {kind}")
        return _limited(ref["text"], max_chars), "inline"
    if isinstance(ref, os.PathLike):
        return _read_file(Path(ref), max_chars), "file"
    if isinstance(ref, str):
        path = _names_file(ref, None)
        return (_read_file(path, max_chars), "file") if path is not None else (_limited(ref, max_chars), "inline")
    raise ModalityError(
        "invalid_reference", f"expected report text, a file path or a mapping, got {type(ref).__name__}"
    )
