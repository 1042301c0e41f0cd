"""Tissue detection by optical density above the slide's own glass, robust across stains and glass artefacts.

Why not saturation: stains differ in colour but all absorb light. Pale IHC stroma (a faint haematoxylin blue) and a
faded H&E section are barely coloured, so Otsu's threshold on saturation lands between the vivid DAB-brown cells and
the pale stroma and drops the stroma (30 of 63 all-tissue patches kept on a real IHC colon section); and marker ink,
the most saturated thing on a slide, passes as tissue. Optical density (OD, ``-log10(I / glass)`` per channel)
measures how much light the section absorbs, whatever the stain, relative to the glass of the same slide:

1. The thumbnail is averaged to pixels of about ``WORK_MICRONS`` (texture finer than that, such as the white gaps
   between stroma fibres, is not what decides "tissue or glass").
2. Glass colour: the median colour of the brightest pixels (within ``GLASS_BAND`` grey levels of the 99th
   percentile), so it follows the scanner's white balance; pure white (255, 255, 255) is missing data (sparse
   tiles), never glass.
3. Hysteresis on total OD: regions above ``min_density`` (pale tissue) are kept when they reach ``SEED_DENSITY``
   (clearly stained tissue) within ``GROW_MICRONS`` - faint stroma next to stained cells is tissue, a faint
   illumination gradient on empty glass is not. Both thresholds rise with the glass noise measured on the slide.
4. Connected regions made mostly (``ARTEFACT_SHARE``) of artefact colours (marker ink, dark debris; see
   ``artefacts.py``) are dropped, then regions smaller than ``MIN_OBJECT_MICRONS`` across (dust), then holes up to
   ``MAX_HOLE_MICRONS`` across are filled (lumens, gaps between fibres).

Measured on slides built from real stained images (``benchmarks/tissue.py``, docs/wsi.md): every stain at >= 90%
tissue recall with no patch on glass. Known limits: ink drawn across tissue is part of that tissue's region; a red
marker looks like an eosin + DAB mixture.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .artefacts import artefact_mask

WORK_MICRONS = 4.0  # pixel size the mask is computed at (a thumbnail finer than this is averaged down)
GLASS_BAND = 10.0  # grey levels below the 99th percentile of brightness still counted as glass
SEED_DENSITY = 0.1  # total OD (R + G + B) that only stained tissue reaches: a region must contain some
NOISE_LOW, NOISE_SEED = 3.0, 6.0  # thresholds as multiples of the glass noise, when that is higher than the floors
GROW_MICRONS = 250.0  # pale tissue counts within this distance of clearly stained tissue
ARTEFACT_SHARE = 0.5  # a region is ink or debris when at least this share of its pixels has an artefact colour
MIN_OBJECT_MICRONS = 30.0  # regions smaller than this square (dust specks) are dropped
MAX_HOLE_MICRONS = 400.0  # holes up to this square inside tissue (lumens, fibre gaps) are filled
NO_DATA = 255  # a missing (sparse) tile reads as pure white
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """(H, W, ...) -> (ceil(H / factor), ceil(W / factor), ...) mean of each ``factor`` square (edges replicated)."""
    height, width = image.shape[:2]
    padded_h, padded_w = -(-height // factor) * factor, -(-width // factor) * factor
    pad = ((0, padded_h - height), (0, padded_w - width)) + ((0, 0),) * (image.ndim - 2)
    padded = np.pad(image, pad, mode="edge")
    blocks = padded.reshape(padded_h // factor, factor, padded_w // factor, factor, *image.shape[2:])
    return blocks.mean(axis=(1, 3), dtype=np.float32)  # (h, w, ...)


def glass_colour(rgb: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(3,) float32 colour of the slide's glass: the median of the brightest valid pixels."""
    brightness = (rgb[..., 0] + rgb[..., 1] + rgb[..., 2]) / 3.0  # (h, w)
    candidates = brightness[valid] if valid.any() else brightness.ravel()
    band = valid & (brightness >= np.percentile(candidates, 99) - GLASS_BAND)
    if not band.any():
        return np.full(3, float(NO_DATA), dtype=np.float32)
    return np.median(rgb[band], axis=0).astype(np.float32)


def glass_noise(total: np.ndarray, valid: np.ndarray) -> float:
    """Standard deviation of total OD on glass, from pixels brighter than the glass colour (tissue never is)."""
    brighter = total[valid & (total < 0)]
    return float(np.sqrt(np.mean(brighter**2))) if brighter.size >= 50 else 0.0


def optical_density_mask(thumbnail: np.ndarray, pixel_microns: float | None = None, min_density: float = 0.02):
    """(h, w, 3) uint8 thumbnail -> (h, w) bool, True on tissue (see the module docstring).

    Args:
        thumbnail: the slide thumbnail.
        pixel_microns: microns per thumbnail pixel (sets the averaging and the size limits); None = take each
            pixel as ``WORK_MICRONS``.
        min_density: total OD above the glass that counts as (pale) tissue next to stained tissue.
    """
    pixel_microns = float(pixel_microns) if pixel_microns else WORK_MICRONS
    factor = max(1, int(WORK_MICRONS // pixel_microns))
    microns = pixel_microns * factor  # per working pixel
    missing = (thumbnail[..., 0] == NO_DATA) & (thumbnail[..., 1] == NO_DATA) & (thumbnail[..., 2] == NO_DATA)
    rgb = block_mean(thumbnail, factor) if factor > 1 else thumbnail.astype(np.float32)  # (h', w', 3)
    valid = (block_mean(missing[..., None], factor)[..., 0] < 0.5) if factor > 1 else ~missing
    glass = glass_colour(rgb, valid)
    density = np.log10(np.maximum(glass, 1.0) / np.maximum(rgb, 1.0))  # (h', w', 3) signed OD, glass ~ 0
    total = density[..., 0] + density[..., 1] + density[..., 2]  # (h', w')
    noise = glass_noise(total, valid)
    low, seed = max(min_density, NOISE_LOW * noise), max(SEED_DENSITY, NOISE_SEED * noise)
    seeds = valid & (total > seed)
    tissue = _hysteresis(valid & (total > low) & _near(seeds, GROW_MICRONS / microns), seeds)
    tissue = _drop_artefacts_and_dust(tissue, np.maximum(density, 0.0), microns)
    tissue = _fill_small_holes(tissue, microns)
    if factor > 1:
        tissue = np.repeat(np.repeat(tissue, factor, axis=0), factor, axis=1)  # back to the thumbnail grid
        tissue = tissue[: thumbnail.shape[0], : thumbnail.shape[1]]
    return tissue


def _near(seeds: np.ndarray, radius: float) -> np.ndarray:
    """Pixels within ``radius`` pixels (chessboard distance) of a seed pixel."""
    if not seeds.any():
        return seeds
    steps = int(radius)
    if steps <= 16:  # a few passes of a 3 x 3 dilation are cheaper than a distance transform
        return ndimage.binary_dilation(seeds, structure=EIGHT_CONNECTED, iterations=steps) if steps else seeds
    return ndimage.distance_transform_cdt(~seeds, metric="chessboard") <= steps


def _hysteresis(candidates: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The connected regions of ``candidates`` that contain a seed pixel."""
    labels, count = ndimage.label(candidates, structure=EIGHT_CONNECTED)
    seeded = np.zeros(count + 1, dtype=bool)
    seeded[np.unique(labels[seeds & candidates])] = True
    seeded[0] = False
    return seeded[labels]


def _drop_artefacts_and_dust(tissue: np.ndarray, density: np.ndarray, microns: float) -> np.ndarray:
    """Remove regions mostly of ink / debris colour, and regions smaller than ``MIN_OBJECT_MICRONS`` square."""
    labels, count = ndimage.label(tissue, structure=EIGHT_CONNECTED)
    if not count:
        return tissue
    inside = labels[tissue]  # (N,) region of each tissue pixel
    area = np.bincount(inside, minlength=count + 1)[1:] * microns**2  # square microns
    artefacts = np.bincount(inside, weights=artefact_mask(density[tissue]), minlength=count + 1)[1:]
    keep = (artefacts < ARTEFACT_SHARE * area / microns**2) & (area >= MIN_OBJECT_MICRONS**2)
    return np.concatenate([[False], keep])[labels]


def _fill_small_holes(tissue: np.ndarray, microns: float) -> np.ndarray:
    """Fill enclosed holes up to ``MAX_HOLE_MICRONS`` square; larger ones (real gaps between fragments) stay."""
    holes = ndimage.binary_fill_holes(tissue) & ~tissue
    labels, count = ndimage.label(holes)
    if not count:
        return tissue
    area = np.bincount(labels[holes], minlength=count + 1)[1:] * microns**2
    small = np.concatenate([[False], area <= MAX_HOLE_MICRONS**2])
    return tissue | small[labels]
