"""DICOM waveforms: the 12-lead ECG IOD (and General ECG / Ambulatory ECG), read with pydicom.

A file holds one or more multiplex groups (``WaveformSequence`` items): typically a 10 s "RHYTHM" group and a
"MEDIAN BEAT" group. The rhythm group is used (else the longest group). Channel names come from each channel's
source code meaning ("Lead II"), units from its sensitivity units code ("uV"); raw samples become physical values
as ``sample * ChannelSensitivity * ChannelSensitivityCorrectionFactor + ChannelBaseline`` (DICOM PS3.3 C.10.9).

Only waveform attributes are read; patient, study and device tags are never looked at, copied or logged.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from medclip.data.safe_io import MEGABYTE, read_limited
from medclip.registry import lazy_import
from medclip.types import ModalityError
from modalities.dicom_quiet import quietly

from ..limits import SignalLimits, check_declared_size, check_sampling_rate
from ..record import RawRecord
from . import Reader, ReadOptions, single_file

SAMPLE_DTYPES = {(8, "SB"): np.int8, (8, "UB"): np.uint8, (16, "SS"): np.int16, (16, "US"): np.uint16}
SAMPLE_DTYPES.update({(32, "SL"): np.int32, (32, "UL"): np.uint32})
RHYTHM_LABEL = "RHYTHM"


def choose_group(groups) -> int:
    """Index of the rhythm multiplex group, or of the longest group when none is labelled so."""
    for index, group in enumerate(groups):
        if str(group.get("MultiplexGroupLabel", "")).strip().upper() == RHYTHM_LABEL:
            return index
    durations = [
        float(group.get("NumberOfWaveformSamples", 0)) / float(group.get("SamplingFrequency", 1) or 1)
        for group in groups
    ]
    durations = [duration if math.isfinite(duration) else -math.inf for duration in durations]
    return int(np.argmax(durations))


def channel_name(channel) -> str:
    """The lead a channel holds: its source code meaning, else code value, else channel label."""
    sources = channel.get("ChannelSourceSequence")
    if sources:
        source = sources[0]
        for keyword in ("CodeMeaning", "CodeValue"):
            if source.get(keyword):
                return str(source.get(keyword))
    return str(channel.get("ChannelLabel", ""))


def channel_unit(channel) -> str:
    """The sensitivity unit code ("uV", "mV"); empty when the channel has no sensitivity (raw ADC values)."""
    if "ChannelSensitivity" not in channel:
        return ""
    units = channel.get("ChannelSensitivityUnitsSequence")
    if not units:
        return ""
    return str(units[0].get("CodeValue", "") or units[0].get("CodeMeaning", ""))


def physical_samples(group, rate: float, limits: SignalLimits) -> np.ndarray:
    """(C, T) physical values of one multiplex group, after checking the declared sizes against the budget and data.

    Raises:
        ModalityError: ``bad_header``, ``unsupported_sample_type``, ``too_large`` or ``header_data_mismatch``.
    """
    required = ("NumberOfWaveformChannels", "NumberOfWaveformSamples", "WaveformBitsAllocated", "WaveformData")
    missing = [keyword for keyword in required if keyword not in group]
    if missing:
        raise ModalityError("bad_header", f"DICOM waveform group lacks {', '.join(missing)}")
    channels = int(group.NumberOfWaveformChannels)
    samples = int(group.NumberOfWaveformSamples)
    bits = int(group.WaveformBitsAllocated)
    interpretation = str(group.get("WaveformSampleInterpretation", "SS"))
    if (bits, interpretation) not in SAMPLE_DTYPES:  # values from the file: not quoted
        raise ModalityError(
            "unsupported_sample_type",
            "the DICOM waveform's sample type is not supported (8-, 16- or 32-bit signed or unsigned integers are)",
        )
    definitions = group.get("ChannelDefinitionSequence") or []
    if len(definitions) != channels:
        raise ModalityError(
            "header_data_mismatch",
            f"DICOM waveform declares {channels} channels but defines {len(definitions)}",
        )
    check_declared_size(channels, samples, rate, limits)
    data = bytes(group.WaveformData)
    expected = channels * samples * bits // 8
    if not expected <= len(data) <= expected + 1:  # one byte of padding keeps DICOM values an even length
        raise ModalityError(
            "header_data_mismatch",
            f"DICOM waveform data holds {len(data)} bytes but {channels} channels x {samples} samples need {expected}",
        )
    raw = np.frombuffer(data[:expected], dtype=SAMPLE_DTYPES[(bits, interpretation)]).reshape(samples, channels)
    physical = raw.T.astype(np.float64)  # (C, T)
    for index, channel in enumerate(definitions):
        sensitivity = float(channel.get("ChannelSensitivity", 1.0))
        correction = float(channel.get("ChannelSensitivityCorrectionFactor", 1.0))
        baseline = float(channel.get("ChannelBaseline", 0.0))
        if not (math.isfinite(sensitivity * correction) and sensitivity * correction != 0 and math.isfinite(baseline)):
            raise ModalityError(
                "bad_header", f"DICOM waveform channel {index} has a zero or non-finite sensitivity or baseline"
            )
        physical[index] = physical[index] * sensitivity * correction + baseline
    return physical


@quietly
def read_dicom(path: Path, options: ReadOptions) -> RawRecord:
    """The rhythm group of a DICOM ECG waveform file (read from a regular file within the memory budget)."""
    pydicom = lazy_import("pydicom", "reading DICOM ECG waveforms")
    data = read_limited(path, int(options.limits.max_decoded_mb * MEGABYTE), "DICOM ECG")
    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
        groups = dataset.get("WaveformSequence")
    except Exception as error:
        raise ModalityError("unreadable", f"DICOM file could not be read ({type(error).__name__})") from None
    if not groups:
        raise ModalityError("not_an_ecg", "DICOM file holds no waveform (no WaveformSequence)")
    try:  # header values that pydicom converts lazily: a malformed number raises here
        group = groups[choose_group(groups)]
        if "SamplingFrequency" not in group:
            raise ModalityError("missing_sampling_rate", "DICOM waveform group has no SamplingFrequency")
        rate = check_sampling_rate(group.SamplingFrequency, options.limits)
        signal = physical_samples(group, rate, options.limits)
        definitions = group.ChannelDefinitionSequence
        names = [channel_name(channel) for channel in definitions]
        units = [channel_unit(channel) for channel in definitions]
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError) as error:
        if isinstance(error, ModalityError):
            raise
        raise ModalityError("bad_header", f"DICOM waveform attributes are malformed ({type(error).__name__})") from None
    return RawRecord(signal=signal, channel_names=names, units=units, sampling_rate=rate, source_format="dicom")


DICOM_READER = Reader(name="dicom", read=read_dicom, source_files=single_file)
READERS_BY_SUFFIX = {".dcm": DICOM_READER}
