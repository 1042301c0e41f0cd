"""``OCTModality``: optical coherence tomography volumes (DICOM, TIFF, NIfTI, NumPy, vendor files) as a modality.

Pipeline: ``load`` (reader -> (lateral, axial, B-scan) volume; with ``cache_dir`` set, normalisation and resampling
run once and are cached as float16) -> ``transforms`` (per-volume normalisation + resize to ``bscan_size`` x
``n_bscans`` unless cached, augmentation) -> ``collate`` -> the shared 3D encoders (one input channel).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medclip.data.cache import PreprocessCache
from medclip.types import Modality, ModalityError, Sample
from modalities.volume.augment import VolumeAugmentation
from modalities.volume.encoders import build_volume_encoder, resolve_spec
from modalities.volume.pipeline import (
    VolumePreprocessing,
    check_fingerprint,
    ensure_preprocessed,
    load_volume_sample,
    study_pseudonym,
)
from modalities.volume.preprocess import ResizeSpec
from modalities.volume.volume import Volume, volume_meta

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
        geometry=ResizeSpec(cfg.size), store=store_float16, before=normalization, settings=settings
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


class OCTModality(Modality):
    """Retinal OCT volumes (see the module docstring and docs/ct.md, "OCT")."""

    name = "oct"
    config_class = OCTConfig
    file_suffixes = (".e2e", ".fds", ".fda")  # .dcm/.nii/.tif are shared with other plugins: use --modality oct

    def __init__(self, config: OCTConfig | None = None) -> None:
        super().__init__(config)
        self.config: OCTConfig
        self.preprocessing = oct_preprocessing(self.config)
        self._cache: PreprocessCache | None = None

    @property
    def cache(self) -> PreprocessCache | None:
        if not self.config.cache_dir:
            return None
        if self._cache is None:
            self._cache = PreprocessCache(self.config.cache_dir, self.name, self.preprocessing.fingerprint())
        return self._cache

    def load(self, ref: str | os.PathLike | Mapping[str, Any]) -> Sample:
        """Read an OCT volume as (lateral, axial, B-scan) with a device-frame affine (or its cached preprocessed form).

        Raises:
            ModalityError: ``missing_file``, ``unsupported_format``, ``bad_reference``, ``missing_package`` (vendor
                files without oct-converter), and the readers' reasons.
        """
        if isinstance(ref, Mapping):
            if set(ref) != {"path"}:
                raise ModalityError("bad_reference", "an OCT reference mapping holds only 'path'")
            ref = ref["path"]
        path = Path(ref)
        kind = oct_format(path)
        return load_volume_sample(self.name, path, lambda: OCT_READERS.get(kind)(path), self.preprocessing, self.cache)

    def transforms(self, cfg: OCTConfig, train: bool) -> Callable[[Sample], Sample]:
        """Volume -> (1, lateral, axial, B-scans) float16 tensor; augmented (affine + noise) when ``train``."""
        augmentation = None
        if train and cfg.augment:
            clamp = (0.0, 1.0) if cfg.normalization == "percentile" else None
            augmentation = VolumeAugmentation(noise_std=0.02, clamp=clamp)
        return OCTTransform(self.name, oct_preprocessing(cfg), augmentation)

    def collate(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """Stack: {"oct": (B, 1, I, J, K) float16, "oct_mask": (B,) bool}; missing rows are zeros."""
        present = torch.tensor([sample.get(self.name) is not None for sample in samples], dtype=torch.bool)  # (B,)
        shape = (1, *self.config.size)
        batch = torch.zeros(len(samples), *shape, dtype=torch.float16)  # (B, 1, I, J, K)
        for row, sample in enumerate(samples):
            if not present[row]:
                continue
            volume = torch.as_tensor(sample[self.name])
            if tuple(volume.shape) != shape:
                raise ValueError(
                    f"oct volumes must be transformed before collate: got shape {tuple(volume.shape)}, expected {shape}"
                )
            batch[row] = volume
        return {self.name: batch, f"{self.name}_mask": present}

    def build_encoder(self, cfg: OCTConfig) -> nn.Module:
        spec = resolve_spec(
            cfg.encoder,
            cfg.preset,
            1,
            cfg.size,
            width=cfg.width,
            layers=cfg.layers,
            heads=cfg.heads,
            patch_size=cfg.patch_size,
            dropout=cfg.dropout,
            gradient_checkpointing=cfg.gradient_checkpointing,
        )
        return build_volume_encoder(spec)

    def synthetic(self, n: int, seed: int = 0) -> list[Sample]:
        """``n`` small layered-retina volumes (64 lateral x 96 axial x 12 B-scans) as ``load`` returns them."""
        samples = []
        for index in range(n):
            data = synthetic_oct_volume(seed * 100_003 + index)
            volume = Volume(data, scan_affine((0.09, 0.004, 0.25)), "synthetic", f"synthetic-{seed}-{index}", {})
            meta = volume_meta(volume, study_pseudonym(volume.study_key))
            samples.append({self.name: data, f"{self.name}_meta": meta})
        return samples

    def preprocess_state(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "config": asdict(self.config),
            "fingerprint": self.preprocessing.fingerprint(),
            "fingerprint_hash": self.preprocessing.fingerprint_hash,
        }

    def load_preprocess_state(self, state: Mapping[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"oct preprocess state has format {state.get('format')!r}, expected {STATE_FORMAT}")
        if state.get("fingerprint_hash") != self.preprocessing.fingerprint_hash:
            raise ValueError("oct preprocess state: its fingerprint does not match the restored config's preprocessing")

    def check_compatible(self, sample_meta: Mapping[str, Any]) -> None:
        check_fingerprint(sample_meta, self.preprocessing)
