"""Report cells are read through the report plugin's reading, behind the regular-file and size guards."""

from __future__ import annotations

import os

import pytest

from medclip.types import ModalityError
from modalities.report.labeller.reading import read_report_cell


def reason(cell, root, max_mb=1.0) -> str:
    with pytest.raises(ModalityError) as raised:
        read_report_cell(cell, root, max_mb)
    message = str(raised.value)
    assert "secret" not in message and (not isinstance(cell, str) or cell not in message)  # never the cell
    return raised.value.reason


def test_inline_text_and_files_with_the_plugins_decoding(tmp_path):
    assert read_report_cell("No pneumothorax.", tmp_path, 1.0) == "No pneumothorax."
    (tmp_path / "r.txt").write_bytes("\ufeffSmall effusion.".encode())  # byte-order mark dropped
    assert read_report_cell("r.txt", tmp_path, 1.0) == "Small effusion."
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "s.md").write_text("Cardiomegaly.")
    assert read_report_cell("sub/s.md", tmp_path, 1.0) == "Cardiomegaly."


def test_bad_cells_are_refused_with_reason_codes(tmp_path):
    assert reason("secret_missing.txt", tmp_path) == "missing_file"
    os.mkfifo(tmp_path / "secret_pipe.txt")
    assert reason("secret_pipe.txt", tmp_path) == "not_regular_file"  # refused without opening: no hang
    (tmp_path / "secret_big.txt").write_bytes(b"a" * 2048)
    assert reason("secret_big.txt", tmp_path, max_mb=1 / 1024) == "too_large"
    assert reason("secret " * 300, tmp_path, max_mb=1 / 1024) == "too_large"
    (tmp_path / "secret_binary.txt").write_bytes(b"\x00\x01secret")
    assert reason("secret_binary.txt", tmp_path) == "binary_file"
    (tmp_path / "secret_latin1.txt").write_bytes("Pleuraerguss rechts, s\xe9cret".encode("latin-1"))
    assert reason("secret_latin1.txt", tmp_path) == "not_utf8"
    assert reason(3.5, tmp_path) == "invalid_reference"
