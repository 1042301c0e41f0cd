"""``ImageRecord``: display intensities + pixel size + the few facts about an image that may leave the reader.

Readers return an ``ImageRecord``; the plugin turns it into ``{name: array, f"{name}_meta": meta}``. As for volumes
(``modalities.volume.volume``), the metadata is built from an allow-list: nothing a reader saw in a header (names,
dates, UIDs, descriptions, file names) can reach an output unless it is named in ``IMAGE_DETAILS``, and the coded
values kept (view position, laterality) are checked against their DICOM vocabularies first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modalities.volume.volume import ALLOWED_DETAILS

# The CT allow-list plus what a 2-D reader adds. Each is a code, a count or a number: never free text from a header.
IMAGE_DETAILS = ALLOWED_DETAILS | {
    "dicom_modality",  # CR, DX, MG, OP, ... (checked against the accepted list)
    "photometric_interpretation",  # MONOCHROME1 / MONOCHROME2 / RGB / YBR_FULL_422 ...
    "inverted",  # whether the reader inverted the values (MONOCHROME1, or Presentation LUT Shape INVERSE)
    "voi",  # which display transform: "voi_lut", "window", "image_range" (no VOI in the file), "none" (not DICOM)
    "voi_function",  # LINEAR, LINEAR_EXACT, SIGMOID (windows only)
    "bits_stored",
    "spacing_source",  # "PixelSpacing", "ImagerPixelSpacing" or "none"
    "view_position",  # PA, AP, LL, ... (DICOM ViewPosition, coded)
    "laterality",  # L, R, B, U (ImageLaterality / Laterality, coded)
    "channels_present",  # multichannel: one bool per configured channel
    "color",  # "grayscale" or "rgb" as read (before conversion to the configured image type)
}

# DICOM ViewPosition defined terms (PS3.3 C.8.11.5) and laterality codes: anything else is stored as "other".
VIEW_POSITIONS = frozenset({"AP", "PA", "LL", "RL", "RLD", "LLD", "RLO", "LLO", "LATERAL", "CC", "MLO", "ML", "LM"})
LATERALITIES = frozenset({"L", "R", "B", "U"})


def coded(value: Any, vocabulary: frozenset[str]) -> str | None:
    """A coded header value if it is in ``vocabulary``, "other" if it is something else, None when absent."""
    text = str(value or "").strip().upper()
    if not text:
        return None
    return text if text in vocabulary else "other"


@dataclass
class ImageRecord:
    """One 2-D image as the reader displays it.

    Attributes:
        pixels: (C, H, W) float32 display intensities in [0, 1] (C = 1 grayscale, 3 RGB, or one per configured
            channel of a multichannel image, zeros where a channel is absent).
        spacing: (row, column) pixel size in mm, or None when the file does not say.
        source: reader kind: "dicom", "png", "jpeg", "tiff", "numpy", "synthetic".
        study_key: what identifies the study to the reader (StudyInstanceUID, resolved path); only ever stored as
            its keyed pseudonym.
        details: facts from ``IMAGE_DETAILS``.
    """

    pixels: np.ndarray
    spacing: tuple[float, float] | None
    source: str
    study_key: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.details) - IMAGE_DETAILS
        if unknown:  # a programming error, not bad input: the allow-list is the only gate to outputs
            raise ValueError(f"image details {sorted(unknown)} are not allow-listed (IMAGE_DETAILS)")
        if self.pixels.ndim != 3:
            raise ValueError(f"image pixels must be (C, H, W), got {self.pixels.ndim} axes")


def spacing_list(spacing: Sequence[float] | None) -> list[float] | None:
    return None if spacing is None else [round(float(value), 6) for value in spacing]


def image_meta(record: ImageRecord, study_pseudonym: str) -> dict[str, Any]:
    """The allow-listed metadata of a loaded (not yet preprocessed) image."""
    return {
        "shape": [int(size) for size in record.pixels.shape],
        "spacing": spacing_list(record.spacing),
        "source": record.source,
        "study_pseudonym": study_pseudonym,
        "preprocessed": None,
        **record.details,
    }
