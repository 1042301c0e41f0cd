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
import os
from pathlib import Path
from typing import Any

import numpy as np

from medclip.data.safe_io import MISSING_FILE, check_decoded_size, decoded_bytes, read_limited, require_regular_file
from medclip.types import ModalityError

from ..leads import STANDARD_LEADS
from ..limits import FLOAT64_BYTES, check_declared_size, check_real_samples, check_sampling_rate
from ..record import RawRecord
from . import Reader, ReadOptions

SIDECAR_KEYS = {"sampling_rate", "units", "leads", "layout"}
LAYOUTS = ("time_by_lead", "lead_by_time")
SIDECAR_MAX_BYTES = 1 << 20  # a sidecar is a few lines of JSON
CSV_MIN_BYTES_PER_VALUE = 2  # "0," : a CSV file of N bytes holds at most N / 2 numbers


def sidecar_path(path: Path) -> Path:
    return path.with_suffix(".json")


def read_sidecar(path: Path) -> dict[str, Any]:
    """The JSON sidecar of ``path`` (empty when there is none); unknown keys are an error, never ignored.

    Raises:
        ModalityError: ``not_regular_file`` (a FIFO or device in the sidecar's place), ``too_large`` or
            ``bad_sidecar``.
    """
    sidecar = sidecar_path(path)
    try:
        data = read_limited(sidecar, SIDECAR_MAX_BYTES, "ECG sidecar")
    except ModalityError as error:
        if error.reason == MISSING_FILE and not os.path.lexists(sidecar):
            return {}
        raise
    try:
        parsed = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ModalityError("bad_sidecar", f"ECG sidecar JSON could not be read ({type(error).__name__})") from None
    if not isinstance(parsed, dict):
        raise ModalityError("bad_sidecar", "ECG sidecar JSON must hold an object")
    unknown = set(parsed) - SIDECAR_KEYS  # key names come from the file: counted, not quoted
    if unknown:
        raise ModalityError(
            "bad_sidecar", f"ECG sidecar has {len(unknown)} unknown key(s); known: {sorted(SIDECAR_KEYS)}"
        )
    return parsed


def sampling_rate_of(options: ReadOptions, sidecar: dict[str, Any]) -> float:
    """The sampling rate from the manifest and/or sidecar, inside the plausible range.

    Raises:
        ModalityError: ``missing_sampling_rate``, ``conflicting_sampling_rate``, ``bad_sidecar`` or
            ``implausible_sampling_rate``.
    """
    given = options.sampling_rate
    side = sidecar.get("sampling_rate")
    if side is not None:
        if isinstance(side, bool) or not isinstance(side, int | float):
            raise ModalityError("bad_sidecar", "ECG sidecar sampling_rate is not a number")
        side = float(side)
    if given is not None and side is not None and not math.isclose(given, side):
        raise ModalityError("conflicting_sampling_rate", "the manifest cell and the sidecar give different rates")
    rate = given if given is not None else side
    if rate is None:
        raise ModalityError(
            "missing_sampling_rate",
            "CSV/NumPy ECGs need a sampling rate: add #fs=<Hz> to the manifest cell or a JSON sidecar",
        )
    return check_sampling_rate(rate, options.limits)


def units_of(options: ReadOptions, sidecar: dict[str, Any]) -> str:
    given, side = options.units, sidecar.get("units")
    if given is not None and side is not None and given != side:
        raise ModalityError("conflicting_units", "the manifest and the sidecar give different units")
    return str(given if given is not None else side if side is not None else "")


def lead_names_of(sidecar: dict[str, Any], channels: int) -> list[str]:
    """The sidecar's ``leads`` (one name per channel), else the standard order for 12 channels.

    Raises:
        ModalityError: ``missing_leads``, ``bad_sidecar`` (not a list of names) or ``header_data_mismatch``.
    """
    leads = sidecar.get("leads")
    if leads is None:
        if channels != len(STANDARD_LEADS):
            raise ModalityError(
                "missing_leads",
                f"NumPy ECG has {channels} channels: name them in the sidecar's 'leads' "
                "(only 12-channel arrays default to the standard order)",
            )
        return list(STANDARD_LEADS)
    if not isinstance(leads, list) or not all(isinstance(name, str) for name in leads):
        raise ModalityError("bad_sidecar", "ECG sidecar 'leads' must be a list of lead names")
    if len(leads) != channels:
        raise ModalityError(
            "header_data_mismatch", f"ECG sidecar names {len(leads)} leads but the array has {channels}"
        )
    return list(leads)


def sidecar_files(path: Path) -> list[Path]:
    """The record and its sidecar, present or not: a sidecar added later changes the record (and its cache key)."""
    return [path, sidecar_path(path)]


def read_csv(path: Path, options: ReadOptions) -> RawRecord:
    """A CSV table: header row of channel names, one row per sample."""
    info = require_regular_file(path, "CSV ECG")
    values_at_most = max(1, info.st_size // CSV_MIN_BYTES_PER_VALUE)
    check_decoded_size((values_at_most,), FLOAT64_BYTES, options.limits.max_decoded_mb, "CSV ECG once parsed")
    sidecar = read_sidecar(path)
    rate = sampling_rate_of(options, sidecar)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle))
        values = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)  # (T, C)
    except StopIteration:
        raise ModalityError("empty_file", "CSV file is empty") from None
    except UnicodeDecodeError:
        raise ModalityError("not_utf8", "CSV file is not UTF-8 text") from None
    except csv.Error as error:
        raise ModalityError("bad_header", f"CSV header row could not be parsed ({type(error).__name__})") from None
    except ValueError as error:
        message = f"CSV rows could not be parsed as numbers ({type(error).__name__})"
        raise ModalityError("not_numeric", message) from None
    except OSError as error:
        raise ModalityError("unreadable", f"CSV file could not be read ({type(error).__name__})") from None
    if values.shape[1] != len(header):
        raise ModalityError(
            "header_data_mismatch", f"CSV header names {len(header)} columns but rows hold {values.shape[1]}"
        )
    check_declared_size(values.shape[1], values.shape[0], rate, options.limits)
    unit = units_of(options, sidecar)
    return RawRecord(
        signal=np.ascontiguousarray(values.T),  # (C, T)
        channel_names=[name.strip() for name in header],
        units=[unit] * len(header),
        sampling_rate=rate,
        source_format="csv",
    )


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, byte offset of the data) from a ``.npy`` file's header, without reading its data.

    Raises:
        ModalityError: ``unreadable`` when the file is not a ``.npy`` array.
    """
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                shape, _, dtype = np.lib.format._read_array_header(handle, version)
            return tuple(int(dim) for dim in shape), np.dtype(dtype), handle.tell()
    except (OSError, ValueError, TypeError, SyntaxError) as error:
        raise ModalityError("unreadable", f"NumPy file header could not be read ({type(error).__name__})") from None


def read_numpy(path: Path, options: ReadOptions) -> RawRecord:
    """A 2-D ``.npy`` array of real numbers (never a pickled object array), checked from its header before loading."""
    size = require_regular_file(path, "NumPy ECG").st_size
    shape, dtype, offset = npy_header(path)
    if dtype.hasobject:
        raise ModalityError("unsupported_dtype", "NumPy ECG holds Python objects (pickles are never loaded)")
    check_real_samples(dtype)
    if len(shape) != 2:
        raise ModalityError("wrong_dimensions", f"NumPy ECG must be a 2-D array, got {len(shape)}-D")
    if offset + decoded_bytes(shape, dtype.itemsize) != size:
        raise ModalityError("header_data_mismatch", "NumPy ECG file size disagrees with the shape its header declares")
    sidecar = read_sidecar(path)
    rate = sampling_rate_of(options, sidecar)
    layout = sidecar.get("layout", "time_by_lead")
    if layout not in LAYOUTS:
        raise ModalityError("bad_sidecar", f"ECG sidecar layout must be one of {LAYOUTS}")
    channels, samples = shape[::-1] if layout == "time_by_lead" else shape
    check_declared_size(channels, samples, rate, options.limits)
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ModalityError("unreadable", f"NumPy file could not be read ({type(error).__name__})") from None
    signal = values.T if layout == "time_by_lead" else values  # (C, T)
    leads = lead_names_of(sidecar, signal.shape[0])
    unit = units_of(options, sidecar)
    return RawRecord(
        signal=np.ascontiguousarray(signal, dtype=np.float64),
        channel_names=leads,
        units=[unit] * signal.shape[0],
        sampling_rate=rate,
        source_format="numpy",
    )


CSV_READER = Reader(name="csv", read=read_csv, source_files=sidecar_files)
NUMPY_READER = Reader(name="numpy", read=read_numpy, source_files=sidecar_files)
READERS_BY_SUFFIX = {".csv": CSV_READER, ".npy": NUMPY_READER}
