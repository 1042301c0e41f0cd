"""Holter and ambulatory lead names (MIT-BIH's "MLII", Mason-Likar, modified chest leads, DI-DIII) map to standard
leads; channel numbers and bipolar leads stay refused unless the user maps them (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest

import medclip
from medclip.config import ConfigError
from medclip.types import ModalityError
from modalities.ecg import canonical_lead
from modalities.ecg.config import ECGConfig
from modalities.ecg.preprocess import preprocessing_fingerprint
from tests.modalities.ecg.writers import sine_leads, write_wfdb

RAW = {"bandpass_hz": [], "notch_hz": 0.0}


@pytest.mark.parametrize(
    "spelling,lead",
    [
        ("MLII", "II"),
        ("MLI", "I"),
        ("MLIII", "III"),
        ("ML2", "II"),
        ("MLaVF", "aVF"),
        ("V1 ", "V1"),
        ("v1", "V1"),
        ("MV2", "V2"),
        ("MLV1", "V1"),
        ("DII", "II"),
        ("D3", "III"),
        ("ECG MLII", "II"),
        ("Lead 2", "II"),
    ],
)
def test_holter_spellings_map_to_standard_leads(spelling, lead):
    assert canonical_lead(spelling) == lead


@pytest.mark.parametrize("spelling", ["ECG1", "ECG2", "ECG 1", "EKG2", "CH1", "CM5", "CC5", "CS5", "MCL1", "V4R", "ES"])
def test_channel_numbers_and_bipolar_leads_stay_refused(spelling):
    assert canonical_lead(spelling) is None


def test_mit_bih_style_record_loads_both_leads(tmp_path):
    # As MIT-BIH Arrhythmia Database records are written: 360 Hz, format 212, modified limb lead II and V5.
    signal = sine_leads(2, 10.0, 360.0)
    header = write_wfdb(tmp_path, "100", signal, names=["MLII", "V5"], rate=360.0, fmt="212", gain=200.0)
    sample = medclip.get_modality("ecg", RAW).load(header)
    assert sample["ecg_meta"]["leads_present"] == ["II", "V5"]
    assert sample["ecg_meta"]["unmapped_channels"] == 0
    rows = {lead: row for row, lead in enumerate(medclip.get_modality("ecg").config.leads)}
    middle = slice(500, -500)  # away from the resampling filter's edges
    expected = medclip.get_modality("ecg", RAW).load(write_wfdb(tmp_path, "ref", signal, ["II", "V5"], rate=360.0))
    np.testing.assert_allclose(sample["ecg"][rows["II"], middle], expected["ecg"][rows["II"], middle], atol=0.01)


def test_record_with_only_mlii_is_not_refused(tmp_path):
    header = write_wfdb(tmp_path, "single", sine_leads(1, 10.0, 360.0), names=["MLII"], rate=360.0)
    assert medclip.get_modality("ecg", RAW).load(header)["ecg_meta"]["leads_present"] == ["II"]


def test_channel_numbered_record_is_refused_not_guessed(tmp_path):
    header = write_wfdb(tmp_path, "holter", sine_leads(2, 10.0, 250.0), names=["ECG1", "ECG2"], rate=250.0)
    with pytest.raises(ModalityError) as caught:
        medclip.get_modality("ecg", RAW).load(header)
    assert caught.value.reason == "no_known_leads"


def test_user_lead_aliases_map_refused_names(tmp_path):
    header = write_wfdb(tmp_path, "holter", sine_leads(2, 10.0, 250.0), names=["CM5", "CC5"], rate=250.0)
    sample = medclip.get_modality("ecg", {**RAW, "lead_aliases": {"cm 5": "V5"}}).load(header)
    assert sample["ecg_meta"]["leads_present"] == ["V5"] and sample["ecg_meta"]["unmapped_channels"] == 1
    with pytest.raises(ConfigError, match="lead_aliases"):
        ECGConfig(lead_aliases={"CM5": "V7"})
    # The mapping changes what a record becomes, so it is part of the fingerprint, only when set.
    assert "lead_aliases" not in preprocessing_fingerprint(ECGConfig())
    assert preprocessing_fingerprint(ECGConfig(lead_aliases={"CM5": "V5"}))["lead_aliases"] == {"CM5": "V5"}
