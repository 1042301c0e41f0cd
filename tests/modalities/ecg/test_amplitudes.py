"""Samples are checked after conversion to millivolts, never only before: finite and within a plausible amplitude;
complex samples are refused instead of losing their imaginary part (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest

import medclip
from medclip.types import ModalityError
from tests.modalities.ecg.writers import sine_leads, write_array, write_csv, write_dicom, write_wfdb

RAW = {"bandpass_hz": [], "notch_hz": 0.0}


def reason_of(ref, **options) -> str:
    with pytest.raises(ModalityError) as caught:
        medclip.get_modality("ecg", {**RAW, **options}).load(ref)
    return caught.value.reason


def test_values_that_overflow_in_the_unit_conversion_are_non_finite(tmp_path):
    signal = sine_leads(12, 10.0, 500.0)
    signal[100, 3] = 1e308  # finite in volts, infinite in millivolts
    path = write_array(tmp_path / "volts.npy", signal, sampling_rate=500, units="V")
    assert reason_of(path) == "non_finite"


@pytest.mark.parametrize("peak_volts", [1e300, 5.0])
def test_amplitudes_beyond_a_volt_are_implausible(tmp_path, peak_volts):
    signal = sine_leads(12, 10.0, 500.0) * 1e-3  # 1 mV in volts
    signal[100, 3] = peak_volts
    path = write_array(tmp_path / "volts.npy", signal, sampling_rate=500, units="V")
    assert reason_of(path) == "implausible_amplitude"


def test_wfdb_physical_values_are_checked_in_millivolts(tmp_path):
    # A gain of 0.001 digital units per mV turns full-scale 16-bit samples into +-32 V.
    header = write_wfdb(tmp_path, "loud", sine_leads(12, 10.0, 500.0) * 30000.0, gain=0.001)
    assert reason_of(header) == "implausible_amplitude"


@pytest.mark.parametrize("sensitivity,reason", [("1e10", "implausible_amplitude"), ("1e308", "non_finite")])
def test_dicom_channel_sensitivity_is_checked_in_millivolts(tmp_path, sensitivity, reason):
    import pydicom

    path = write_dicom(tmp_path / "huge.dcm", 1000.0 * sine_leads(12, 10.0, 500.0))
    dataset = pydicom.dcmread(path)
    dataset.WaveformSequence[0].ChannelDefinitionSequence[0].ChannelSensitivity = sensitivity  # uV per stored unit
    dataset.save_as(path)
    assert reason_of(path) == reason


def test_csv_amplitudes_are_checked(tmp_path):
    signal = sine_leads(12, 10.0, 500.0)
    signal[10, 0] = 2e6  # microvolts labelled as millivolts
    assert reason_of({"path": write_csv(tmp_path / "a.csv", signal), "sampling_rate": 500.0, "units": "mV"}) == (
        "implausible_amplitude"
    )


def test_complex_arrays_are_refused(tmp_path):
    signal = sine_leads(12, 10.0, 500.0) + 1j * sine_leads(12, 10.0, 500.0)
    assert reason_of(write_array(tmp_path / "c.npy", signal, sampling_rate=500, units="mV")) == "complex_values"


def test_the_amplitude_limit_is_a_setting(tmp_path):
    signal = sine_leads(12, 10.0, 500.0) * 3.0  # 3 mV
    path = write_array(tmp_path / "a.npy", signal, sampling_rate=500, units="mV")
    assert reason_of(path, max_amplitude_mv=2.0) == "implausible_amplitude"
    loaded = medclip.get_modality("ecg", RAW).load(path)
    np.testing.assert_allclose(loaded["ecg"], signal.T, atol=1e-5)
