"""``CTModality``: CT volumes (DICOM series, NIfTI, NumPy + sidecar) in Hounsfield units, as a medclip modality.

Pipeline: ``resolve`` (manifest cell, ``folder#series=N`` to pick a series) -> ``load`` (reader -> HU + RAS affine +
allow-listed metadata; with ``cache_dir`` set, the deterministic preprocessing runs here once and is cached) ->
``transforms`` (reorient/resample/crop unless cached, HU windows, augmentation) -> ``collate`` -> 3D encoder.
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
from modalities.volume.phantom import chest_phantom
from modalities.volume.pipeline import VolumePreprocessing, check_fingerprint, load_volume_sample, study_pseudonym
from modalities.volume.preprocess import GeometrySpec
from modalities.volume.volume import Volume, volume_meta

from .config import CTConfig
from .readers import CT_READERS, ct_format
from .transform import CTTransform
from .windows import parse_window

STATE_FORMAT = "medclip.ct/1"
AIR_HU = -1024.0
SERIES_FRAGMENT = "#series="


def store_hounsfield(values: np.ndarray) -> np.ndarray:
    """float32 HU -> int16, rounded (interpolated HU keep well under 0.5 HU of their value) and clipped to int16."""
    return np.clip(np.rint(values), -32768, 32767).astype(np.int16)


def ct_preprocessing(cfg: CTConfig) -> VolumePreprocessing:
    """The deterministic CT preprocessing a config describes (its fingerprint keys the cache and the checkpoint)."""
    geometry = GeometrySpec(
        orientation=cfg.orientation.upper(),
        spacing=tuple(float(value) for value in cfg.spacing),
        size=tuple(int(value) for value in cfg.size),
        pad_value=AIR_HU,
    )
    return VolumePreprocessing(geometry=geometry, store=store_hounsfield, settings={"intensity": "hounsfield"})


class CTModality(Modality):
    """CT volumes in Hounsfield units (see the module docstring and docs/ct.md)."""

    name = "ct"
    config_class = CTConfig
    file_suffixes = (".nii", ".nii.gz", ".dcm")
    reads_directories = True  # `medclip inspect FOLDER` picks this plugin for DICOM series folders

    def __init__(self, config: CTConfig | None = None) -> None:
        super().__init__(config)
        self.config: CTConfig
        self.preprocessing = ct_preprocessing(self.config)
        self._cache: PreprocessCache | None = None

    @property
    def cache(self) -> PreprocessCache | None:
        if not self.config.cache_dir:
            return None
        if self._cache is None:
            self._cache = PreprocessCache(self.config.cache_dir, self.name, self.preprocessing.fingerprint())
        return self._cache

    # --- manifest cell -> reference -> sample ----------------------------------------------------------------------
    def resolve(self, value: str, root: str | os.PathLike) -> os.PathLike | Mapping[str, Any]:
        """A path relative to ``root``; ``folder#series=N`` selects SeriesNumber N of a multi-series folder."""
        text, series = _split_series(value)
        path = super().resolve(text, root)
        return path if series is None else {"path": path, "series": series}

    def load(self, ref: str | os.PathLike | Mapping[str, Any]) -> Sample:
        """Read a CT as HU with its RAS affine (or its cached preprocessed form when ``cache_dir`` is set).

        Returns:
            ``{"ct": (I, J, K) int16/float32 HU, "ct_meta": {spacing, affine, affine_convention, orientation, shape,
            source, study_pseudonym, ...}}``; ``ct_meta["preprocessed"]`` is set when the array is the cached output.

        Raises:
            ModalityError: ``missing_file``, ``unsupported_format``, ``bad_reference`` and each reader's reasons
                (docs/ct.md lists them).
        """
        path, series = self._reference(ref)
        kind = ct_format(path)

        def read() -> Volume:
            return CT_READERS.get(kind)(path, series)

        return load_volume_sample(self.name, path, read, self.preprocessing, self.cache)

    @staticmethod
    def _reference(ref: str | os.PathLike | Mapping[str, Any]) -> tuple[Path, int | None]:
        if isinstance(ref, Mapping):
            if "path" not in ref or set(ref) - {"path", "series"}:
                raise ModalityError("bad_reference", "a CT reference mapping holds 'path' and optionally 'series'")
            series = ref.get("series")
            if series is not None and (isinstance(series, bool) or not isinstance(series, int)):
                raise ModalityError("bad_reference", "a CT reference's 'series' must be an integer SeriesNumber")
            return Path(ref["path"]), series
        text, series = _split_series(os.fspath(ref))
        return Path(text), series

    # --- tensors ---------------------------------------------------------------------------------------------------
    def transforms(self, cfg: CTConfig, train: bool) -> Callable[[Sample], Sample]:
        """(I, J, K) HU -> (C, *cfg.size) float16 in [0, 1], one channel per HU window; augmented when ``train``."""
        augmentation = VolumeAugmentation() if train and cfg.augment else None
        windows = [parse_window(window) for window in cfg.hu_windows]
        return CTTransform(self.name, ct_preprocessing(cfg), windows, augmentation, hu_shift=cfg.hu_shift)

    def collate(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """Stack: {"ct": (B, C, I, J, K) float16, "ct_mask": (B,) bool}; missing rows are zeros."""
        present = torch.tensor([sample.get(self.name) is not None for sample in samples], dtype=torch.bool)  # (B,)
        shape = (len(self.config.hu_windows), *self.config.size)
        batch = torch.zeros(len(samples), *shape, dtype=torch.float16)  # (B, C, I, J, K)
        for row, sample in enumerate(samples):
            if not present[row]:
                continue
            volume = torch.as_tensor(sample[self.name])
            if tuple(volume.shape) != shape:
                raise ValueError(
                    f"ct volumes must be transformed before collate: got shape {tuple(volume.shape)}, expected {shape}"
                )
            batch[row] = volume
        return {self.name: batch, f"{self.name}_mask": present}

    def build_encoder(self, cfg: CTConfig) -> nn.Module:
        """The ``cfg.encoder`` 3D encoder for (B, C, *size) inputs, sized by ``cfg.preset`` and overrides."""
        spec = resolve_spec(
            cfg.encoder,
            cfg.preset,
            len(cfg.hu_windows),
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
        """``n`` small chest phantoms (40 x 40 x 30 at 8 x 8 x 10 mm) as ``load`` returns raw volumes."""
        samples = []
        for index in range(n):
            case = chest_phantom(seed * 100_003 + index, shape=(40, 40, 30), spacing=(8.0, 8.0, 10.0))
            volume = Volume(
                data=case.hounsfield,
                affine=case.affine,
                source="synthetic",
                study_key=f"synthetic-{seed}-{index}",
                details={"intensity": "hounsfield"},
            )
            samples.append(
                {self.name: volume.data, f"{self.name}_meta": volume_meta(volume, study_pseudonym(volume.study_key))}
            )
        return samples

    # --- preprocessing fingerprint ---------------------------------------------------------------------------------
    def preprocess_state(self) -> dict[str, Any]:
        """The config plus the preprocessing fingerprint (orientation, spacing, size, HU windows)."""
        return {
            "format": STATE_FORMAT,
            "config": asdict(self.config),
            "fingerprint": {**self.preprocessing.fingerprint(), "hu_windows": list(self.config.hu_windows)},
            "fingerprint_hash": self.preprocessing.fingerprint_hash,
        }

    def load_preprocess_state(self, state: Mapping[str, Any]) -> None:
        """Check that the saved fingerprint is the one this config produces (the caller restored the config)."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"ct preprocess state has format {state.get('format')!r}, expected {STATE_FORMAT}")
        if state.get("fingerprint_hash") != self.preprocessing.fingerprint_hash:
            raise ValueError("ct preprocess state: its fingerprint does not match the restored config's preprocessing")

    def check_compatible(self, sample_meta: Mapping[str, Any]) -> None:
        """Refuse an input preprocessed (cached) with other settings than this model's (``preprocess_mismatch``)."""
        check_fingerprint(sample_meta, self.preprocessing)


def _split_series(text: str) -> tuple[str, int | None]:
    """``"folder#series=3"`` -> ("folder", 3); ``"folder"`` -> ("folder", None)."""
    if SERIES_FRAGMENT not in text:
        return text, None
    base, _, number = text.rpartition(SERIES_FRAGMENT)
    try:
        return base, int(number)
    except ValueError as error:
        raise ModalityError("bad_reference", "'#series=' must be followed by an integer SeriesNumber") from error
