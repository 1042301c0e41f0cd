"""Sampling rates are read from the file's own text and checked against a plausible range; the memory a record takes
as read and once resampled is checked against ``max_decoded_mb`` before any sample is read (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest

import medclip
from medclip.types import ModalityError
from tests.modalities.ecg.writers import (
    drop_record_fields,
    set_record_field,
    sine_leads,
    write_array,
    write_dicom,
    write_edf,
    write_wfdb,
)

RAW = {"bandpass_hz": [], "notch_hz": 0.0}


def reason_of(ref, **options) -> str:
    with pytest.raises(ModalityError) as caught:
        medclip.get_modality("ecg", {**RAW, **options}).load(ref)
    return caught.value.reason


@pytest.mark.parametrize("written", ["nan", "inf", "-250", "0", "1e12", "0.5", "0.01", "100000"])
def test_wfdb_header_rates_outside_the_plausible_range_are_refused(tmp_path, written):
    # wfdb's own parser turns "nan", "inf" and "-250" into its 250 Hz default and "1e12" into 1 Hz: the rate is
    # read from the header text itself.
    header = write_wfdb(tmp_path, "rec", sine_leads(12, 10.0, 500.0))
    set_record_field(header, 2, written)
    assert reason_of(header) == "implausible_sampling_rate"


def test_wfdb_rate_that_is_not_a_number_is_a_bad_header(tmp_path):
    header = set_record_field(write_wfdb(tmp_path, "rec", sine_leads(12, 10.0, 500.0)), 2, "fast")
    assert reason_of(header) == "bad_header"


def test_wfdb_header_without_a_rate_uses_the_specification_default(tmp_path):
    header = write_wfdb(tmp_path, "rec", sine_leads(12, 10.0, 250.0), rate=250.0)
    drop_record_fields(header, 2)  # "rec 12": no rate, no length (WFDB: 250 Hz, length from the file size)
    sample = medclip.get_modality("ecg", RAW).load(header)
    assert sample["ecg_meta"]["source_sampling_rate"] == 250.0 and sample["ecg"].shape == (12, 5000)


def test_resampled_size_is_checked_before_resampling(tmp_path):
    # 12 leads x 500 samples at 50 Hz is 48 KB as read, 480 KB once resampled to 500 Hz: over a 0.25 MB budget.
    header = write_wfdb(tmp_path, "slow", sine_leads(12, 10.0, 50.0), rate=50.0)
    assert reason_of(header, max_decoded_mb=0.25) == "too_large"
    assert medclip.get_modality("ecg", {**RAW, "max_decoded_mb": 1.0}).load(header)["ecg"].shape == (12, 5000)


def test_declared_size_is_checked_before_reading(tmp_path):
    header = write_wfdb(tmp_path, "long", sine_leads(12, 10.0, 500.0))  # 12 x 5000 float64 = 480 KB
    assert reason_of(header, max_decoded_mb=0.25) == "too_large"


def test_sidecar_and_cell_rates_are_range_checked(tmp_path):
    path = write_array(tmp_path / "a.npy", sine_leads(12, 60.0, 50.0)[::100], sampling_rate=0.5, units="mV")
    assert reason_of(path) == "implausible_sampling_rate"  # 0.5 Hz would be resampled 1000-fold
    write_array(tmp_path / "b.npy", sine_leads(12, 10.0, 500.0))
    assert reason_of({"path": tmp_path / "b.npy", "sampling_rate": 1e9, "units": "mV"}) == "implausible_sampling_rate"


def test_dicom_sampling_frequency_is_range_checked(tmp_path):
    signal_uv = 1000.0 * sine_leads(12, 10.0, 500.0)
    assert reason_of(write_dicom(tmp_path / "nan.dcm", signal_uv, rate="NaN")) == "implausible_sampling_rate"
    assert reason_of(write_dicom(tmp_path / "slow.dcm", signal_uv, rate=0.5)) == "implausible_sampling_rate"


def test_edf_sampling_rate_is_range_checked(tmp_path):
    pytest.importorskip("pyedflib")
    path = write_edf(tmp_path / "slow.edf", 1000.0 * sine_leads(2, 20.0, 10.0), ["ECG I", "ECG II"], rate=10)
    assert reason_of(path) == "implausible_sampling_rate"


def test_the_range_is_a_setting(tmp_path):
    path = write_array(tmp_path / "a.npy", sine_leads(12, 10.0, 40.0), sampling_rate=40, units="mV")
    assert reason_of(path) == "implausible_sampling_rate"
    loaded = medclip.get_modality("ecg", {**RAW, "source_rate_range_hz": [25, 1000]}).load(path)
    assert loaded["ecg_meta"]["source_sampling_rate"] == 40.0 and np.isfinite(loaded["ecg"]).all()
