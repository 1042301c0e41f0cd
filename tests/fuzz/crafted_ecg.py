"""Crafted ECG inputs (issue 14): special files where records are expected, sampling rates that hang or explode
resampling, declared sizes over the budget, values that overflow or are complex, Holter lead names, hostile sidecars
and tables. Each is written by the format's own writer (wfdb, NumPy, pydicom, pyedflib, plain text)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from tests.fuzz.crafted import LOADS, Crafted
from tests.modalities.ecg.writers import (
    set_record_field,
    sine_leads,
    write_array,
    write_dicom,
    write_edf,
    write_wfdb,
)

SMALL_BUDGET = {"max_decoded_mb": 1.0}


def _fifo(path: Path) -> Path:
    if not path.exists():
        os.mkfifo(path)
    return path


def _link(path: Path, target: str) -> Path:
    if not path.is_symlink():
        path.symlink_to(target)
    return path


def _header_only(root: Path, name: str, signal: np.ndarray) -> Path:
    """A record's header in ``root``, its signal file left out (written aside: the caller puts a special file in its
    place, and rebuilding the cases must never write into that FIFO)."""
    aside = root / "aside"
    aside.mkdir(exist_ok=True)
    header = write_wfdb(aside, name, signal)
    (root / header.name).write_bytes(header.read_bytes())
    return root / header.name


def _wfdb_with_rate(root: Path, name: str, rate_text: str) -> str:
    header = write_wfdb(root, name, sine_leads(12, 10.0, 500.0))
    return set_record_field(header, 2, rate_text).name


def cases(root: Path) -> list[Crafted]:
    found: list[Crafted] = []
    ten_seconds = sine_leads(12, 10.0, 500.0)

    # --- special files where a record, its data or its sidecar is expected (would block or never end) ------------
    write_wfdb(root, "good", ten_seconds)
    found.append(Crafted("ecg_good_wfdb", "ecg", "good.hea", (LOADS,)))
    _fifo(root / "fifo_header.hea")
    found.append(Crafted("ecg_fifo_header", "ecg", "fifo_header.hea", ("not_regular_file",), seconds=10))
    _header_only(root, "fifo_data", ten_seconds)
    _fifo(root / "fifo_data.dat")
    found.append(Crafted("ecg_fifo_signal_file", "ecg", "fifo_data.hea", ("not_regular_file",), seconds=10))
    found.append(
        Crafted(
            "ecg_fifo_signal_file_cached",
            "ecg",
            "fifo_data.hea",
            ("not_regular_file",),
            options={"cache_dir": str(root / "cache")},
            seconds=10,
        )
    )
    _header_only(root, "zero_data", ten_seconds)
    _link(root / "zero_data.dat", "/dev/zero")
    found.append(Crafted("ecg_dev_zero_signal_file", "ecg", "zero_data.hea", ("not_regular_file",), seconds=10))
    _link(root / "urandom.csv", "/dev/urandom")
    found.append(Crafted("ecg_dev_urandom_csv", "ecg", "urandom.csv#fs=500&units=mV", ("not_regular_file",)))
    _fifo(root / "fifo.npy")
    found.append(Crafted("ecg_fifo_npy", "ecg", "fifo.npy#fs=500&units=mV", ("not_regular_file",), seconds=10))
    write_array(root / "fifo_sidecar.npy", ten_seconds)
    _fifo(root / "fifo_sidecar.json")
    found.append(Crafted("ecg_fifo_sidecar", "ecg", "fifo_sidecar.npy#fs=500", ("not_regular_file",), seconds=10))
    _link(root / "zero.dcm", "/dev/zero")
    found.append(Crafted("ecg_dev_zero_dicom", "ecg", "zero.dcm", ("not_regular_file",), seconds=10))
    _fifo(root / "fifo.edf")
    found.append(Crafted("ecg_fifo_edf", "ecg", "fifo.edf", ("not_regular_file",), seconds=10))

    # --- sampling rates: read from the header text, inside the plausible range ------------------------------------
    for label, text in [("half_hz", "0.5"), ("hundredth_hz", "0.01"), ("nan", "nan"), ("inf", "inf")]:
        cell = _wfdb_with_rate(root, f"rate_{label}", text)
        found.append(Crafted(f"ecg_rate_{label}", "ecg", cell, ("implausible_sampling_rate",)))
    for label, text in [("negative", "-250"), ("1e12", "1e12")]:
        cell = _wfdb_with_rate(root, f"rate_{label}", text)
        found.append(Crafted(f"ecg_rate_{label}", "ecg", cell, ("implausible_sampling_rate",)))
    found.append(Crafted("ecg_rate_not_a_number", "ecg", _wfdb_with_rate(root, "rate_word", "fast"), ("bad_header",)))
    write_dicom(root / "rate_nan.dcm", 1000.0 * ten_seconds, rate="NaN")
    found.append(Crafted("ecg_dicom_rate_nan", "ecg", "rate_nan.dcm", ("implausible_sampling_rate",)))
    write_array(root / "slow.npy", sine_leads(12, 60.0, 50.0)[::100], sampling_rate=0.5, units="mV")
    found.append(Crafted("ecg_sidecar_rate_half_hz", "ecg", "slow.npy", ("implausible_sampling_rate",)))
    write_edf(root / "slow.edf", 1000.0 * sine_leads(2, 20.0, 10.0), ["ECG I", "ECG II"], rate=10)
    found.append(Crafted("ecg_edf_rate_10_hz", "ecg", "slow.edf", ("implausible_sampling_rate",)))

    # --- sizes: as declared and once resampled, against max_decoded_mb ----------------------------------------------
    write_wfdb(root, "low_rate", sine_leads(12, 20.0, 50.0), rate=50.0)  # 96 KB read, 960 KB once resampled
    found.append(Crafted("ecg_resampled_over_budget", "ecg", "low_rate.hea", ("too_large",), {"max_decoded_mb": 0.5}))
    declared = set_record_field(write_wfdb(root, "declared", ten_seconds), 3, str(2_000_000_000))
    found.append(Crafted("ecg_declared_samples_over_budget", "ecg", declared.name, ("too_large",)))
    np.save(root / "huge_shape.npy", np.zeros((10, 12)))
    _rewrite_npy_shape(root / "huge_shape.npy", (1_000_000_000, 12))
    found.append(
        Crafted("ecg_npy_declares_huge_shape", "ecg", "huge_shape.npy#fs=500&units=mV", ("header_data_mismatch",))
    )
    found.append(Crafted("ecg_good_within_small_budget", "ecg", "good.hea", (LOADS,), SMALL_BUDGET))

    # --- values: checked in millivolts, real numbers only -----------------------------------------------------------
    overflow = ten_seconds.copy()
    overflow[100, 2] = 1e308  # finite in volts, infinite in millivolts
    write_array(root / "overflow.npy", overflow, sampling_rate=500, units="V")
    found.append(Crafted("ecg_volts_overflow", "ecg", "overflow.npy", ("non_finite",)))
    huge = ten_seconds * 1e-3
    huge[100, 2] = 1e300
    write_array(root / "huge.npy", huge, sampling_rate=500, units="V")
    found.append(Crafted("ecg_volts_implausible", "ecg", "huge.npy", ("implausible_amplitude",)))
    write_array(root / "complex.npy", ten_seconds + 1j * ten_seconds, sampling_rate=500, units="mV")
    found.append(Crafted("ecg_complex_samples", "ecg", "complex.npy", ("complex_values",)))
    write_wfdb(root, "loud", ten_seconds * 30000.0, gain=0.001)  # +-30 V physical
    found.append(Crafted("ecg_wfdb_gain_implausible", "ecg", "loud.hea", ("implausible_amplitude",)))

    # --- lead names: Holter spellings mapped, channel numbers refused ---------------------------------------------
    write_wfdb(root, "mitbih", sine_leads(1, 10.0, 360.0), names=["MLII"], rate=360.0, fmt="212", gain=200.0)
    found.append(Crafted("ecg_mit_bih_mlii_only", "ecg", "mitbih.hea", (LOADS,)))
    write_wfdb(root, "numbered", sine_leads(2, 10.0, 250.0), names=["ECG1", "ECG2"], rate=250.0)
    found.append(Crafted("ecg_channel_numbers_not_guessed", "ecg", "numbered.hea", ("no_known_leads",)))

    # --- hostile tables and sidecars ---------------------------------------------------------------------------------
    (root / "long_field.csv").write_text("I," + "x" * 300_000 + "\n0.1,0.2\n")
    found.append(Crafted("ecg_csv_oversized_header_field", "ecg", "long_field.csv#fs=500&units=mV", ("bad_header",)))
    write_array(root / "nested.npy", ten_seconds)
    (root / "nested.json").write_text("[" * 100_000 + "]" * 100_000)
    found.append(Crafted("ecg_sidecar_nested_json", "ecg", "nested.npy#fs=500&units=mV", ("bad_sidecar",)))
    write_array(root / "leads_number.npy", ten_seconds)
    (root / "leads_number.json").write_text(json.dumps({"sampling_rate": 500, "units": "mV", "leads": 12}))
    found.append(Crafted("ecg_sidecar_leads_not_a_list", "ecg", "leads_number.npy", ("bad_sidecar",)))
    return found


def _rewrite_npy_shape(path: Path, shape: tuple[int, ...]) -> None:
    """Change the shape a ``.npy`` header declares, keeping the header's length (its space padding absorbs the
    longer text) and the data untouched."""
    data = path.read_bytes()
    header_end = data.index(b"\n") + 1
    old, new = str(tuple(np.load(path).shape)).encode(), str(shape).encode()
    header = data[: header_end - 1].replace(old, new).rstrip(b" ")
    assert len(header) < header_end - 1, "not enough padding in the .npy header"
    path.write_bytes(header + b" " * (header_end - 1 - len(header)) + b"\n" + data[header_end:])
