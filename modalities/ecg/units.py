"""Physical units of ECG channels and their conversion to millivolts, the unit every model input is in.

WFDB headers, DICOM channel sensitivity units, EDF physical dimensions and sidecars spell units differently ("uV",
"µV", "microvolt", "mV"); an unknown or missing unit is an error rather than a guess, because a factor of 1000 in
amplitude silently breaks a model.
"""

from __future__ import annotations

import re

from medclip.types import ModalityError

MILLIVOLTS = "mV"

# Normalised unit spelling -> multiply by this to get millivolts.
UNIT_FACTORS: dict[str, float] = {
    "mv": 1.0,
    "millivolt": 1.0,
    "millivolts": 1.0,
    "uv": 1e-3,
    "µv": 1e-3,
    "μv": 1e-3,  # Greek mu, as some DICOM writers use it
    "microvolt": 1e-3,
    "microvolts": 1e-3,
    "nv": 1e-6,
    "nanovolt": 1e-6,
    "v": 1e3,
    "volt": 1e3,
    "volts": 1e3,
}


def millivolt_factor(unit: str | None) -> float:
    """The factor converting values in ``unit`` to millivolts.

    Raises:
        ModalityError: ``unknown_units`` for a missing or unrecognised unit.
    """
    key = re.sub(r"\s+", "", str(unit or "")).lower()
    if key not in UNIT_FACTORS:
        raise ModalityError(
            "unknown_units",
            "a channel unit is missing or not a voltage unit medclip knows (mV, uV, V, nV)",
        )
    return UNIT_FACTORS[key]


def canonical_unit(unit: str | None) -> str:
    """A known unit's conventional spelling ("microvolt" -> "uV"), for allow-listed metadata."""
    factor = millivolt_factor(unit)
    return {1.0: "mV", 1e-3: "uV", 1e-6: "nV", 1e3: "V"}[factor]
