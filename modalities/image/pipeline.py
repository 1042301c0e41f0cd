"""From a reference to a sample, through the preprocessing cache (the image counterpart of ``volume.pipeline``).

``ImagePreprocessing`` is the deterministic part: the reader settings (display transform, bit depth, image type,
channels) plus geometry (fit and pad, or resample to a pixel size and crop/pad), stored as float16 in [0, 1]. Its
fingerprint keys the cache and travels with checkpoints. ``load_image_sample`` returns the cached result (a memory
map: no decoding, no resizing) or reads the input and, when a cache is configured, preprocesses and stores it;
``meta["preprocessed"]`` is the fingerprint hash of what was applied, or None for a raw image.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medclip.data.cache import PreprocessCache, check_preprocessed_with, file_content_hash, fingerprint_digest
from medclip.types import ModalityError, Sample
from modalities.volume.pipeline import study_pseudonym

from .geometry import place, plan, resize
from .options import ReadOptions
from .record import ImageRecord, image_meta, spacing_list

PREPROCESS_FORMAT = "medclip.image/1"


@dataclass(frozen=True)
class ImagePreprocessing:
    """The deterministic preprocessing of the image modality.

    Attributes:
        size: output (height, width).
        spacing: target pixel size in mm, or 0 to fit the image into ``size`` (aspect kept) and pad.
        pad_value: intensity of the padding.
        read: the reader settings (they decide the display intensities the geometry starts from).
    """

    size: tuple[int, int]
    spacing: float
    pad_value: float
    read: ReadOptions

    def fingerprint(self) -> dict[str, Any]:
        return {
            "format": PREPROCESS_FORMAT,
            "size": list(self.size),
            "spacing": self.spacing,
            "pad_value": self.pad_value,
            "interpolation": "bilinear_antialias",
            "store": "float16",
            **self.read.fingerprint(),
        }

    @functools.cached_property
    def fingerprint_hash(self) -> str:
        return fingerprint_digest(self.fingerprint())[:16]

    def __call__(self, pixels: np.ndarray, spacing: Sequence[float] | None) -> tuple[np.ndarray, dict[str, Any]]:
        """(C, H, W) display intensities -> (C, *size) float16 and the geometry it ended with.

        Raises:
            ModalityError: ``unknown_spacing`` (resampling to a pixel size needs one), ``too_large``.
        """
        if self.spacing > 0 and spacing is None:
            raise ModalityError("unknown_spacing", "the image has no pixel size, which spacing resampling needs")
        source_spacing = None if spacing is None else (float(spacing[0]), float(spacing[1]))
        shape = (int(pixels.shape[1]), int(pixels.shape[2]))
        placement = plan(shape, pixels.shape[0], source_spacing, self.size, self.spacing, self.read.max_decoded_mb)
        resized = resize(pixels, placement.height, placement.width)  # (C, h, w) float32
        canvas = place(resized, placement, self.size, self.pad_value)  # (C, *size)
        if source_spacing is None:
            out_spacing = None
        else:
            out_spacing = (
                source_spacing[0] * shape[0] / placement.height,
                source_spacing[1] * shape[1] / placement.width,
            )
        geometry = {
            "spacing": spacing_list(out_spacing),
            "placement": [placement.height, placement.width, placement.top, placement.left],
        }
        return canvas.to(torch.float16).numpy(), geometry


def preprocessed_meta(meta: Mapping[str, Any], array: np.ndarray, geometry: Mapping[str, Any], hash_: str) -> dict:
    """Metadata of a preprocessed image: its own shape and pixel size, the source's as ``source_*``."""
    kept = {key: value for key, value in meta.items() if key not in ("shape", "spacing", "preprocessed")}
    return {
        **kept,
        "source_shape": meta["shape"],
        "source_spacing": meta.get("spacing"),
        "shape": [int(size) for size in array.shape],
        **geometry,
        "preprocessed": hash_,
    }


def image_sample(name: str, record: ImageRecord) -> Sample:
    """``{name: (C, H, W) float32, f"{name}_meta": meta}`` of a raw image, its study pseudonymised."""
    return {name: record.pixels, f"{name}_meta": image_meta(record, study_pseudonym(record.study_key))}


def content_key(cache: PreprocessCache, path: Path, extras: Sequence[str | Path]) -> str:
    """The cache's content hash of ``path``, combined with what else decides the result (sidecar, cell options)."""
    content = cache.content_hash(path)
    if not extras:
        return content
    parts = [content, *(file_content_hash(item) if isinstance(item, Path) else f"text:{item}" for item in extras)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def load_image_sample(
    name: str,
    path: Path,
    read: Callable[[], ImageRecord],
    preprocessing: ImagePreprocessing,
    cache: PreprocessCache | None,
    extras: Sequence[str | Path] = (),
) -> Sample:
    """``{name: array, f"{name}_meta": meta}``: from the cache when it has the input, else read (and cache) it.

    Args:
        name: the modality's sample key.
        path: the input file (already checked to be a regular file), whose bytes are hashed for the cache key.
        read: reads the input (only called on a cache miss or without a cache).
        preprocessing: the deterministic preprocessing, run before storing in the cache.
        cache: the cache, or None to return the raw image (preprocessed later by the transform).
        extras: a sidecar file, or the channel names of the manifest cell: they change the result, so the key.
    """
    if cache is None:
        return image_sample(name, read())
    content = content_key(cache, path, extras)
    hit = cache.get(content)
    if hit is not None:
        return {name: hit.array, f"{name}_meta": hit.meta}
    record = read()
    meta = image_meta(record, study_pseudonym(record.study_key))
    array, geometry = preprocessing(record.pixels, record.spacing)
    stored = cache.put(content, array, preprocessed_meta(meta, array, geometry, preprocessing.fingerprint_hash))
    return {name: stored.array, f"{name}_meta": stored.meta}


def check_fingerprint(meta: Mapping[str, Any], preprocessing: ImagePreprocessing) -> None:
    """Refuse a sample preprocessed with other settings than ``preprocessing`` (``preprocess_mismatch``)."""
    check_preprocessed_with(meta, preprocessing.fingerprint_hash)


def ensure_preprocessed(array: np.ndarray, meta: Mapping[str, Any], preprocessing: ImagePreprocessing) -> np.ndarray:
    """The (C, *size) float16 image of a sample, running the deterministic steps unless already applied."""
    if meta.get("preprocessed") is None:
        result, _ = preprocessing(np.asarray(array, dtype=np.float32), meta.get("spacing"))
        return result
    check_fingerprint(meta, preprocessing)
    return array
