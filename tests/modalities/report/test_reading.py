"""Report files are read only when they are regular files, within ``max_chars``, and each way of not being text has
its own reason (issue 14)."""

from __future__ import annotations

import os

import pytest

import medclip
from medclip.types import ModalityError

FINDINGS = "FINDINGS: Clear lungs. IMPRESSION: Normal."


def reason_of(modality, ref) -> str:
    with pytest.raises(ModalityError) as caught:
        modality.load(ref)
    assert "pytest-of" not in str(caught.value) and "Doe" not in str(caught.value)
    return caught.value.reason


def test_special_files_named_as_reports_are_not_read(tmp_path):
    report = medclip.get_modality("report")
    (tmp_path / "Doe_null.txt").symlink_to(os.devnull)  # a device: /dev/zero or /dev/urandom would never end
    (tmp_path / "Doe_folder.md").mkdir()
    assert reason_of(report, report.resolve("Doe_null.txt", tmp_path)) == "not_regular_file"
    assert reason_of(report, report.resolve("Doe_folder.md", tmp_path)) == "not_regular_file"
    assert reason_of(report, {"path": tmp_path / "Doe_null.txt"}) == "not_regular_file"


def test_reports_longer_than_max_chars_are_refused(tmp_path):
    report = medclip.get_modality("report", {"max_chars": 1000})
    (tmp_path / "long.txt").write_text(FINDINGS + " Normal heart." * 100)
    assert reason_of(report, report.resolve("long.txt", tmp_path)) == "too_large"
    assert reason_of(report, FINDINGS + " Normal heart." * 100) == "too_large"
    assert reason_of(report, {"text": "x" * 1001}) == "too_large"
    (tmp_path / "short.txt").write_text(FINDINGS)
    assert report.load(report.resolve("short.txt", tmp_path))["report"] == FINDINGS


def test_a_file_whose_bytes_exceed_the_limit_is_refused_before_reading(tmp_path):
    report = medclip.get_modality("report", {"max_chars": 100})
    path = tmp_path / "big.txt"
    with open(path, "wb") as handle:
        handle.truncate(10**9)  # a sparse 1 GB file: refused from its size, never read
    assert reason_of(report, path) == "too_large"


def test_not_utf8_and_binary_files_have_their_own_reasons(tmp_path):
    report = medclip.get_modality("report")
    (tmp_path / "latin.txt").write_bytes("FINDINGS: caf\xe9".encode("latin-1"))
    (tmp_path / "binary.txt").write_bytes(b"FINDINGS: \x00\x01")
    assert reason_of(report, tmp_path / "latin.txt") == "not_utf8"
    assert reason_of(report, tmp_path / "binary.txt") == "binary_file"
