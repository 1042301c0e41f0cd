"""``ImageModality``: 2-D medical images (radiographs, mammograms, fundus photographs, multichannel microscopy).

Pipeline: ``resolve`` (manifest cell; ``stack.tiff#channels=DNA,ER,...`` names a stack's channels) -> ``load``
(reader -> display intensities in [0, 1] + pixel size + allow-listed metadata; with ``cache_dir`` set, the
deterministic preprocessing runs here once and is cached as float16) -> ``transforms`` (fit/pad or resample unless
cached, augmentation) -> ``collate`` -> timm backbone (``encoder.ImageEncoder``). See docs/image.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medclip.data.cache import OwnsPreprocessCache
from medclip.explain.grid import GridLayout, infer_grid
from medclip.types import Modality, ModalityError, Sample

from .augment import ImageAugmentation
from .config import ImageConfig
from .encoder import ImageEncoder
from .options import ReadOptions
from .phantom import synthetic_records
from .pipeline import ImagePreprocessing, check_fingerprint, image_sample, load_image_sample
from .readers import IMAGE_READERS, image_format
from .transform import ImageTransform

STATE_FORMAT = "medclip.image/1"
CHANNELS_FRAGMENT = "#channels="


def image_preprocessing(cfg: ImageConfig) -> ImagePreprocessing:
    """The deterministic preprocessing a config describes (its fingerprint keys the cache and the checkpoint)."""
    size = (int(cfg.size[0]), int(cfg.size[1]))
    return ImagePreprocessing(size, float(cfg.spacing), float(cfg.pad_value), ReadOptions.from_config(cfg))


class ImageModality(OwnsPreprocessCache, Modality):
    """2-D images as a medclip modality (see the module docstring and docs/image.md)."""

    name = "image"
    config_class = ImageConfig
    file_suffixes = (".png", ".jpg", ".jpeg")  # .dcm, .tif and .npy are shared with other plugins: --modality image
    # timm / open_clip visual weights (`medclip convert-weights --from timm --to image`) fill the timm backbone; the
    # channel-adaptive stem of multichannel images stays new (it feeds the backbone three channels).
    weight_slots = {"timm_backbone": "backbone"}

    def __init__(self, config: ImageConfig | None = None) -> None:
        super().__init__(config)
        self.config: ImageConfig
        self.preprocessing = image_preprocessing(self.config)

    # --- manifest cell -> reference -> sample ----------------------------------------------------------------------
    def resolve(self, value: str, root: str | os.PathLike) -> os.PathLike | Mapping[str, Any]:
        """A path relative to ``root``; ``stack.tiff#channels=a,b,c`` also names the stack's channels in order."""
        text, channels = _split_channels(value)
        path = super().resolve(text, root)
        return path if channels is None else {"path": path, "channels": channels}

    def load(self, ref: str | os.PathLike | Mapping[str, Any]) -> Sample:
        """Read an image as display intensities (or its cached preprocessed form when ``cache_dir`` is set).

        Returns:
            ``{"image": (C, H, W) float32 in [0, 1] (float16 (C, *size) when cached), "image_meta": {shape, spacing,
            source, study_pseudonym, photometric_interpretation, voi, view_position, ...}}``.

        Raises:
            ModalityError: ``missing_file``, ``not_regular_file``, ``unsupported_format``, ``bad_reference`` and each
                reader's reasons (docs/image.md lists them).
        """
        path, channels = _reference(ref)
        kind = image_format(path)  # a regular file from here on (a FIFO never reaches the hasher)
        options = self.preprocessing.read

        def read():
            return IMAGE_READERS.get(kind)(path, options, channels)

        extras: list[str | Path] = [path.with_suffix(".json")] if path.with_suffix(".json").is_file() else []
        if channels is not None:
            extras.append(",".join(channels))
        # With the quarantine off nothing is cached: the cache only ever holds inputs that passed it.
        cache = self.cache if self.config.quarantine else None
        return load_image_sample(self.name, path, read, self.preprocessing, cache, extras)

    # --- tensors ---------------------------------------------------------------------------------------------------
    def transforms(self, train: bool) -> Callable[[Sample], Sample]:
        """Image -> (C, *cfg.size) float16 in [0, 1]; augmented when ``train`` (no left-right flips by default)."""
        cfg = self.config
        augmentation = None
        if train and cfg.augment:
            augmentation = ImageAugmentation(
                rotation_degrees=cfg.rotation_degrees,
                scale_range=cfg.scale_range,
                translate_fraction=cfg.translate_fraction,
                intensity_jitter=cfg.intensity_jitter,
                noise_std=cfg.noise_std,
                horizontal_flip=cfg.horizontal_flip,
                vertical_flip=cfg.vertical_flip,
                pad_value=cfg.pad_value,
            )
        multichannel = cfg.image_type == "multichannel"
        dropout = cfg.channel_dropout if train else 0.0
        return ImageTransform(self.name, image_preprocessing(cfg), augmentation, multichannel, dropout)

    def collate(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """{image: (B, C, H, W) float16 (or {"pixels", "channels": (B, C) bool}), image_mask: (B,) bool}."""
        present = torch.tensor([sample.get(self.name) is not None for sample in samples], dtype=torch.bool)  # (B,)
        shape = (self.config.in_channels, *self.config.size)
        batch = torch.zeros((len(samples), *shape), dtype=torch.float16)  # (B, C, H, W)
        channels = torch.zeros((len(samples), shape[0]), dtype=torch.bool)  # (B, C)
        for row, sample in enumerate(samples):
            if not present[row]:
                continue
            image = sample[self.name]
            if tuple(image.shape) != shape:
                raise ValueError(
                    f"{self.name} images must be transformed before collate: got shape {tuple(image.shape)}, "
                    f"expected {shape}"
                )
            if isinstance(image, torch.Tensor):
                batch[row] = image
            else:  # e.g. a cache's read-only memory map: copied straight in
                batch[row].numpy()[...] = image
            channels[row] = sample.get(f"{self.name}_channels", True)
        if self.config.image_type == "multichannel":
            return {self.name: {"pixels": batch, "channels": channels}, f"{self.name}_mask": present}
        return {self.name: batch, f"{self.name}_mask": present}

    def build_encoder(self) -> nn.Module:
        """The timm backbone ``cfg.encoder`` with tokens (see ``encoder.ImageEncoder`` for its module layout)."""
        cfg = self.config
        return ImageEncoder(cfg)

    def synthetic(self, n: int, seed: int = 0) -> list[Sample]:
        """``n`` small synthetic images of the configured type (chest radiographs, fundus discs or cell stacks)."""
        return [image_sample(self.name, record) for record in synthetic_records(self.config, n, seed)]

    # --- grounding maps ----------------------------------------------------------------------------------------------
    def token_layout(self, inputs: torch.Tensor | Mapping[str, torch.Tensor], token_count: int) -> GridLayout:
        """The backbone's tokens on a grid over the preprocessed image (ViT patches or the last feature map: one
        stride for both axes, found from the token count); drawn on the image itself (multichannel: the mean of the
        channels present)."""
        if isinstance(inputs, Mapping):
            pixels = inputs["pixels"][0].float()  # (C, H, W)
            present = inputs["channels"][0]  # (C,)
            background = pixels[present].mean(dim=0) if bool(present.any()) else pixels.mean(dim=0)  # (H, W)
        else:
            pixels = inputs[0].float()  # (C, H, W)
            background = pixels[0] if pixels.shape[0] == 1 else pixels.permute(1, 2, 0)  # (H, W) or (H, W, 3)
        size = tuple(int(value) for value in pixels.shape[-2:])
        grid, stride = infer_grid(size, token_count)
        return GridLayout(grid, stride, background.cpu().numpy())

    # --- preprocessing fingerprint ---------------------------------------------------------------------------------
    def preprocess_state(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "config": asdict(self.config),
            "fingerprint": self.preprocessing.fingerprint(),
            "fingerprint_hash": self.preprocessing.fingerprint_hash,
        }

    def load_preprocess_state(self, state: Mapping[str, Any]) -> None:
        """Check that the saved fingerprint is the one this config produces (the caller restored the config)."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"image preprocess state has format {state.get('format')!r}, expected {STATE_FORMAT}")
        if state.get("fingerprint_hash") != self.preprocessing.fingerprint_hash:
            raise ValueError("image preprocess state: its fingerprint does not match the restored config's")

    def check_compatible(self, sample_meta: Mapping[str, Any]) -> None:
        """Refuse an input preprocessed (cached) with other settings than this model's (``preprocess_mismatch``)."""
        check_fingerprint(sample_meta, self.preprocessing)


def _split_channels(text: str) -> tuple[str, list[str] | None]:
    """``"stack.tiff#channels=DNA,ER"`` -> ("stack.tiff", ["DNA", "ER"]); no fragment -> (text, None)."""
    if CHANNELS_FRAGMENT not in text:
        return text, None
    base, _, names = text.rpartition(CHANNELS_FRAGMENT)
    channels = [name.strip() for name in names.split(",")]
    if not channels or any(not name for name in channels):
        raise ModalityError("bad_reference", "'#channels=' must be followed by comma-separated channel names")
    return base, channels


def _reference(ref: str | os.PathLike | Mapping[str, Any]) -> tuple[Path, list[str] | None]:
    if isinstance(ref, Mapping):
        if "path" not in ref or set(ref) - {"path", "channels"}:
            raise ModalityError("bad_reference", "an image reference mapping holds 'path' and optionally 'channels'")
        channels = ref.get("channels")
        if channels is not None and (
            isinstance(channels, str) or not all(isinstance(name, str) and name for name in channels)
        ):
            raise ModalityError("bad_reference", "an image reference's 'channels' must be a list of names")
        return Path(ref["path"]), None if channels is None else list(channels)
    text, channels = _split_channels(os.fspath(ref))
    return Path(text), channels
