"""From a manifest cell or reference to raw report text: inline text, or a .txt/.md file.

Error messages name the reason only, never the text or the path: report files are often named after accession
numbers or patient names, and report text is protected health information.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medclip.types import ModalityError

REPORT_FILE_SUFFIXES = (".txt", ".md")
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


def _read_file(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModalityError("missing_file", "report file does not exist") from None
    except OSError as error:
        raise ModalityError("unreadable", f"report file could not be read ({type(error).__name__})") from None
    try:
        text = data.decode("utf-8-sig")  # tolerate the byte-order mark some Windows editors write
    except UnicodeDecodeError as error:
        raise ModalityError("unreadable", f"report file is not UTF-8 text (bad byte at offset {error.start})") from None
    if "\x00" in text:
        raise ModalityError("unreadable", "report file holds binary data (NUL bytes), not text")
    return text


def read_report(ref: str | os.PathLike | Mapping[str, Any]) -> tuple[str, str]:
    """Raw report text and its source ("inline" or "file").

    Accepts inline text, a path (``str`` naming a report file, or ``os.PathLike``), or a mapping with exactly one
    of ``{"text": ...}`` or ``{"path": ...}``.

    Raises:
        ModalityError: "missing_file", "unreadable" or "invalid_reference".
    """
    if isinstance(ref, Mapping):
        keys = {"text", "path"} & set(ref)
        if len(keys) != 1:
            raise ModalityError("invalid_reference", "a report mapping needs exactly one of the keys 'text' or 'path'")
        if "path" in keys:
            return read_report(Path(os.fspath(ref["path"])))
        if not isinstance(ref["text"], str):
            kind = type(ref["text"]).__name__
            raise ModalityError("invalid_reference", f"report 'text' must be a string, got {kind}")
        return ref["text"], "inline"
    if isinstance(ref, os.PathLike):
        return _read_file(Path(ref)), "file"
    if isinstance(ref, str):
        path = _names_file(ref, None)
        return (_read_file(path), "file") if path is not None else (ref, "inline")
    raise ModalityError(
        "invalid_reference", f"expected report text, a file path or a mapping, got {type(ref).__name__}"
    )
