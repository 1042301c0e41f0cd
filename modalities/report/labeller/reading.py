"""A manifest cell -> report text, through the report plugin's own reading, with the input guards of ``safe_io``.

``reading.resolve_cell`` and ``reading.read_report`` decide, as for training, whether a cell is inline text or a
``.txt``/``.md`` file and decode it (UTF-8 with or without a byte-order mark, binary refused). Before the file is
opened it must be a regular file (a FIFO would block ``open`` forever, a device never ends) no larger than the budget;
inline text has the same budget. Failures are ``ModalityError`` with the plugin's reason codes, never quoting the cell.
"""

from __future__ import annotations

import os
from typing import Any

from medclip.data.safe_io import MEGABYTE, TOO_LARGE, require_regular_file
from medclip.types import ModalityError

from ..reading import read_report, resolve_cell


def read_report_cell(cell: Any, root: str | os.PathLike, max_mb: float) -> str:
    """The text of a report cell (inline text, or a report file relative to ``root``).

    Raises:
        ModalityError: "missing_file", "not_regular_file", "too_large", "unreadable" or "invalid_reference".
    """
    budget = int(max_mb * MEGABYTE)
    reference = resolve_cell(cell, root)
    if isinstance(reference, os.PathLike):
        size = require_regular_file(reference, "report").st_size
        if size > budget:
            raise ModalityError(TOO_LARGE, f"the report file has {size} bytes, over the limit of {budget}")
    text, _ = read_report(reference)
    if len(text) > budget:  # characters; at least as many bytes once encoded
        raise ModalityError(TOO_LARGE, f"the report has {len(text)} characters, over the limit of {budget}")
    return text
