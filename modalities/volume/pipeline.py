"""From a reference to a sample, through the preprocessing cache: the loading logic CT and OCT share.

``VolumePreprocessing`` is the deterministic part (optional intensity step -> geometry -> storage dtype), with the
fingerprint that keys the cache and travels with checkpoints. Before resampling it checks the grid the geometry will
allocate against the budget (``too_large``), and after its steps that the stored values are finite (``non_finite``):
float16 storage turns overflows into infinities. ``load_volume_sample`` either returns the cached result of it (a
memory map: no DICOM parsing, no resampling) or reads the input, and, when a cache is configured, preprocesses and
stores it. The sample's metadata says which: ``meta["preprocessed"]`` is the fingerprint hash of the preprocessing
already applied, or None for a raw volume.

Cache entries are keyed by the input's full reference (path and series selection) and the content of every file the
reader reads (``InputSource``): another series of the same folder, a replaced, added or removed slice, or an edited
sidecar is a miss, never a stale hit.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medclip.data.cache import PreprocessCache, check_preprocessed_with
from medclip.data.pseudonym import KEY_ENV, KEY_FILE_ENV, Pseudonymizer
from medclip.data.safe_io import check_decoded_size
from medclip.types import ModalityError, Sample

from .limits import DEFAULT_BUDGET_MB, FLOAT32_BYTES, NON_FINITE
from .preprocess import GeometrySpec, ResizeSpec, fingerprint_hash
from .volume import Volume, geometry_meta, volume_meta

# Arrays as stored in the cache / handed to augmentation: (I, J, K) in the storage dtype.
IntensityStep = Callable[[np.ndarray], np.ndarray]


@dataclass
class VolumePreprocessing:
    """The deterministic preprocessing of one modality.

    Attributes:
        geometry: a ``GeometrySpec`` (orientation, spacing, size, pad value) or a ``ResizeSpec`` (fixed shape).
        store: converts the float32 result to its compact storage dtype (int16 HU, float16 intensities), or to the
            finished (C, I, J, K) float16 input when nothing random comes before it (CT windows without HU shift).
        before: an intensity step on the raw volume, before geometry (OCT's per-volume normalisation), or None.
        settings: the remaining values that change the output (e.g. normalisation percentiles), for the fingerprint.
        max_decoded_mb: the budget of the resampled grid (the modality's ``max_decoded_mb``); not in the fingerprint:
            it decides what is refused, never how an accepted input is preprocessed.
    """

    geometry: GeometrySpec | ResizeSpec
    store: IntensityStep
    before: IntensityStep | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    max_decoded_mb: float = DEFAULT_BUDGET_MB

    def fingerprint(self) -> dict[str, Any]:
        return {
            **self.geometry.fingerprint(),
            "store": getattr(self.store, "__name__", type(self.store).__name__),
            "before": None if self.before is None else getattr(self.before, "__name__", type(self.before).__name__),
            **self.settings,
        }

    @functools.cached_property
    def fingerprint_hash(self) -> str:
        return fingerprint_hash(self.fingerprint())

    def __call__(self, data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(I, J, K) raw -> (I', J', K') = ``geometry.size`` in the storage dtype, and its affine.

        Raises:
            ModalityError: ``too_large`` when the resampled grid would exceed the budget (checked before any
                step allocates it), ``non_finite`` when a step produced NaN or infinity.
        """
        planned = self.geometry.planned_shape(np.shape(data)[-3:], affine)
        check_decoded_size(planned, FLOAT32_BYTES, self.max_decoded_mb, "resampled volume")
        values = self.before(data) if self.before is not None else data
        resampled, new_affine = self.geometry.apply(values, affine)
        stored = self.store(resampled)
        if np.asarray(stored).dtype.kind == "f" and not np.isfinite(stored).all():
            raise ModalityError(NON_FINITE, "preprocessing produced NaN or infinite values (float16 overflow?)")
        return stored, new_affine


def preprocessed_meta(meta: Mapping[str, Any], array: np.ndarray, affine: np.ndarray, hash_: str) -> dict[str, Any]:
    """Metadata of a preprocessed volume: its own geometry, the source's geometry as ``source_*``."""
    source = {f"source_{key}": meta[key] for key in ("spacing", "orientation", "shape") if key in meta}
    kept = {key: value for key, value in meta.items() if key not in ("spacing", "orientation", "shape", "affine")}
    spatial = array.shape[-3:]  # (I', J', K') of an (I', J', K') or (C, I', J', K') stored array
    return {**kept, **source, **geometry_meta(spatial, affine), "preprocessed": hash_}


@functools.lru_cache(maxsize=4)
def _pseudonymizer(_key_env: str | None, _key_file_env: str | None) -> Pseudonymizer:
    return Pseudonymizer.from_environment()


def study_pseudonym(study_key: str) -> str:
    """The keyed pseudonym of a study (StudyInstanceUID or resolved path); the key comes from the environment."""
    pseudonymizer = _pseudonymizer(os.environ.get(KEY_ENV), os.environ.get(KEY_FILE_ENV))
    return pseudonymizer.pseudonym(study_key, kind="study")


def volume_sample(name: str, volume: Volume) -> Sample:
    """``{name: array, f"{name}_meta": meta}`` of a raw (not preprocessed) volume, its study pseudonymised."""
    return {name: volume.data, f"{name}_meta": volume_meta(volume, study_pseudonym(volume.study_key))}


@dataclass(frozen=True)
class InputSource:
    """What identifies one input for the cache.

    Attributes:
        reference: the resolved path plus any selection within it (``"/data/study#series=2"``).
        files: every file the reader reads for it, in a fixed order (checked to be regular files).
    """

    reference: str
    files: Sequence[Path]


def load_volume_sample(
    name: str,
    source: Callable[[], InputSource],
    read: Callable[[], Volume],
    preprocessing: VolumePreprocessing,
    cache: PreprocessCache | None,
) -> Sample:
    """``{name: array, f"{name}_meta": meta}``: from the cache when it has the input, else read (and cache) it.

    Args:
        name: the modality's sample key.
        source: lists the input's reference and files (only called with a cache: their content keys the entry).
        read: reads the input as a ``Volume`` (only called on a cache miss or without a cache).
        preprocessing: the deterministic preprocessing (run before storing in the cache).
        cache: the cache, or None to return the raw volume (preprocessed later by the modality's transform).
    """
    if cache is None:
        return volume_sample(name, read())
    identity = source()
    content = cache.input_hash(identity.reference, identity.files)
    hit = cache.get(content)
    if hit is not None:
        return {name: hit.array, f"{name}_meta": hit.meta}
    volume = read()
    meta = volume_meta(volume, study_pseudonym(volume.study_key))
    array, affine = preprocessing(volume.data, volume.affine)
    stored = cache.put(content, array, preprocessed_meta(meta, array, affine, preprocessing.fingerprint_hash))
    return {name: stored.array, f"{name}_meta": stored.meta}


def check_fingerprint(meta: Mapping[str, Any], preprocessing: VolumePreprocessing) -> None:
    """Refuse a sample preprocessed (cached) with other settings than ``preprocessing`` (``preprocess_mismatch``)."""
    check_preprocessed_with(meta, preprocessing.fingerprint_hash)


def ensure_preprocessed(sample_array: np.ndarray, meta: Mapping[str, Any], preprocessing: VolumePreprocessing):
    """The preprocessed (I', J', K') array of a sample, running the deterministic steps unless already applied.

    Raises:
        ModalityError: ``preprocess_mismatch`` when the sample was preprocessed with other settings.
    """
    if meta.get("preprocessed") is None:
        affine = np.asarray(meta["affine"], dtype=np.float64)
        array, _ = preprocessing(np.asarray(sample_array), affine)
        return array
    check_fingerprint(meta, preprocessing)
    return sample_array
