"""ECG error messages name the reason, never a file name, suffix, cell text or header content (issue 14), and the
reader's formerly catch-all reasons are specific codes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import medclip
from medclip.types import ModalityError
from tests.modalities.ecg.writers import sine_leads, write_array

NAME = "Doe_Jane"


def error_of(ref) -> ModalityError:
    with pytest.raises(ModalityError) as caught:
        medclip.get_modality("ecg").load(ref)
    message = str(caught.value)
    assert "Doe" not in message and "Jane" not in message and "pytest-of" not in message, message
    return caught.value


def test_unsupported_suffix_is_not_quoted(tmp_path):
    error = error_of(tmp_path / f"{NAME}.Doe_Jane_1947")
    assert error.reason == "unsupported_format" and "1947" not in str(error)


def test_sidecar_keys_and_cell_options_are_not_quoted(tmp_path):
    path = write_array(tmp_path / "a.npy", sine_leads(12, 10.0, 500.0))
    path.with_suffix(".json").write_text(json.dumps({"sampling_rate": 500, "units": "mV", "Doe_Jane": 1}))
    assert error_of(path).reason == "bad_sidecar"
    ecg = medclip.get_modality("ecg")
    with pytest.raises(ModalityError) as caught:
        ecg.resolve("a.npy#Doe_Jane=1", tmp_path)
    assert caught.value.reason == "bad_reference" and "Doe" not in str(caught.value)


@pytest.mark.parametrize(
    "array,reason",
    [
        (np.zeros((5000, 12, 2)), "wrong_dimensions"),
        (np.zeros((5000, 12), dtype=bool), "unsupported_dtype"),
        (np.zeros(5000, dtype=[("I", "f8"), ("II", "f8")]), "unsupported_dtype"),
    ],
)
def test_numpy_shapes_and_dtypes_have_their_own_reasons(tmp_path, array, reason):
    assert error_of(write_array(tmp_path / "a.npy", array, sampling_rate=500, units="mV")).reason == reason


def test_numpy_header_that_disagrees_with_the_file_size(tmp_path):
    path = write_array(tmp_path / "a.npy", sine_leads(12, 10.0, 500.0), sampling_rate=500, units="mV")
    os.truncate(path, path.stat().st_size - 80)
    assert error_of(path).reason == "header_data_mismatch"


def test_csv_failures_have_their_own_reasons(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "words.csv").write_text("I,II\n0.1,abc\n")
    (tmp_path / "latin.csv").write_bytes(b"I,II \xe9\n0.1,0.2\n")  # a Latin-1 header: not UTF-8
    for name, reason in [("empty.csv", "empty_file"), ("words.csv", "not_numeric"), ("latin.csv", "not_utf8")]:
        assert error_of({"path": tmp_path / name, "sampling_rate": 500.0, "units": "mV"}).reason == reason


def test_a_device_file_named_as_record_is_not_read(tmp_path):
    (tmp_path / "rec.npy").symlink_to(os.devnull)  # /dev/null: empty, so the unfixed reader fails fast here
    assert error_of({"path": tmp_path / "rec.npy", "sampling_rate": 500.0, "units": "mV"}).reason == (
        "not_regular_file"
    )
    (tmp_path / "rec.hea").symlink_to(os.devnull)
    assert error_of(tmp_path / "rec.hea").reason == "not_regular_file"
