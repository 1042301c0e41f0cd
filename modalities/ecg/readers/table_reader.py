"""Plain arrays: CSV tables and NumPy ``.npy`` files, with the sampling rate from the manifest or a sidecar.

These formats carry no sampling rate, so it comes from the manifest cell (``ecg/rec.csv#fs=500``) or from a JSON
sidecar next to the file (``ecg/rec.json``: ``{"sampling_rate": 500, "units": "uV", "leads": [...], "layout":
"time_by_lead"}``); when both give one they must agree. Units come from the cell (``#units=uV``) or the sidecar; a
record whose unit is given nowhere uses the plugin's ``default_units``, blank by default, so that such a record is an
``unknown_units`` error rather than a guess.

- CSV: a header row of lead names, then one row per sample (columns not naming a lead, e.g. ``time``, are ignored).
- NumPy: a 2-D array, (T, C) by default (``"layout": "lead_by_time"`` for (C, T)); lead names from the sidecar's
  ``leads``, else the standard 12-lead order when the array has 12 channels.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from medclip.types import ModalityError

from ..leads import STANDARD_LEADS
from ..record import RawRecord
from . import Reader, ReadOptions

SIDECAR_KEYS = {"sampling_rate", "units", "leads", "layout"}
LAYOUTS = ("time_by_lead", "lead_by_time")


def sidecar_path(path: Path) -> Path:
    return path.with_suffix(".json")


def read_sidecar(path: Path) -> dict[str, Any]:
    """The JSON sidecar of ``path`` (empty when there is none); unknown keys are an error, never ignored."""
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return {}
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModalityError("bad_sidecar", f"ECG sidecar JSON could not be read ({type(error).__name__})") from None
    if not isinstance(data, dict):
        raise ModalityError("bad_sidecar", "ECG sidecar JSON must hold an object")
    unknown = sorted(set(data) - SIDECAR_KEYS)
    if unknown:
        raise ModalityError("bad_sidecar", f"ECG sidecar has unknown keys {unknown}; known: {sorted(SIDECAR_KEYS)}")
    return data


def sampling_rate_of(options: ReadOptions, sidecar: dict[str, Any]) -> float:
    """The sampling rate from the manifest and/or sidecar.

    Raises:
        ModalityError: ``missing_sampling_rate`` or ``conflicting_sampling_rate``.
    """
    given = options.sampling_rate
    side = sidecar.get("sampling_rate")
    if side is not None:
        try:
            side = float(side)
        except (TypeError, ValueError):
            raise ModalityError("bad_sidecar", "ECG sidecar sampling_rate is not a number") from None
    if given is not None and side is not None and not math.isclose(given, side):
        raise ModalityError(
            "conflicting_sampling_rate", f"the manifest says {given:g} Hz but the sidecar says {side:g} Hz"
        )
    rate = given if given is not None else side
    if rate is None or not math.isfinite(rate) or rate <= 0:
        raise ModalityError(
            "missing_sampling_rate",
            "CSV/NumPy ECGs need a sampling rate: add #fs=<Hz> to the manifest cell or a JSON sidecar",
        )
    return float(rate)


def units_of(options: ReadOptions, sidecar: dict[str, Any]) -> str:
    given, side = options.units, sidecar.get("units")
    if given is not None and side is not None and given != side:
        raise ModalityError("conflicting_units", "the manifest and the sidecar give different units")
    return str(given if given is not None else side if side is not None else "")


def sidecar_files(path: Path) -> list[Path]:
    sidecar = sidecar_path(path)
    return [path, sidecar] if sidecar.is_file() else [path]


def read_csv(path: Path, options: ReadOptions) -> RawRecord:
    """A CSV table: header row of channel names, one row per sample."""
    if not path.is_file():
        raise ModalityError("missing_file", "CSV file does not exist")
    sidecar = read_sidecar(path)
    rate = sampling_rate_of(options, sidecar)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle))
        values = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)  # (T, C)
    except StopIteration:
        raise ModalityError("unreadable", "CSV file is empty") from None
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise ModalityError("unreadable", f"CSV file could not be parsed as numbers ({type(error).__name__})") from None
    if values.shape[1] != len(header):
        raise ModalityError(
            "header_data_mismatch", f"CSV header names {len(header)} columns but rows hold {values.shape[1]}"
        )
    unit = units_of(options, sidecar)
    return RawRecord(
        signal=np.ascontiguousarray(values.T),  # (C, T)
        channel_names=[name.strip() for name in header],
        units=[unit] * len(header),
        sampling_rate=rate,
        source_format="csv",
    )


def read_numpy(path: Path, options: ReadOptions) -> RawRecord:
    """A 2-D ``.npy`` array (never a pickled object array)."""
    if not path.is_file():
        raise ModalityError("missing_file", "NumPy file does not exist")
    sidecar = read_sidecar(path)
    rate = sampling_rate_of(options, sidecar)
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ModalityError("unreadable", f"NumPy file could not be read ({type(error).__name__})") from None
    if values.ndim != 2 or not np.issubdtype(values.dtype, np.number):
        raise ModalityError("unreadable", f"NumPy ECG must be a 2-D numeric array, got {values.ndim}-D {values.dtype}")
    layout = sidecar.get("layout", "time_by_lead")
    if layout not in LAYOUTS:
        raise ModalityError("bad_sidecar", f"ECG sidecar layout must be one of {LAYOUTS}")
    signal = values.T if layout == "time_by_lead" else values  # (C, T)
    leads = sidecar.get("leads")
    if leads is None:
        if signal.shape[0] != len(STANDARD_LEADS):
            raise ModalityError(
                "missing_leads",
                f"NumPy ECG has {signal.shape[0]} channels: name them in the sidecar's 'leads' "
                "(only 12-channel arrays default to the standard order)",
            )
        leads = list(STANDARD_LEADS)
    if not isinstance(leads, list) or len(leads) != signal.shape[0]:
        raise ModalityError(
            "header_data_mismatch", f"ECG sidecar names {len(leads)} leads but the array has {signal.shape[0]}"
        )
    unit = units_of(options, sidecar)
    return RawRecord(
        signal=np.ascontiguousarray(signal, dtype=np.float64),
        channel_names=[str(name) for name in leads],
        units=[unit] * signal.shape[0],
        sampling_rate=rate,
        source_format="numpy",
    )


CSV_READER = Reader(name="csv", read=read_csv, source_files=sidecar_files)
NUMPY_READER = Reader(name="numpy", read=read_numpy, source_files=sidecar_files)
READERS = {".csv": CSV_READER, ".npy": NUMPY_READER}
