"""``OCTModality``: optical coherence tomography volumes (DICOM, TIFF, NIfTI, NumPy, vendor files) as a modality.

Pipeline: ``load`` (reader -> (lateral, axial, B-scan) volume; with ``cache_dir`` set, normalisation and resampling
run once and are cached as float16) -> ``transforms`` (per-volume normalisation + resize to ``bscan_size`` x
``n_bscans`` unless cached, augmentation) -> ``collate`` -> the shared 3D encoders (one input channel).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medclip.types import ModalityError, Sample
from modalities.volume.augment import VolumeAugmentation
from modalities.volume.modality import VolumeModality
from modalities.volume.numpy_volume import numpy_files
from modalities.volume.pipeline import (
    InputSource,
    VolumePreprocessing,
    ensure_preprocessed,
    load_volume_sample,
    volume_sample,
)
from modalities.volume.preprocess import ResizeSpec
from modalities.volume.volume import Volume

from .config import OCTConfig
from .normalize import OCT_NORMALIZATIONS, store_float16
from .readers import OCT_READERS, oct_format, scan_affine
from .synthetic import synthetic_oct_volume

STATE_FORMAT = "medclip.oct/1"


def oct_preprocessing(cfg: OCTConfig) -> VolumePreprocessing:
    """Normalise per volume, resize to (lateral, axial, B-scans) = ``cfg.size``, store float16."""
    low, high = cfg.percentiles
    normalization = OCT_NORMALIZATIONS.get(cfg.normalization)(low=low, high=high)
    settings = {"normalization": cfg.normalization, "percentiles": [float(low), float(high)]}
    return VolumePreprocessing(
        geometry=ResizeSpec(cfg.size),
        store=store_float16,
        before=normalization,
        settings=settings,
        max_decoded_mb=cfg.max_decoded_mb,
    )


class OCTTransform:
    """Picklable transform: preprocessing unless cached -> (1, I, J, K) float16 tensor, augmented when training."""

    def __init__(self, name: str, preprocessing: VolumePreprocessing, augmentation: VolumeAugmentation | None) -> None:
        self.name = name
        self.preprocessing = preprocessing
        self.augmentation = augmentation

    def __call__(self, sample: Sample) -> Sample:
        if self.name not in sample:
            return sample
        volume = ensure_preprocessed(sample[self.name], sample[f"{self.name}_meta"], self.preprocessing)
        channels = np.asarray(volume, dtype=np.float32)[None]  # (1, I, J, K)
        tensor = self.augmentation(channels) if self.augmentation is not None else torch.from_numpy(channels)
        return {**sample, self.name: tensor.to(torch.float16)}


class OCTModality(VolumeModality):
    """Retinal OCT volumes (see the module docstring and docs/ct.md, "OCT"); collate, encoder, cache and
    preprocessing state come from ``VolumeModality``."""

    name = "oct"
    config_class = OCTConfig
    state_format = STATE_FORMAT
    file_suffixes = (".e2e", ".fds", ".fda")  # .dcm/.nii/.tif are shared with other plugins: use --modality oct

    def __init__(self, config: OCTConfig | None = None) -> None:
        super().__init__(config)
        self.config: OCTConfig

    def make_preprocessing(self, cfg: OCTConfig) -> VolumePreprocessing:
        return oct_preprocessing(cfg)

    def in_channels(self) -> int:
        """One (intensity) channel."""
        return 1

    def load(self, ref: str | os.PathLike | Mapping[str, Any]) -> Sample:
        """Read an OCT volume as (lateral, axial, B-scan) with a device-frame affine (or its cached preprocessed form).

        Raises:
            ModalityError: ``missing_file``, ``not_regular_file``, ``unsupported_format``, ``bad_reference``,
                ``missing_package`` (vendor files without oct-converter), and the readers' reasons.
        """
        if isinstance(ref, Mapping):
            if set(ref) != {"path"}:
                raise ModalityError("bad_reference", "an OCT reference mapping holds only 'path'")
            ref = ref["path"]
        path = Path(ref)
        kind = oct_format(path)

        def source() -> InputSource:  # a .npy is read with its sidecar: both key the cache entry
            return InputSource(str(path.resolve()), numpy_files(path) if kind == "numpy" else [path])

        def read() -> Volume:
            return OCT_READERS.get(kind)(path, self.config.limits())

        return load_volume_sample(self.name, source, read, self.preprocessing, self.cache)

    def transforms(self, train: bool) -> Callable[[Sample], Sample]:
        """Volume -> (1, lateral, axial, B-scans) float16 tensor; augmented (affine + noise) when ``train``."""
        cfg = self.config
        augmentation = None
        if train and cfg.augment:
            clamp = (0.0, 1.0) if cfg.normalization == "percentile" else None
            augmentation = VolumeAugmentation(noise_std=0.02, clamp=clamp)
        return OCTTransform(self.name, oct_preprocessing(cfg), augmentation)

    def synthetic(self, n: int, seed: int = 0) -> list[Sample]:
        """``n`` small layered-retina volumes (64 lateral x 96 axial x 12 B-scans) as ``load`` returns them."""
        samples = []
        for index in range(n):
            data = synthetic_oct_volume(seed * 100_003 + index)
            volume = Volume(data, scan_affine((0.09, 0.004, 0.25)), "synthetic", f"synthetic-{seed}-{index}", {})
            samples.append(volume_sample(self.name, volume))
        return samples
