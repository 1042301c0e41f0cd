"""The standard 12-lead order, lead-name aliases, and arranging any record's channels into that order.

ECG carts, archives and file formats name leads differently ("II", "Lead II", "MDC_ECG_LEAD_II", "ECG II", "EKG_II",
"C1" for V1 in European labelling, "aVR, augmented voltage, right arm" in DICOM code meanings). ``canonical_lead``
reduces a name to one of ``STANDARD_LEADS`` or None, and ``arrange_leads`` reorders a record's channels into the
configured order: absent leads become zero rows with ``lead_mask`` False, so a 3-lead Holter strip and a 12-lead
resting ECG produce inputs of the same shape, and the encoders know which rows are real.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from medclip.types import ModalityError

STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

# Normalised spelling (lower case, letters and digits only, prefixes removed) -> standard lead.
_LIMB_SPELLINGS: dict[str, str] = {
    "i": "I",
    "ii": "II",
    "iii": "III",
    "1": "I",
    "2": "II",
    "3": "III",
    "avr": "aVR",
    "avl": "aVL",
    "avf": "aVF",
}
_CHEST_SPELLINGS: dict[str, str] = {f"v{index}": f"V{index}" for index in range(1, 7)}
LEAD_ALIASES: dict[str, str] = {
    **{lead.lower(): lead for lead in STANDARD_LEADS},
    **_LIMB_SPELLINGS,
    "lead1": "I",
    "lead2": "II",
    "lead3": "III",
    "augmentedvoltagerightarm": "aVR",
    "augmentedvoltageleftarm": "aVL",
    "augmentedvoltageleftleg": "aVF",
    "augmentedvoltagefoot": "aVF",
    **{f"c{index}": f"V{index}" for index in range(1, 7)},  # European chest-lead labels C1-C6
    **{f"chest{index}": f"V{index}" for index in range(1, 7)},
    # Einthoven leads in French, Spanish, Portuguese, Italian notation (derivation I, II, III): DI, DII, DIII, D1-D3.
    **{f"d{key}": lead for key, lead in _LIMB_SPELLINGS.items() if lead in ("I", "II", "III")},
    # Mason-Likar limb leads (limb electrodes moved to the torso, the standard placement of Holter, exercise and
    # monitoring 12-lead ECGs; MIT-BIH's "MLII"): the same lead with slightly different amplitudes and axis.
    **{f"ml{key}": lead for key, lead in _LIMB_SPELLINGS.items()},
    # Modified chest leads named after the precordial position they record ("MV1" in the Long-Term ST database,
    # "MLV1"); MIT-BIH writes the same modified leads plainly as "V1", "V5".
    **{f"m{key}": lead for key, lead in _CHEST_SPELLINGS.items()},
    **{f"ml{key}": lead for key, lead in _CHEST_SPELLINGS.items()},
}

# Names that look like leads but are not a standard lead, refused on purpose (left unmapped, counted in
# ``unmapped_channels``; a record with nothing else is ``no_known_leads``). ``ECGConfig.lead_aliases`` maps them when
# the user knows what the recorder put there. Pattern over the normalised spelling -> why it is refused (docs/ecg.md).
REFUSED_LEAD_NAMES: dict[str, str] = {
    r"(?:ecg|ekg|ch|chan|channel|signal|sig)\d+": "an amplifier channel number: the electrodes are not in the name",
    r"c[mcsb]\d|cm[a-z]?\d": "a bipolar chest lead (CM5, CC5, CS5, CB5): not referenced to Wilson's terminal",
    r"mcl\d": "a modified chest lead with the left arm as reference (MCL1, MCL6): bipolar, not V1-V6",
    r"(?:es|as|ai)": "an EASI lead: the 12 leads are derived from it with a vendor matrix, not recorded",
    r"v[7-9]|v[1-6]r|v\d+r|vr\d": "a posterior or right-sided chest lead: not one of the 12 standard leads",
}
_REFUSED = [re.compile(pattern) for pattern in REFUSED_LEAD_NAMES]

# Prefixes vendors put before the lead name; removed (after lower-casing) before the alias lookup.
_PREFIXES = ("mdceclead", "mdcecglead", "ecglead", "ekglead", "lead", "ecg", "ekg")
_PARENTHESES = re.compile(r"\(.*?\)")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")


def lead_name_key(name: str) -> str:
    """A channel name's normalised spelling: lower case, letters and digits only ("V1 " / "v1" / "V-1" -> "v1")."""
    return _NOT_ALNUM.sub("", _PARENTHESES.sub("", str(name)).lower())


def canonical_lead(name: str, extra_aliases: Mapping[str, str] | None = None) -> str | None:
    """The standard lead a channel name means, or None when it is not one of the 12 leads (e.g. "Resp", "Pleth").

    Examples: "Lead II" -> "II", "MDC_ECG_LEAD_aVR" -> "aVR", "ECG V1" -> "V1", "C4" -> "V4", "MLII" -> "II",
    "MV5" -> "V5", "DII" -> "II", "I (Einthoven)" -> "I", "aVL, augmented voltage, left arm" -> "aVL";
    "ECG1", "CM5", "MCL1" -> None (``REFUSED_LEAD_NAMES``). ``extra_aliases`` (name -> standard lead, from
    ``ECGConfig.lead_aliases``) are looked up first.
    """
    text = _PARENTHESES.sub("", str(name)).lower()
    if extra_aliases:
        user = {lead_name_key(alias): lead for alias, lead in extra_aliases.items()}
        for candidate in (text, text.split(",", 1)[0]):
            if _NOT_ALNUM.sub("", candidate) in user:
                return user[_NOT_ALNUM.sub("", candidate)]
    candidates = [text, text.split(",", 1)[0]]  # DICOM meanings: "aVR, augmented voltage, right arm"
    for candidate in candidates:
        key = _NOT_ALNUM.sub("", candidate)
        if any(pattern.fullmatch(key) for pattern in _REFUSED):
            return None
        for prefix in _PREFIXES:
            if key.startswith(prefix) and key[len(prefix) :] in LEAD_ALIASES:
                key = key[len(prefix) :]
                break
        if key in LEAD_ALIASES:
            return LEAD_ALIASES[key]
    return None


@dataclass(frozen=True)
class LeadLayout:
    """Where each channel of a record goes in the configured lead order.

    Attributes:
        source_channels: (M,) channel indices of the record that map to a configured lead.
        target_rows: (M,) their rows in the configured order.
        lead_mask: (L,) bool, True for the configured leads the record has.
        unmapped_channels: how many of the record's channels are not configured leads (dropped, counted in metadata).
    """

    source_channels: np.ndarray
    target_rows: np.ndarray
    lead_mask: np.ndarray
    unmapped_channels: int


def lead_layout(
    channel_names: Sequence[str], leads: Sequence[str] = STANDARD_LEADS, extra_aliases: Mapping[str, str] | None = None
) -> LeadLayout:
    """Match a record's channel names to ``leads`` (``extra_aliases``: the user's name -> lead mapping).

    Raises:
        ModalityError: ``duplicate_lead`` when two channels name the same lead (which one is real is unknowable), or
            ``no_known_leads`` when no channel is one of ``leads``.
    """
    rows = {lead: row for row, lead in enumerate(leads)}
    source, target, seen = [], [], {}
    unmapped = 0
    for channel, name in enumerate(channel_names):
        lead = canonical_lead(name, extra_aliases)
        if lead is None or lead not in rows:
            unmapped += 1
            continue
        if lead in seen:
            raise ModalityError("duplicate_lead", f"channels {seen[lead]} and {channel} both hold lead {lead}")
        seen[lead] = channel
        source.append(channel)
        target.append(rows[lead])
    if not source:
        raise ModalityError(
            "no_known_leads",
            f"none of the record's {len(channel_names)} channel names is one of the leads {', '.join(leads)}",
        )
    mask = np.zeros(len(leads), dtype=bool)
    mask[target] = True
    return LeadLayout(np.asarray(source), np.asarray(target), mask, unmapped)


def arrange_leads(signal: np.ndarray, layout: LeadLayout, n_leads: int) -> np.ndarray:
    """(C, T) channels in file order -> (L, T) in the configured lead order, zero rows for absent leads."""
    arranged = np.zeros((n_leads, signal.shape[1]), dtype=signal.dtype)  # (L, T)
    arranged[layout.target_rows] = signal[layout.source_channels]
    return arranged
