"""The patch-feature cache: patch embeddings + coordinates per slide, so slide-level training never re-reads slides.

One slide = two files in the cache folder, named by the slide's content key (never its file name, which can carry
identifiers): ``<key>.safetensors`` with ``features`` (N, F) float16 and ``coords`` (N, 2) int64 (level-0 top-left of
each patch), and ``<key>.json`` saying how they were made (patch encoder, weights fingerprint, MPP, patch size,
stride). Nothing is pickled. A manifest then points at the slide as usual and the config says ``source: features``
and ``feature_cache: DIR`` (or the manifest cell names the ``.safetensors`` file directly).

Build it with ``python -m modalities.wsi.cache --manifest manifest.csv --out DIR [--config run.yaml] [key=value]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medclip.data.safe_io import read_limited, require_regular_file
from medclip.types import ModalityError

from .config import WSIConfig
from .grid import tissue_grid
from .normalisation import PixelNormalisation, resolve_normalisation
from .patch_encoder import TimmPatchEncoder
from .slide import open_slide
from .transforms import to_tensor

logger = logging.getLogger("medclip.wsi")

CACHE_FORMAT = "medclip.wsi.features/1"
KEY_BYTES = 1 << 20  # a slide's key hashes its size and first and last MiB: unique in practice, fast on huge files
MAX_RECORD_BYTES = 1 << 20  # a cache entry's .json record is a few hundred bytes


def slide_key(path: str | os.PathLike) -> str:
    """A content key of a slide file: moving or renaming the file keeps its cache entry, editing it does not.

    Raises:
        ModalityError: ``missing_file`` or ``not_regular_file`` (checked before the file is opened).
    """
    path = Path(path)
    size = require_regular_file(path, "slide").st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(KEY_BYTES))
        if size > KEY_BYTES:
            handle.seek(max(size - KEY_BYTES, KEY_BYTES))
            digest.update(handle.read(KEY_BYTES))
    return f"slide-{digest.hexdigest()[:24]}"


def weights_fingerprint(path: str) -> str:
    """sha256 of the patch encoder's weights file, or "random-init"."""
    if not path:
        return "random-init"
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_features(folder: str | os.PathLike, key: str, features: np.ndarray, coords: np.ndarray, meta: dict) -> Path:
    """Write one slide's entry (safetensors + JSON); returns the ``.safetensors`` path."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        "features": np.ascontiguousarray(features, dtype=np.float16),  # (N, F); float16 halves the cache
        "coords": np.ascontiguousarray(coords, dtype=np.int64),  # (N, 2)
    }
    target = folder / f"{key}.safetensors"
    temporary = folder / f".{key}.safetensors.tmp"
    save_file(tensors, str(temporary))
    os.replace(temporary, target)  # atomic: a crash never leaves half an entry
    record = {"format": CACHE_FORMAT, "feature_dim": int(features.shape[1]), "n_patches": int(len(features)), **meta}
    (folder / f"{key}.json").write_text(json.dumps(record, indent=1))
    return target


def read_features(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One cache entry -> (features (N, F) float32, coords (N, 2) int64, its JSON record).

    Raises:
        ModalityError: ``missing_file``, ``not_regular_file``, ``too_large`` (an oversized record) or ``unreadable``
            (a bad file, a wrong format, inconsistent shapes).
    """
    from safetensors.numpy import load_file

    path = Path(path)
    sidecar = path.with_suffix(".json")
    require_regular_file(path, "cached slide features")
    record_bytes = read_limited(sidecar, MAX_RECORD_BYTES, "cached features' .json record")
    try:
        tensors = load_file(str(path))
        record = json.loads(record_bytes)
    except Exception as error:
        raise ModalityError(
            "unreadable", f"the cached slide features could not be read ({type(error).__name__})"
        ) from None
    features, coords = tensors.get("features"), tensors.get("coords")
    if (
        record.get("format") != CACHE_FORMAT
        or features is None
        or coords is None
        or features.ndim != 2
        or coords.shape != (features.shape[0], 2)
    ):
        raise ModalityError("unreadable", f"the cached slide features are not a {CACHE_FORMAT} entry")
    return features.astype(np.float32), coords.astype(np.int64), record


def patch_weights_file(cfg: WSIConfig) -> str:
    """The weights the cache embeds patches with: ``patch_weights``, else a ``weights:`` file (a converted patch
    backbone, ``medclip convert-weights --to wsi``), so cached features come from the encoder training would build."""
    return cfg.patch_weights or cfg.weights


def cache_record(cfg: WSIConfig, extent: float, normalisation: PixelNormalisation) -> dict[str, Any]:
    """What a cache entry records about how its features were made (checked against the training config)."""
    return {
        "patch_encoder": cfg.patch_encoder,
        "patch_weights": weights_fingerprint(patch_weights_file(cfg)),
        "pixel_mean": list(normalisation.mean),
        "pixel_std": list(normalisation.std),
        "mpp": cfg.mpp,
        "patch_size": cfg.patch_size,
        "stride": cfg.grid_stride,
        "extent": float(extent),
        "reader": cfg.reader,
    }


@torch.no_grad()
def build_feature_cache(
    slides: Iterable[str | os.PathLike],
    folder: str | os.PathLike,
    cfg: WSIConfig,
    batch_size: int = 64,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Embed every tissue patch of each slide and write its cache entry; bad slides are counted by reason.

    Args:
        slides: slide files.
        folder: the cache folder.
        cfg: grid (mpp, patch_size, stride, tissue) and patch encoder (name, weights) settings.
        batch_size: patches per forward pass.
        device: where the patch encoder runs ("cuda" on a GPU box).
        seed: seeds a random-init encoder, so two caches built without weights agree.

    Returns:
        ``{"written": n, "reused": n, "skipped": {reason: count}, "feature_dim": F}``.
    """
    torch.manual_seed(seed)
    encoder = TimmPatchEncoder(cfg.patch_encoder, patch_weights_file(cfg)).to(device).eval()
    pixels = resolve_normalisation(cfg)  # the statistics the backbone's weights were trained with
    written, reused, skipped = 0, 0, Counter()
    for index, path in enumerate(slides):
        try:
            key = slide_key(path)
        except ModalityError as error:
            skipped[error.reason] += 1
            logger.warning("slide %d: skipped [%s]", index + 1, error.reason)
            continue
        if (Path(folder) / f"{key}.safetensors").is_file():
            reused += 1
            continue
        try:
            slide = open_slide(path, cfg.reader, cfg.assume_mpp, cfg.max_decoded_mb)
            grid = tissue_grid(
                slide,
                cfg.mpp,
                cfg.patch_size,
                cfg.grid_stride,
                cfg.min_tissue_fraction,
                cfg.thumbnail_size,
                cfg.tissue_detector,
                cfg.tissue_options,
                cfg.max_decoded_mb,
            )
            chunks = []
            for start in range(0, len(grid), batch_size):
                coords = grid.coordinates[start : start + batch_size]
                patches = slide.read_patches(coords, cfg.patch_size, cfg.mpp, cfg.threads)  # (b, S, S, 3)
                normalised = to_tensor(patches, pixels.mean, pixels.std).to(device)  # (b, 3, S, S)
                chunks.append(encoder(normalised).float().cpu().numpy())  # (b, F)
        except ModalityError as error:
            skipped[error.reason] += 1
            logger.warning("slide %d: skipped [%s] %s", index + 1, error.reason, error)
            continue
        write_features(folder, key, np.concatenate(chunks), grid.coordinates, cache_record(cfg, grid.extent, pixels))
        written += 1
    return {"written": written, "reused": reused, "skipped": dict(skipped), "feature_dim": encoder.output_dim}


def main(argv: list[str] | None = None) -> int:
    from medclip import config as config_module
    from medclip.data import read_manifest

    parser = argparse.ArgumentParser(
        prog="python -m modalities.wsi.cache", description="Precompute patch features of every slide in a manifest."
    )
    parser.add_argument("--manifest", required=True, help="CSV/Parquet manifest with a slide column")
    parser.add_argument("--column", default="wsi", help="the slide column (default: wsi)")
    parser.add_argument("--out", required=True, help="the cache folder")
    parser.add_argument("--config", help="a pretrain YAML; its modalities.wsi section sets the grid and patch encoder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("overrides", nargs="*", help="wsi options as key=value (e.g. patch_encoder=resnet50 mpp=0.5)")
    args = parser.parse_args(argv)
    options: dict[str, Any] = {}
    if args.config:
        options = dict((config_module.read_yaml(args.config).get("modalities") or {}).get(args.column) or {})
    options = config_module.apply_overrides(options, args.overrides)
    options["source"], options["feature_dim"] = "pixels", 0  # the cache is made from pixels
    cfg = config_module.build(WSIConfig, options, _path="wsi")
    manifest = read_manifest(args.manifest, [args.column])
    from .reference import parse_reference

    slides = []
    for row in manifest.rows:
        cell = row.cells.get(args.column)
        if cell is not None:
            reference = parse_reference(cell, manifest.root)
            if reference.patch is None and not reference.is_features:
                slides.append(reference.path)
    summary = build_feature_cache(dict.fromkeys(slides), args.out, cfg, args.batch_size, args.device)
    summary["config"] = {key: value for key, value in asdict(cfg).items() if key != "feature_cache"}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
