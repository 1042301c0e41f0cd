"""The ECG modality: real WFDB / DICOM / EDF / CSV / NumPy files written by their libraries and read back through the
plugin, lead aliases, resampling, filters, named errors, the memory-mapped cache, encoders, the synthetic dataset and
a few real pretraining steps on it.

Identifiers are planted where real files carry them (WFDB header comments, DICOM patient tags, EDF patient fields,
file names) and every output, cache file, log line and error message is checked to hold none of them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import medclip
from medclip.types import ModalityError
from modalities.ecg import STANDARD_LEADS, canonical_lead
from modalities.ecg.cache import MAGIC, forget_content_hashes
from modalities.ecg.leads import lead_layout
from modalities.ecg.preprocess import META_KEYS
from modalities.ecg.resample import resample
from tests.paths import REPOSITORY

wfdb = pytest.importorskip("wfdb")

NAME, MRN, BIRTH = "Doe^Jane", "MRN99887766", "19470312"
IDENTIFIERS = ("Doe", "Jane", "99887766", "19470312")
RAW = {"bandpass_hz": [], "notch_hz": 0.0}  # filters off: values can be compared exactly


def plugin(**options) -> medclip.Modality:
    return medclip.get_modality("ecg", options)


def assert_no_identifiers(text: str) -> None:
    for identifier in IDENTIFIERS:
        assert identifier not in text, f"identifier {identifier!r} leaked"


def sine_leads(leads: int, seconds: float, rate: float, amplitude: float = 1.0) -> np.ndarray:
    """(T, C) distinct sines per channel, so a channel mix-up cannot pass."""
    time = np.arange(round(seconds * rate)) / rate
    return np.stack([amplitude * np.sin(2 * np.pi * (1.0 + 0.5 * c) * time + c) for c in range(leads)], axis=1)


def write_wfdb(folder: Path, name: str, signal: np.ndarray, names, units, rate: float = 500.0) -> Path:
    wfdb.wrsamp(
        name,
        fs=rate,
        units=list(units),
        sig_name=list(names),
        p_signal=signal,
        fmt=["16"] * signal.shape[1],
        adc_gain=[1000.0] * signal.shape[1],
        baseline=[0] * signal.shape[1],
        comments=[f"Patient: {NAME}", f"ID: {MRN}", f"DOB: {BIRTH}", "age: 77 sex: F"],
        write_dir=str(folder),
    )
    return folder / f"{name}.hea"


# --- leads -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spelling,lead",
    [
        ("I", "I"),
        ("Lead II", "II"),
        ("MDC_ECG_LEAD_III", "III"),
        ("avr", "aVR"),
        ("aVL, augmented voltage, left arm", "aVL"),
        ("Lead aVF (augmented voltage foot)", "aVF"),
        ("ECG V1", "V1"),
        ("EKG_V2", "V2"),
        ("C3", "V3"),
        ("v4", "V4"),
        ("I (Einthoven)", "I"),
        ("2", "II"),
        ("Resp", None),
        ("Pleth", None),
        ("V7", None),
    ],
)
def test_lead_alias_mapping(spelling, lead):
    assert canonical_lead(spelling) == lead


def test_lead_layout_orders_masks_and_rejects_duplicates():
    layout = lead_layout(["V1", "Lead II", "Resp", "I"])
    assert layout.target_rows.tolist() == [6, 1, 0] and layout.source_channels.tolist() == [0, 1, 3]
    assert layout.lead_mask.tolist() == [lead in ("I", "II", "V1") for lead in STANDARD_LEADS]
    assert layout.unmapped_channels == 1
    with pytest.raises(ModalityError) as error:
        lead_layout(["II", "Lead II"])
    assert error.value.reason == "duplicate_lead"
    with pytest.raises(ModalityError) as error:
        lead_layout(["Resp", "SpO2"])
    assert error.value.reason == "no_known_leads"


# --- resampling and filters ---------------------------------------------------------------------------------------
def spectrum(signal: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Single-sided amplitude spectrum of a 1-D signal (Hann-free: whole-cycle sines give exact bins)."""
    amplitude = np.abs(np.fft.rfft(signal)) * 2 / signal.size
    return np.fft.rfftfreq(signal.size, 1 / rate), amplitude


@pytest.mark.parametrize("source,target", [(1000.0, 250.0), (360.0, 500.0), (500.0, 100.0)])
def test_resampling_preserves_a_sine_frequency_and_amplitude(source, target):
    seconds, frequency, amplitude = 10.0, 7.0, 1.5
    time = np.arange(round(seconds * source)) / source
    resampled = resample((amplitude * np.sin(2 * np.pi * frequency * time))[None, :], source, target)[0]
    assert resampled.size == round(seconds * target)
    middle = resampled[round(target) : -round(target)]  # away from the filter's edge transients
    frequencies, spectrum_amplitude = spectrum(middle[: round(8 * target)], target)
    peak = int(np.argmax(spectrum_amplitude))
    assert frequencies[peak] == pytest.approx(frequency, abs=0.13)
    assert spectrum_amplitude[peak] == pytest.approx(amplitude, rel=0.01)
    assert np.abs(middle).max() == pytest.approx(amplitude, rel=0.01)


def test_resampling_removes_energy_above_the_new_nyquist_instead_of_aliasing():
    source, target = 1000.0, 250.0
    time = np.arange(10_000) / source
    high = np.sin(2 * np.pi * 200.0 * time)  # would fold to 50 Hz at 250 Hz without anti-aliasing
    resampled = resample(high[None, :], source, target)[0][250:-250]
    assert np.abs(resampled).max() < 0.01
    naive = high[::4][250:-250]  # plain decimation, for contrast
    assert np.abs(naive).max() > 0.9


def test_notch_and_bandpass_remove_mains_hum_and_baseline_wander(tmp_path):
    rate, seconds = 500.0, 10.0
    time = np.arange(round(rate * seconds)) / rate
    ecg_like = np.sin(2 * np.pi * 10.0 * time)
    noisy = ecg_like + 0.5 * np.sin(2 * np.pi * 50.0 * time) + 1.0 * np.sin(2 * np.pi * 0.1 * time)
    np.save(tmp_path / "noisy.npy", np.tile(noisy[:, None], (1, 12)))
    loaded = plugin(bandpass_hz=[0.5, 40.0], notch_hz=50.0).load(
        {"path": tmp_path / "noisy.npy", "sampling_rate": rate, "units": "mV"}
    )
    filtered = loaded["ecg"][0, 500:-500].astype(np.float64)
    frequencies, amplitude = spectrum(filtered[:4000], rate)
    at = {f: amplitude[int(np.argmin(np.abs(frequencies - f)))] for f in (0.125, 10.0, 50.0)}
    assert at[10.0] == pytest.approx(1.0, rel=0.05)
    assert at[50.0] < 0.01 and at[0.125] < 0.05


# --- WFDB --------------------------------------------------------------------------------------------------------
def test_wfdb_round_trip_through_the_plugin_with_aliases_units_and_an_absent_lead(tmp_path, caplog):
    # Channels in a vendor order with alias names, V3 missing, V1-V2 in microvolts, an extra respiration channel.
    names = ["Lead II", "I", "III", "aVR", "aVL", "aVF", "C1", "C2", "V4", "V5", "V6", "Resp"]
    units = ["mV", "mV", "mV", "mV", "mV", "mV", "uV", "uV", "mV", "mV", "mV", "mV"]
    written = sine_leads(len(names), seconds=10.0, rate=500.0)
    written[:, 6:8] *= 10.0  # 10 microvolts: a tenth of a millivolt
    caplog.set_level(logging.DEBUG)
    header = write_wfdb(tmp_path, "Doe_Jane_99887766", written, names, units)
    sample = plugin(**RAW).load(header)

    signal, meta = sample["ecg"], sample["ecg_meta"]
    assert signal.shape == (12, 5000) and signal.dtype == np.float32
    row = {lead: index for index, lead in enumerate(STANDARD_LEADS)}
    np.testing.assert_allclose(signal[row["II"]], written[:, 0], atol=1e-3)
    np.testing.assert_allclose(signal[row["I"]], written[:, 1], atol=1e-3)
    np.testing.assert_allclose(signal[row["V1"]], written[:, 6] / 1000.0, atol=1e-5)  # uV -> mV
    assert not signal[row["V3"]].any()
    assert meta["leads_present"] == [lead for lead in STANDARD_LEADS if lead != "V3"]
    assert meta["sampling_rate"] == 500.0 and meta["duration_s"] == 10.0 and meta["units"] == "mV"
    assert meta["source_units"] == ["mV", "uV"] and meta["unmapped_channels"] == 1 and meta["format"] == "wfdb"
    assert set(meta) == set(META_KEYS)
    # Loading by record name (no suffix) or .dat gives the same record.
    for variant in (tmp_path / "Doe_Jane_99887766", tmp_path / "Doe_Jane_99887766.dat"):
        np.testing.assert_array_equal(plugin(**RAW).load(variant)["ecg"], signal)
    transformed = plugin(**RAW).transforms(train=False)(sample)["ecg"]
    assert transformed["lead_mask"].tolist() == [lead != "V3" for lead in STANDARD_LEADS]
    assert_no_identifiers(json.dumps(meta) + caplog.text)


def test_wfdb_at_another_rate_is_resampled(tmp_path):
    header = write_wfdb(tmp_path, "rec360", sine_leads(12, 10.0, 360.0), STANDARD_LEADS, ["mV"] * 12, rate=360.0)
    sample = plugin(**RAW, sampling_rate=100.0).load(header)
    assert sample["ecg"].shape == (12, 1000)
    assert sample["ecg_meta"]["source_sampling_rate"] == 360.0 and sample["ecg_meta"]["sampling_rate"] == 100.0


# --- malformed records --------------------------------------------------------------------------------------------
def error_of(modality, ref) -> ModalityError:
    with pytest.raises(ModalityError) as caught:
        modality.load(ref)
    assert_no_identifiers(str(caught.value))
    assert "pytest-of" not in str(caught.value)  # never a path (tmp_path always holds this)
    return caught.value


def test_malformed_records_give_named_reason_codes(tmp_path):
    ecg = plugin(**RAW)
    good = sine_leads(12, 10.0, 500.0)

    truncated = write_wfdb(tmp_path, "Doe_truncated", good, STANDARD_LEADS, ["mV"] * 12)
    data = truncated.with_suffix(".dat")
    data.write_bytes(data.read_bytes()[: 2 * 12 * 3000])
    assert error_of(ecg, truncated).reason == "header_data_mismatch"

    corrupted = write_wfdb(tmp_path, "Doe_checksum", good, STANDARD_LEADS, ["mV"] * 12)
    data = corrupted.with_suffix(".dat")
    payload = bytearray(data.read_bytes())
    payload[100] ^= 0x01  # same size, one flipped bit: only the checksums notice
    data.write_bytes(bytes(payload))
    assert error_of(ecg, corrupted).reason == "header_data_mismatch"

    gaps = good.copy()
    gaps[100:110, 3] = np.nan  # written as WFDB's invalid-sample marker
    assert error_of(ecg, write_wfdb(tmp_path, "Doe_gaps", gaps, STANDARD_LEADS, ["mV"] * 12)).reason == "non_finite"

    short = write_wfdb(tmp_path, "Doe_short", sine_leads(12, 1.0, 500.0), STANDARD_LEADS, ["mV"] * 12)
    assert error_of(ecg, short).reason == "too_short"

    volts = write_wfdb(tmp_path, "Doe_units", good, STANDARD_LEADS, ["mmHg"] * 12)
    assert error_of(ecg, volts).reason == "unknown_units"

    assert error_of(ecg, tmp_path / "Doe_missing.hea").reason == "missing_file"
    (tmp_path / "Doe_broken.hea").write_text("this is not a WFDB header\n")
    assert error_of(ecg, tmp_path / "Doe_broken.hea").reason == "bad_header"
    assert error_of(ecg, tmp_path / "Doe.xyz").reason == "unsupported_format"

    table = tmp_path / "Doe_nan.csv"
    table.write_text("I,II\n0.1,0.2\nnan,0.3\n" + "0.1,0.2\n" * 2000)
    assert error_of(ecg, {"path": table, "sampling_rate": 500.0, "units": "mV"}).reason == "non_finite"


def test_bad_rows_are_skipped_and_counted_by_the_dataset(tmp_path):
    from medclip.data import ManifestDataset, read_manifest

    write_wfdb(tmp_path, "good", sine_leads(12, 10.0, 500.0), STANDARD_LEADS, ["mV"] * 12)
    write_wfdb(tmp_path, "short", sine_leads(12, 1.0, 500.0), STANDARD_LEADS, ["mV"] * 12)
    (tmp_path / "manifest.csv").write_text("patient_id,ecg\nP1,good.hea\nP2,short.hea\nP3,absent.hea\nP4,good\n")
    ecg = plugin(**RAW)
    manifest = read_manifest(tmp_path / "manifest.csv", ["ecg"])
    dataset = ManifestDataset(manifest, {"ecg": ecg})
    items = [dataset[index] for index in range(len(dataset))]
    assert sum("skipped" not in item for item in items) == 2
    skipped = [item["skipped"] for item in items if "skipped" in item]
    assert [record.reason for record in skipped] == ["too_short"]
    assert dataset.summary.counts() == {"missing_file": 1}


# --- other formats -----------------------------------------------------------------------------------------------
def write_dicom_ecg(path: Path, signal_uv: np.ndarray, rate: float, names) -> None:
    """A 12-lead ECG waveform file as a cart exports it: a median-beat group first, then the rhythm group."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sensitivity = 2.5  # microvolts per stored unit
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.9.1.1"  # 12-lead ECG Waveform Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.PatientName, dataset.PatientID, dataset.PatientBirthDate = NAME, MRN, BIRTH
    dataset.StudyDescription = f"ECG of {NAME}"
    dataset.Modality = "ECG"

    def group(label: str, samples: np.ndarray) -> Dataset:
        item = Dataset()
        item.MultiplexGroupLabel = label
        item.SamplingFrequency = rate
        item.NumberOfWaveformChannels = samples.shape[1]
        item.NumberOfWaveformSamples = samples.shape[0]
        item.WaveformBitsAllocated = 16
        item.WaveformSampleInterpretation = "SS"
        channels = []
        for name in names:
            channel = Dataset()
            source = Dataset()
            source.CodeMeaning = name
            source.CodeValue = "5.6.3-9-1"
            source.CodingSchemeDesignator = "SCPECG"
            channel.ChannelSourceSequence = [source]
            channel.ChannelSensitivity = sensitivity
            unit = Dataset()
            unit.CodeValue = "uV"
            unit.CodingSchemeDesignator = "UCUM"
            unit.CodeMeaning = "microvolt"
            channel.ChannelSensitivityUnitsSequence = [unit]
            channel.ChannelSensitivityCorrectionFactor = 1.0
            channel.ChannelBaseline = 0.0
            channel.WaveformBitsStored = 16
            channels.append(channel)
        item.ChannelDefinitionSequence = channels
        item.WaveformData = np.round(samples / sensitivity).astype("<i2").tobytes()
        return item

    dataset.WaveformSequence = [group("MEDIAN BEAT", signal_uv[:600] * 0.0), group("RHYTHM", signal_uv)]
    dataset.save_as(path, enforce_file_format=True)


def test_dicom_waveform_written_with_pydicom_then_read(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    names = ["Lead I", "Lead II", "Lead III", "Lead aVR", "Lead aVL", "Lead aVF"]
    names += [f"Lead V{index}" for index in range(1, 7)]
    signal_uv = 1000.0 * sine_leads(12, 10.0, 500.0)  # 1 mV sines stored in microvolts
    path = tmp_path / "Doe_Jane_ecg.dcm"
    write_dicom_ecg(path, signal_uv, 500.0, names)
    assert NAME.encode() in path.read_bytes()  # the identifiers really are in the file

    sample = plugin(**RAW).load(path)
    np.testing.assert_allclose(sample["ecg"], signal_uv.T / 1000.0, atol=2e-3)  # rhythm group, uV -> mV
    assert sample["ecg_meta"]["format"] == "dicom" and sample["ecg_meta"]["leads_present"] == list(STANDARD_LEADS)
    assert sample["ecg_meta"]["source_units"] == ["uV"]
    assert_no_identifiers(json.dumps(sample["ecg_meta"]) + caplog.text)

    import pydicom

    broken = pydicom.dcmread(path)
    broken.WaveformSequence[1].NumberOfWaveformSamples = 6000  # header says more samples than the data holds
    broken.save_as(tmp_path / "Doe_broken.dcm")
    assert error_of(plugin(**RAW), tmp_path / "Doe_broken.dcm").reason == "header_data_mismatch"
    del broken.WaveformSequence
    broken.save_as(tmp_path / "Doe_nowave.dcm")
    assert error_of(plugin(**RAW), tmp_path / "Doe_nowave.dcm").reason == "not_an_ecg"


def test_edf_written_with_pyedflib_then_read(tmp_path):
    pyedflib = pytest.importorskip("pyedflib")
    labels = ["ECG I", "ECG II", "ECG V1", "Resp"]
    signal = sine_leads(4, 10.0, 250.0)
    path = tmp_path / "Doe_Jane.edf"
    writer = pyedflib.EdfWriter(str(path), len(labels), file_type=pyedflib.FILETYPE_EDFPLUS)
    writer.setPatientName(NAME)
    writer.setPatientCode(MRN)
    headers = []
    for label in labels:
        headers.append(
            {
                "label": label,
                "dimension": "uV" if label != "Resp" else "Ohm",
                "sample_frequency": 250,
                "physical_max": 2000.0,
                "physical_min": -2000.0,
                "digital_max": 32767,
                "digital_min": -32768,
            }
        )
    writer.setSignalHeaders(headers)
    writer.writeSamples([1000.0 * signal[:, index] for index in range(len(labels))])
    writer.close()

    sample = plugin(**RAW, sampling_rate=250.0).load(path)
    row = {lead: index for index, lead in enumerate(STANDARD_LEADS)}
    np.testing.assert_allclose(sample["ecg"][row["V1"]], signal[:, 2], atol=1e-3)
    assert sample["ecg_meta"]["leads_present"] == ["I", "II", "V1"]
    assert sample["ecg_meta"]["unmapped_channels"] == 1 and sample["ecg_meta"]["format"] == "edf"
    assert_no_identifiers(json.dumps(sample["ecg_meta"]))


def test_csv_and_numpy_take_the_sampling_rate_from_the_cell_or_a_sidecar(tmp_path):
    ecg = plugin(**RAW, sampling_rate=250.0)
    signal = sine_leads(3, 8.0, 250.0)
    table = tmp_path / "rec.csv"
    rows = "\n".join(",".join(f"{value:.6f}" for value in (index / 250.0, *row)) for index, row in enumerate(signal))
    table.write_text("time,II,V2,aVF\n" + rows + "\n")

    loaded = ecg.load(ecg.resolve("rec.csv#fs=250&units=mV", tmp_path))
    np.testing.assert_allclose(loaded["ecg"][STANDARD_LEADS.index("V2")], signal[:, 1], atol=1e-5)
    assert loaded["ecg_meta"]["leads_present"] == ["II", "aVF", "V2"] and loaded["ecg_meta"]["unmapped_channels"] == 1
    assert error_of(ecg, table).reason == "missing_sampling_rate"
    (tmp_path / "rec.json").write_text(json.dumps({"sampling_rate": 500, "units": "mV"}))
    assert error_of(ecg, ecg.resolve("rec.csv#fs=250", tmp_path)).reason == "conflicting_sampling_rate"
    (tmp_path / "rec.json").write_text(json.dumps({"sampling_rate": 250, "units": "mV"}))
    np.testing.assert_array_equal(ecg.load(table)["ecg"], loaded["ecg"])

    np.save(tmp_path / "array.npy", (1000.0 * sine_leads(12, 8.0, 250.0)).astype(np.float32))  # (T, 12) microvolts
    assert error_of(ecg, ecg.resolve("array.npy#fs=250", tmp_path)).reason == "unknown_units"
    loaded = ecg.load(ecg.resolve("array.npy#fs=250&units=uV", tmp_path))
    np.testing.assert_allclose(loaded["ecg"], sine_leads(12, 8.0, 250.0).T, atol=1e-4)
    with pytest.raises(ModalityError) as error:
        ecg.resolve("array.npy#rate=250", tmp_path)
    assert error.value.reason == "bad_reference"


# --- cache -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,tolerance", [("float16", 2e-3), ("int16", 1e-4)])
def test_cache_is_memory_mapped_keyed_by_content_and_leaks_nothing(tmp_path, dtype, tolerance, caplog):
    caplog.set_level(logging.DEBUG)
    cache_dir = tmp_path / "cache"
    header = write_wfdb(tmp_path, "Doe_Jane_99887766", sine_leads(12, 10.0, 500.0), STANDARD_LEADS, ["mV"] * 12)
    uncached = plugin(**RAW).load(header)
    cached = plugin(**RAW, cache_dir=str(cache_dir), cache_dtype=dtype)
    first = cached.load(header)
    entries = sorted(cache_dir.rglob("*.ecg"))
    assert len(entries) == 1
    forget_content_hashes()  # as a new process: rehash the files, then hit the entry
    second = cached.load(header)
    assert len(sorted(cache_dir.rglob("*"))) == 2  # one folder, one entry: nothing rewritten
    np.testing.assert_array_equal(first["ecg"], second["ecg"])
    import modalities.ecg.cache as cache_module

    read_whole_below = cache_module.READ_WHOLE_BELOW
    cache_module.READ_WHOLE_BELOW = 0  # long records are memory-mapped: the same entry read that way is identical
    try:
        mapped = cached.load(header)
    finally:
        cache_module.READ_WHOLE_BELOW = read_whole_below
    np.testing.assert_array_equal(mapped["ecg"], second["ecg"])
    np.testing.assert_allclose(second["ecg"], uncached["ecg"], atol=tolerance)
    assert second["ecg_meta"] == uncached["ecg_meta"]

    raw = entries[0].read_bytes()
    assert raw.startswith(MAGIC)  # our own header + raw samples, never a pickle
    assert_no_identifiers(entries[0].name + raw.decode("latin-1") + caplog.text)

    # The same bytes elsewhere are the same entry (paths are not part of keys); other settings get their own.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for suffix in (".hea", ".dat"):
        (elsewhere / f"Doe_Jane_99887766{suffix}").write_bytes((tmp_path / f"Doe_Jane_99887766{suffix}").read_bytes())
    cached.load(elsewhere / "Doe_Jane_99887766.hea")
    assert len(sorted(cache_dir.rglob("*.ecg"))) == 1
    plugin(**{**RAW, "notch_hz": 60.0}, cache_dir=str(cache_dir), cache_dtype=dtype).load(header)
    assert len(sorted(cache_dir.rglob("*.ecg"))) == 2


def test_changed_file_is_not_served_from_the_cache(tmp_path):
    cache_dir = tmp_path / "cache"
    header = write_wfdb(tmp_path, "rec", sine_leads(12, 10.0, 500.0), STANDARD_LEADS, ["mV"] * 12)
    ecg = plugin(**RAW, cache_dir=str(cache_dir))
    before = ecg.load(header)["ecg"]
    write_wfdb(tmp_path, "rec", 2.0 * sine_leads(12, 10.0, 500.0), STANDARD_LEADS, ["mV"] * 12)
    after = ecg.load(header)["ecg"]
    np.testing.assert_allclose(after, 2.0 * before, atol=5e-3)


# --- transforms and encoders ---------------------------------------------------------------------------------------
def test_transform_crops_pads_normalises_and_augments():
    ecg = plugin(sampling_rate=100.0, seconds=10.0, min_seconds=2.0)
    long, short = synthetic_at(ecg, 12.0), synthetic_at(ecg, 4.0)
    evaluation = ecg.transforms(train=False)
    cropped = evaluation(long)["ecg"]
    assert cropped["signal"].shape == (12, 1000) and int(cropped["valid_samples"]) == 1000
    assert torch.allclose(cropped["signal"].mean(dim=1), torch.zeros(12), atol=1e-4)
    assert torch.allclose(cropped["signal"].std(dim=1, unbiased=False), torch.ones(12), atol=1e-3)
    padded = evaluation(short)["ecg"]
    assert int(padded["valid_samples"]) == 400 and not padded["signal"][:, 400:].any()
    assert torch.equal(evaluation(long)["ecg"]["signal"], cropped["signal"])  # evaluation is deterministic

    missing_v3 = dict(long, ecg_meta={**long["ecg_meta"], "leads_present": [x for x in STANDARD_LEADS if x != "V3"]})
    torch.manual_seed(0)
    training = ecg.transforms(train=True)
    augmented = [training(dict(missing_v3))["ecg"] for _ in range(3)]
    assert not torch.equal(augmented[0]["signal"], augmented[1]["signal"])
    for item in augmented:
        assert (
            not item["lead_mask"][STANDARD_LEADS.index("V3")] and not item["signal"][STANDARD_LEADS.index("V3")].any()
        )
        assert item["lead_mask"].any()


def synthetic_at(ecg, seconds: float):
    from modalities.ecg.preprocess import preprocess
    from modalities.ecg.synthetic import as_raw_record, generate_ecgs

    record = generate_ecgs(1, seed=3, seconds=seconds)[0]
    signal, meta = preprocess(as_raw_record(record.simulated), ecg.config)
    return {"ecg": signal, "ecg_meta": meta}


@pytest.mark.parametrize("encoder", ["resnet1d", "vit1d"])
def test_encoders_return_pooled_and_time_tokens_masking_padding_and_absent_leads(encoder):
    ecg = plugin(encoder=encoder, width=32, depth=2, heads=4, sampling_rate=100.0, seconds=10.0, min_seconds=2.0)
    evaluation = ecg.transforms(train=False)
    batch = ecg.collate([evaluation(synthetic_at(ecg, 10.0)), evaluation(synthetic_at(ecg, 4.0))])["ecg"]
    model = ecg.build_encoder().eval()
    output = model(batch)
    assert output.pooled.shape == (2, 32) and output.tokens.shape[0] == 2 and output.tokens.shape[2] == 32
    assert output.token_mask[0].all() and not output.token_mask[1].all() and output.token_mask[1].any()
    # An absent lead's samples never matter: change them and the output stays the same.
    changed = {key: value.clone() for key, value in batch.items()}
    changed["lead_mask"][:, 3] = False
    reference = model(changed).pooled
    changed["signal"][:, 3] = torch.randn_like(changed["signal"][:, 3])
    assert torch.allclose(model(changed).pooled, reference, atol=1e-5)


def test_preprocess_state_round_trip_and_compatibility_check():
    ecg = plugin(sampling_rate=100.0)
    state = json.loads(json.dumps(ecg.preprocess_state()))
    plugin(sampling_rate=100.0).load_preprocess_state(state)
    with pytest.raises(ValueError, match="fingerprint"):
        plugin(sampling_rate=250.0).load_preprocess_state(state)
    sample = ecg.synthetic(1)[0]
    ecg.check_compatible(sample["ecg_meta"])
    with pytest.raises(ModalityError) as error:
        plugin(sampling_rate=250.0).check_compatible(sample["ecg_meta"])
    assert error.value.reason == "preprocessing_mismatch"


# --- synthetic dataset and pretraining -------------------------------------------------------------------------------
def test_synthetic_writer_cli_and_a_few_pretraining_steps(tmp_path, capsys):
    from medclip import config
    from medclip.eval.prompts import read_prompt_set
    from modalities.ecg.synthetic import PROMPTS_FILE, main
    from recipes.pretrain import Config as PretrainConfig
    from recipes.pretrain import pretrain

    assert main(["--out", str(tmp_path / "data"), "--n", "24", "--seed", "1"]) == 0
    assert "manifest.csv" in capsys.readouterr().out
    import pandas as pd

    table = pd.read_csv(tmp_path / "data" / "manifest.csv")
    rhythms = ["sinus_rhythm", "sinus_bradycardia", "sinus_tachycardia", "atrial_fibrillation"]
    assert [c for c in table.columns if c.startswith("label:")] == [f"label:{rhythm}" for rhythm in rhythms]
    assert (table[[f"label:{rhythm}" for rhythm in rhythms]].sum(axis=1) == 1).all()
    prompts = read_prompt_set(tmp_path / "data" / PROMPTS_FILE)
    assert list(prompts.findings) == rhythms
    first = (tmp_path / "data" / table["report"][0]).read_text()
    rhythm = next(r for r in rhythms if table[f"label:{r}"][0] == 1)
    assert rhythm.replace("_", " ") in first.lower()

    recipe = REPOSITORY / "recipes" / "configs" / "ecg_report_pretrain.yaml"
    experiment = config.load(
        PretrainConfig,
        recipe,
        [
            f"data.manifest={tmp_path / 'data' / 'manifest.csv'}",
            f"out={tmp_path / 'run'}",
            f"modalities.ecg.cache_dir={tmp_path / 'cache'}",
            "modalities.ecg.width=16",
            "modalities.ecg.depth=2",
            "modalities.report.width=16",
            "modalities.report.layers=1",
            "modalities.report.heads=2",
            "modalities.report.vocab_size=200",
            "model.embed_dim=16",
            "train.steps=3",
            "train.batch_size=8",
            "train.warmup_steps=1",
            "train.log_every=1",
            "train.progress=false",
        ],
    )
    result = pretrain(experiment)
    assert np.isfinite(result.metrics["loss"])
    assert result.summary["skipped_rows"] == 0
    assert (result.checkpoint / "model.safetensors").is_file()
    saved = json.loads((result.checkpoint / "preprocess.json").read_text())["modalities"]["ecg"]
    assert saved["fingerprint"]["sampling_rate"] == 100.0 and saved["fingerprint"]["leads"] == list(STANDARD_LEADS)
    assert list((tmp_path / "cache").rglob("*.ecg"))
    model = medclip.load_model(result.checkpoint)
    assert model.preprocess.modalities["ecg"].config.sampling_rate == 100.0
    record = model.preprocess.load("ecg", tmp_path / "data" / table["ecg"][0])
    embedding = model.encode("ecg", model.preprocess([record])["ecg"])
    assert embedding.shape == (1, 16) and torch.isfinite(embedding).all()
