"""Real ECG files for the robustness tests and the crafted inputs, written by their own libraries (wfdb, pydicom,
pyedflib, NumPy, csv): small sine records, plus helpers that change one header field the way a broken or hostile
file would."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

TWELVE_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def sine_leads(leads: int, seconds: float, rate: float, amplitude: float = 1.0) -> np.ndarray:
    """(T, C) distinct sines per channel (1 mV by default), so a channel mix-up cannot pass."""
    time = np.arange(round(seconds * rate)) / rate
    return np.stack([amplitude * np.sin(2 * np.pi * (1.0 + 0.5 * c) * time + c) for c in range(leads)], axis=1)


def write_wfdb(
    folder: Path,
    name: str,
    signal: np.ndarray,
    names: Sequence[str] = TWELVE_LEADS,
    units: str = "mV",
    rate: float = 500.0,
    fmt: str = "16",
    gain: float = 1000.0,
) -> Path:
    """A single-segment WFDB record (header + one .dat) written by ``wfdb.wrsamp``; returns the header's path."""
    import wfdb

    channels = signal.shape[1]
    wfdb.wrsamp(
        name,
        fs=rate,
        units=[units] * channels,
        sig_name=list(names),
        p_signal=signal,
        fmt=[fmt] * channels,
        adc_gain=[gain] * channels,
        baseline=[0] * channels,
        write_dir=str(folder),
    )
    return folder / f"{name}.hea"


def set_record_field(header: Path, index: int, value: str) -> Path:
    """Replace field ``index`` of the header's record line (0 name, 1 signals, 2 sampling frequency, 3 samples)."""
    lines = header.read_text().splitlines()
    fields = lines[0].split()
    fields[index] = value
    header.write_text("\n".join([" ".join(fields), *lines[1:]]) + "\n")
    return header


def drop_record_fields(header: Path, keep: int) -> Path:
    """Keep only the first ``keep`` fields of the record line (WFDB lets a header omit the rate and length)."""
    lines = header.read_text().splitlines()
    header.write_text("\n".join([" ".join(lines[0].split()[:keep]), *lines[1:]]) + "\n")
    return header


def write_array(path: Path, array: np.ndarray, **sidecar) -> Path:
    """A ``.npy`` ECG with an optional JSON sidecar (sampling_rate, units, leads, layout)."""
    np.save(path, array)
    if sidecar:
        path.with_suffix(".json").write_text(json.dumps(sidecar))
    return path


def write_csv(path: Path, signal: np.ndarray, names: Sequence[str] = TWELVE_LEADS) -> Path:
    """A CSV ECG: a header row of lead names, one row per sample."""
    rows = [",".join(names), *(",".join(f"{value:.6f}" for value in row) for row in signal)]
    path.write_text("\n".join(rows) + "\n")
    return path


def write_dicom(
    path: Path,
    signal_uv: np.ndarray,
    rate: float | str = 500.0,
    names: Sequence[str] = TWELVE_LEADS,
    sensitivity: float | str = 2.5,
) -> Path:
    """A DICOM 12-lead ECG waveform (one RHYTHM group, 16-bit signed samples in microvolts) written by pydicom."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.9.1.1"  # 12-lead ECG Waveform Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "ECG"
    group = Dataset()
    group.MultiplexGroupLabel = "RHYTHM"
    group.SamplingFrequency = rate
    group.NumberOfWaveformChannels = signal_uv.shape[1]
    group.NumberOfWaveformSamples = signal_uv.shape[0]
    group.WaveformBitsAllocated = 16
    group.WaveformSampleInterpretation = "SS"
    channels = []
    for name in names:
        channel, source, unit = Dataset(), Dataset(), Dataset()
        source.CodeMeaning = name
        channel.ChannelSourceSequence = [source]
        channel.ChannelSensitivity = sensitivity
        unit.CodeValue = "uV"
        channel.ChannelSensitivityUnitsSequence = [unit]
        channels.append(channel)
    group.ChannelDefinitionSequence = channels
    stored = np.clip(np.round(signal_uv / float(sensitivity) if sensitivity else signal_uv), -32768, 32767)
    group.WaveformData = stored.astype("<i2").tobytes()
    dataset.WaveformSequence = [group]
    dataset.save_as(path, enforce_file_format=True)
    return path


def write_edf(path: Path, signal: np.ndarray, labels: Sequence[str], rate: int = 250, unit: str = "uV") -> Path:
    """An EDF+ file written by pyedflib, one signal per label (``signal`` in ``unit``)."""
    import pyedflib

    writer = pyedflib.EdfWriter(str(path), len(labels), file_type=pyedflib.FILETYPE_EDFPLUS)
    headers = [
        {
            "label": label,
            "dimension": unit,
            "sample_frequency": rate,
            "physical_max": 5000.0,
            "physical_min": -5000.0,
            "digital_max": 32767,
            "digital_min": -32768,
        }
        for label in labels
    ]
    writer.setSignalHeaders(headers)
    writer.writeSamples([np.ascontiguousarray(signal[:, index]) for index in range(len(labels))])
    writer.close()
    return path
