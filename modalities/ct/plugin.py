"""``CTModality``: CT volumes (DICOM series, NIfTI, NumPy + sidecar) in Hounsfield units, as a medclip modality.

Pipeline: ``resolve`` (manifest cell, ``folder#series=N`` to pick a series) -> ``load`` (reader -> HU + RAS affine +
allow-listed metadata; with ``cache_dir`` set, the deterministic preprocessing runs here once and is cached) ->
``transforms`` (reorient/resample/crop unless cached, HU windows, augmentation) -> ``collate`` -> 3D encoder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medclip.types import ModalityError, Sample
from modalities.volume.augment import VolumeAugmentation
from modalities.volume.modality import VolumeModality
from modalities.volume.phantom import chest_phantom
from modalities.volume.pipeline import InputSource, VolumePreprocessing, load_volume_sample, volume_sample
from modalities.volume.preprocess import GeometrySpec
from modalities.volume.volume import Volume

from .config import CTConfig
from .readers import CT_READERS, ct_format, source_files
from .transform import CTTransform
from .windows import parse_window, windows_to_float16

STATE_FORMAT = "medclip.ct/1"
AIR_HU = -1024.0
SERIES_FRAGMENT = "#series="


def store_hounsfield(values: np.ndarray) -> np.ndarray:
    """float32 HU -> int16, rounded (interpolated HU keep well under 0.5 HU of their value) and clipped to int16."""
    return np.clip(np.rint(values), -32768, 32767).astype(np.int16)


class StoreWindows:
    """float32 HU -> (C, I, J, K) float16 windows in [0, 1]: the encoder's input itself, stored when it is
    deterministic.

    The values are exactly those of ``store_hounsfield`` followed by the transform's windowing, so a cached entry
    reads back as the finished input: no windowing per load, and the same 2 bytes per voxel and window as float16.
    """

    __name__ = "store_windows"  # the fingerprint names the store

    def __init__(self, windows: list[str]) -> None:
        self.windows = [parse_window(window) for window in windows]

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return windows_to_float16(store_hounsfield(values), self.windows).numpy()  # (C, I, J, K)


def windows_are_deterministic(cfg: CTConfig) -> bool:
    """Whether every use of the config windows the same HU the same way (no random HU shift before windowing)."""
    return not cfg.augment or cfg.hu_shift == 0


def ct_preprocessing(cfg: CTConfig) -> VolumePreprocessing:
    """The deterministic CT preprocessing a config describes (its fingerprint keys the cache and the checkpoint).

    Without a random HU shift the windows are deterministic too and part of it (stored as float16 channels);
    otherwise HU are stored (int16) and windowed after the shift, in the transform.
    """
    geometry = GeometrySpec(
        orientation=cfg.orientation.upper(),
        spacing=tuple(float(value) for value in cfg.spacing),
        size=tuple(int(value) for value in cfg.size),
        pad_value=AIR_HU,
    )
    budget = cfg.max_decoded_mb
    if windows_are_deterministic(cfg):
        settings = {"intensity": "hounsfield", "hu_windows": list(cfg.hu_windows)}
        store = StoreWindows(cfg.hu_windows)
        return VolumePreprocessing(geometry=geometry, store=store, settings=settings, max_decoded_mb=budget)
    settings = {"intensity": "hounsfield"}
    return VolumePreprocessing(geometry=geometry, store=store_hounsfield, settings=settings, max_decoded_mb=budget)


class CTModality(VolumeModality):
    """CT volumes in Hounsfield units (see the module docstring and docs/ct.md); collate, encoder, cache and
    preprocessing state come from ``VolumeModality``."""

    name = "ct"
    config_class = CTConfig
    state_format = STATE_FORMAT
    file_suffixes = (".nii", ".nii.gz", ".dcm")
    reads_directories = True  # `medclip inspect FOLDER` picks this plugin for DICOM series folders

    def __init__(self, config: CTConfig | None = None) -> None:
        super().__init__(config)
        self.config: CTConfig

    def make_preprocessing(self, cfg: CTConfig) -> VolumePreprocessing:
        return ct_preprocessing(cfg)

    def in_channels(self) -> int:
        """One input channel per HU window."""
        cfg = self.config
        return len(cfg.hu_windows)

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
            ModalityError: ``missing_file``, ``not_regular_file``, ``unsupported_format``, ``bad_reference`` and each
                reader's reasons (docs/ct.md lists them).
        """
        path, series = self._reference(ref)
        kind = ct_format(path)

        def read() -> Volume:
            return CT_READERS.get(kind)(path, series, self.config.quarantine, self.config.limits())

        def source() -> InputSource:  # the cache entry belongs to this series of this folder, with these files
            reference = str(path.resolve()) + ("" if series is None else f"{SERIES_FRAGMENT}{series}")
            return InputSource(reference, source_files(path, kind))

        # With the quarantine off nothing is cached: the cache only ever holds inputs that passed it, so turning it
        # back on can never be bypassed by a cache hit.
        cache = self.cache if self.config.quarantine else None
        return load_volume_sample(self.name, source, read, self.preprocessing, cache)

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
    def transforms(self, train: bool) -> Callable[[Sample], Sample]:
        """(I, J, K) HU -> (C, *cfg.size) float16 in [0, 1], one channel per HU window; augmented when ``train``."""
        cfg = self.config
        augmentation = VolumeAugmentation() if train and cfg.augment else None
        windows = [parse_window(window) for window in cfg.hu_windows]
        return CTTransform(self.name, ct_preprocessing(cfg), windows, augmentation, hu_shift=cfg.hu_shift)

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
            samples.append(volume_sample(self.name, volume))
        return samples

    # --- preprocessing fingerprint ---------------------------------------------------------------------------------
    def state_fingerprint(self) -> dict[str, Any]:
        """Orientation, spacing and size, plus the HU windows (applied in the transform, after the cache)."""
        return {**self.preprocessing.fingerprint(), "hu_windows": list(self.config.hu_windows)}


def _split_series(text: str) -> tuple[str, int | None]:
    """``"folder#series=3"`` -> ("folder", 3); ``"folder"`` -> ("folder", None)."""
    if SERIES_FRAGMENT not in text:
        return text, None
    base, _, number = text.rpartition(SERIES_FRAGMENT)
    try:
        return base, int(number)
    except ValueError as error:
        raise ModalityError("bad_reference", "'#series=' must be followed by an integer SeriesNumber") from error
