"""The pixel normalisation of wsi patches: the statistics the patch encoder's weights were trained with.

A pretrained backbone only sees the input it was trained on when its own mean and standard deviation are used:
OpenAI-CLIP weights expect CLIP's statistics, many ViT releases expect 0.5 / 0.5, torchvision-style ResNets ImageNet's.
So, in this order:

1. the weights file's own (``medclip.pixel_mean`` / ``medclip.pixel_std``, written by ``medclip convert-weights``
   from the source's configuration), from ``weights:`` or ``patch_weights``;
2. the backbone's ``pretrained_cfg`` in timm, for the name in ``patch_encoder`` (a tag picks the release:
   ``vit_base_patch16_224.augreg_in21k`` has 0.5 / 0.5);
3. ImageNet's, for a backbone timm has no statistics for.

A checkpoint records the statistics it was trained with (``preprocess.json``) and keeps them on reload, whatever
the files or the timm version on the loading machine say.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from medclip.registry import lazy_import

from .config import WSIConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MEAN_KEY, STD_KEY = "medclip.pixel_mean", "medclip.pixel_std"  # medclip.weights.files.PIXEL_MEAN / PIXEL_STD


@dataclass(frozen=True)
class PixelNormalisation:
    """Per-channel (R, G, B) statistics of [0, 1] pixels, and where they came from (for the fingerprint)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str


IMAGENET = PixelNormalisation(IMAGENET_MEAN, IMAGENET_STD, "imagenet")


def _channels(values: object, what: str) -> tuple[float, float, float]:
    if not isinstance(values, list | tuple) or len(values) != 3:
        raise ValueError(f"wsi {what} must hold 3 values (R, G, B)")
    channels = tuple(float(value) for value in values)
    if what.endswith("std") and min(channels) <= 0:
        raise ValueError(f"wsi {what} must be positive")
    return channels  # type: ignore[return-value]


def from_weights_file(path: str) -> PixelNormalisation | None:
    """The statistics a converted weights file records, or None when it records none (a plain safetensors file)."""
    from medclip.weights.files import read_metadata

    metadata = read_metadata(Path(path), "wsi weights")
    if MEAN_KEY not in metadata or STD_KEY not in metadata:
        return None
    return PixelNormalisation(
        _channels(json.loads(metadata[MEAN_KEY]), "pixel_mean"),
        _channels(json.loads(metadata[STD_KEY]), "pixel_std"),
        "weights",
    )


def from_backbone(name: str) -> PixelNormalisation:
    """The statistics of the timm backbone ``name`` (its tag's release), ImageNet's when timm has none."""
    timm = lazy_import("timm", "the wsi patch encoder")
    try:
        config = timm.models.get_pretrained_cfg(name)
    except (RuntimeError, ValueError, KeyError):  # a name timm cannot resolve: the encoder build names the problem
        config = None
    if config is None or config.mean is None or config.std is None or len(config.mean) != 3:
        return IMAGENET
    return PixelNormalisation(_channels(config.mean, "pixel_mean"), _channels(config.std, "pixel_std"), "timm")


def resolve_normalisation(cfg: WSIConfig) -> PixelNormalisation:
    """The statistics patches are normalised with under ``cfg`` (see the module docstring for the order)."""
    for path in (getattr(cfg, "weights", ""), cfg.patch_weights):
        if path:
            found = from_weights_file(path)
            if found is not None:
                return found
    return from_backbone(cfg.patch_encoder)


def from_fingerprint(fingerprint: dict) -> PixelNormalisation | None:
    """The statistics a checkpoint's wsi fingerprint records (None for a fingerprint without them)."""
    if "pixel_mean" not in fingerprint or "pixel_std" not in fingerprint:
        return None
    return PixelNormalisation(
        _channels(fingerprint["pixel_mean"], "pixel_mean"),
        _channels(fingerprint["pixel_std"], "pixel_std"),
        str(fingerprint.get("pixel_source", "checkpoint")),
    )
