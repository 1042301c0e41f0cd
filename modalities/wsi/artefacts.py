"""What lies on glass but is not tissue, told apart by colour: marker ink and dark debris.

Colours here are optical densities (OD, ``-log10(I / glass)`` per RGB channel), which add up when dyes overlap and
scale with their amount, so the *share* of each channel in a pixel's OD (its OD fractions r + g + b = 1) names the
dye whatever its strength. The histology stains all absorb green light at least as strongly as red light:
haematoxylin (fractions about 0.40 / 0.43 / 0.18), eosin (0.06 / 0.84 / 0.09), DAB (0.17 / 0.35 / 0.48) and their
mixtures (Ruifrok & Johnston's stain vectors; measured H&E and IHC tissue lie at 0.24 / 0.48 / 0.28 and
0.23 / 0.32 / 0.44). Marker inks and debris do not:

- ``blue_or_green_ink``: absorbs red light more than green (blue and green markers, navy included), which no stain
  does; haematoxylin comes closest and still absorbs green slightly more than red;
- ``red_ink``: absorbs green and blue about equally and red little (red markers); eosin passes blue and DAB
  absorbs red too. An eosin + DAB counterstain mixture can look the same (a documented limit);
- ``black_ink_or_debris``: dark and grey (all channels alike): black markers, dirt, charred or pigmented flecks.
  Pale grey is not refused: pale IHC stroma is nearly grey too, and only its low density tells it from black ink.

Each rule maps a pixel's OD fractions (red, green, blue shares: arrays of one shape) and its total OD to a bool
mask; ``WSI_ARTEFACTS`` is the registry the tissue detector applies. Ink is dense: every rule asks for a minimum total
OD, so pale tissue never matches.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from medclip.registry import Registry

INK_MIN_DENSITY = 0.4  # total OD of the palest marker stroke seen (a light blue marker at 70% strength: 0.52)
BLACK_MIN_DENSITY = 0.6  # a light black or grey marker (0.9); pale IHC stroma, nearly as grey, stays below 0.3
GREY_SPREAD = 0.1  # OD fractions within this of each other are grey; DAB + haematoxylin tissue spreads over 0.2

Rule = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (red, green, blue, total) -> mask
WSI_ARTEFACTS: Registry[Rule] = Registry("glass artefact")


@WSI_ARTEFACTS.register("blue_or_green_ink")
def blue_or_green_ink(red: np.ndarray, green: np.ndarray, blue: np.ndarray, total: np.ndarray) -> np.ndarray:
    return (red > green + 0.03) & (total > INK_MIN_DENSITY)


@WSI_ARTEFACTS.register("red_ink")
def red_ink(red: np.ndarray, green: np.ndarray, blue: np.ndarray, total: np.ndarray) -> np.ndarray:
    return (red <= 0.5 * green) & (blue >= 0.7 * green) & (blue <= 1.1 * green) & (total > INK_MIN_DENSITY)


@WSI_ARTEFACTS.register("black_ink_or_debris")
def black_ink_or_debris(red: np.ndarray, green: np.ndarray, blue: np.ndarray, total: np.ndarray) -> np.ndarray:
    spread = np.maximum(np.maximum(red, green), blue) - np.minimum(np.minimum(red, green), blue)
    return (spread < GREY_SPREAD) & (total > BLACK_MIN_DENSITY)


def artefact_mask(density: np.ndarray) -> np.ndarray:
    """(..., 3) non-negative OD -> (...) bool: True where any registered artefact rule matches."""
    density = np.asarray(density, dtype=np.float32)
    total = density[..., 0] + density[..., 1] + density[..., 2]
    scale = 1.0 / np.maximum(total, 1e-6)
    red, green, blue = density[..., 0] * scale, density[..., 1] * scale, density[..., 2] * scale  # OD fractions
    mask = np.zeros(total.shape, dtype=bool)
    for _, rule in WSI_ARTEFACTS.items():
        mask |= rule(red, green, blue, total)
    return mask
