"""EDF / EDF+ recordings (``.edf``), read with pyedflib when it is installed (``pip install medclip[ecg]``).

EDF files mix ECG leads with other channels (respiration, annotations); channels whose labels are not ECG leads are
ignored (counted in metadata). The ECG leads must share one sampling rate. The EDF patient and recording header
fields (name, birth date, hospital code) are never read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medclip.data.safe_io import require_regular_file
from medclip.registry import lazy_import
from medclip.types import ModalityError

from ..leads import canonical_lead
from ..limits import check_declared_size, check_sampling_rate
from ..record import RawRecord
from . import Reader, ReadOptions, single_file


def read_edf(path: Path, options: ReadOptions) -> RawRecord:
    """The ECG-lead channels of an EDF file in physical units.

    Raises:
        ModalityError: ``missing_file``, ``not_regular_file``, ``unreadable``, ``no_known_leads``,
            ``mixed_sampling_rates``, ``implausible_sampling_rate``, ``too_large``.
    """
    pyedflib = lazy_import("pyedflib", "reading EDF ECG recordings", package="pyedflib")
    require_regular_file(path, "EDF")  # a FIFO would block the C library's open forever
    try:
        reader = pyedflib.EdfReader(str(path))
    except Exception as error:
        raise ModalityError("unreadable", f"EDF file could not be read ({type(error).__name__})") from None
    aliases = dict(options.lead_aliases)
    try:
        labels = reader.getSignalLabels()
        channels = [index for index, label in enumerate(labels) if canonical_lead(label, aliases) is not None]
        if not channels:
            raise ModalityError("no_known_leads", f"none of the EDF file's {len(labels)} channels is an ECG lead")
        rates = {float(reader.getSampleFrequency(index)) for index in channels}
        if len(rates) != 1:
            raise ModalityError("mixed_sampling_rates", f"the EDF file's ECG leads have {len(rates)} sampling rates")
        rate = check_sampling_rate(rates.pop(), options.limits)
        lengths = {int(reader.getNSamples()[index]) for index in channels}
        if len(lengths) != 1:
            raise ModalityError("header_data_mismatch", "the EDF file's ECG leads have different sample counts")
        check_declared_size(len(channels), lengths.pop(), rate, options.limits)
        signal = np.stack([reader.readSignal(index, digital=False) for index in channels]).astype(np.float64)  # (C, T)
        units = [reader.getPhysicalDimension(index) for index in channels]
        names = [labels[index] for index in channels]
    except ModalityError:
        raise
    except Exception as error:
        raise ModalityError("unreadable", f"EDF signals could not be read ({type(error).__name__})") from None
    finally:
        reader.close()
    return RawRecord(
        signal=signal,
        channel_names=names,
        units=units,
        sampling_rate=rate,
        source_format="edf",
        ignored_channels=len(labels) - len(channels),
    )


EDF_READER = Reader(name="edf", read=read_edf, source_files=single_file)
READERS_BY_SUFFIX = {".edf": EDF_READER}
