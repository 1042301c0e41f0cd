"""``WSIModality``: whole-slide images as bags of tissue patches, single patches, or cached patch features.

Manifest cells are described in ``reference.py``. Loading a slide cell finds the tissue on a thumbnail
(``tissue.py``), lays the patch grid at the target MPP (``grid.py``), keeps up to ``max_patches`` patches spread over
the tissue and reads them in threads (``slide.py``); a patch cell reads one patch; with ``source: features`` the
slide's cached patch embeddings are read instead (``cache.py``). Every sample carries the level-0 coordinates of its
patches (``wsi_coords``), which the transformer slide encoder turns into 2-D positions.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medclip.data.safe_io import require_regular_file
from medclip.explain.patches import PatchLayout
from medclip.types import Modality, ModalityError, Sample

from .config import WSIConfig
from .encoder import WSIEncoder
from .grid import PatchGrid, tissue_grid
from .normalisation import PixelNormalisation, from_fingerprint, resolve_normalisation
from .reference import PatchSpec, SlideReference, parse_reference
from .slide import Slide, open_slide
from .spacing import check_mpp
from .transforms import WSITransform

STATE_FORMAT = "medclip.wsi/1"
MPP_MISMATCH = 0.05  # inputs more than 5% off the training MPP show tissue at another scale: refused
MAX_CACHED_GRIDS = 64


class WSIModality(Modality):
    """Whole-slide images (see the module docstring)."""

    name = "wsi"
    config_class = WSIConfig
    file_suffixes = (".svs", ".tif", ".tiff", ".ndpi", ".scn", ".mrxs", ".bif", ".vms", ".svslide")
    # timm backbones (converted open_clip visual towers, timm checkpoints) fill the patch encoder's model
    weight_slots = {"timm_backbone": "patch_encoder.model"}
    backbone_option = "patch_encoder"

    def __init__(self, config: WSIConfig | None = None) -> None:
        super().__init__(config)
        self.config: WSIConfig
        self._grids: OrderedDict[tuple, PatchGrid] = OrderedDict()
        self._normalisation: PixelNormalisation | None = None  # resolved on first use, or restored from a checkpoint

    @property
    def normalisation(self) -> PixelNormalisation:
        """The pixel statistics of the patch encoder's weights (``normalisation.py``)."""
        if self._normalisation is None:
            self._normalisation = resolve_normalisation(self.config)
        return self._normalisation

    # --- manifest cell -> reference -> sample ------------------------------------------------------------------------
    def resolve(self, value: str, root: str | os.PathLike) -> Path | Mapping[str, Any]:
        """A slide or feature file -> its path (checked for existence); a patch cell -> {"path", patch fields}."""
        reference = parse_reference(value, root)
        if reference.patch is None:
            return reference.path
        return {"path": str(reference.path), **{k: v for k, v in asdict(reference.patch).items() if v is not None}}

    def _reference(self, ref: str | os.PathLike | Mapping[str, Any]) -> SlideReference:
        if not isinstance(ref, Mapping):
            return parse_reference(ref)
        if "path" not in ref:
            raise ModalityError("bad_reference", "a wsi reference mapping needs 'path'")
        fields = {key: value for key, value in ref.items() if key != "path"}
        if not fields:
            return parse_reference(os.fspath(ref["path"]))
        from .reference import parse_fragment

        return SlideReference(Path(ref["path"]), parse_fragment(",".join(f"{k}={v}" for k, v in fields.items())))

    def load(self, ref: str | os.PathLike | Mapping[str, Any]) -> Sample:
        """One slide (bag of patches), one patch, or one slide's cached features.

        Returns:
            ``{"wsi": (N, S, S, 3) uint8 or (N, F) float32, "wsi_coords": (N, 2) int64 level-0 top-left corners,
            "wsi_meta": {kind, mpp, patch_size, extent, n_patches, ...}}``.

        Raises:
            ModalityError: missing_file, not_regular_file, unreadable, unsupported_layout, empty_level, too_large,
                no_mpp, implausible_spacing, unreadable_level, no_tissue, out_of_bounds, bad_reference, not_cached,
                feature_mismatch (see docs/wsi.md).
        """
        reference = self._reference(ref)
        if reference.is_features:
            return self._load_features(reference.path)
        if self.config.source == "features":
            if reference.patch is not None:
                raise ModalityError("bad_reference", "with source 'features' a wsi cell names a slide, not a patch")
            return self._load_cached(reference.path)
        slide = open_slide(reference.path, self.config.reader, self.config.assume_mpp, self.config.max_decoded_mb)
        if reference.patch is not None:
            return self._load_patch(slide, reference.patch)
        return self._load_slide(slide, reference.path)

    def _grid(self, slide: Slide, path: Path) -> PatchGrid:
        cfg = self.config
        key = (str(path.absolute()), path.stat().st_mtime_ns, cfg.reader, cfg.mpp, cfg.patch_size, cfg.grid_stride,
               cfg.min_tissue_fraction, cfg.thumbnail_size, cfg.tissue_detector, cfg.tissue_options, cfg.assume_mpp,
               cfg.max_decoded_mb)  # fmt: skip
        if key not in self._grids:
            self._grids[key] = tissue_grid(
                slide, cfg.mpp, cfg.patch_size, cfg.grid_stride, cfg.min_tissue_fraction, cfg.thumbnail_size,
                cfg.tissue_detector, cfg.tissue_options, cfg.max_decoded_mb,
            )  # fmt: skip
            while len(self._grids) > MAX_CACHED_GRIDS:
                self._grids.popitem(last=False)
        self._grids.move_to_end(key)
        return self._grids[key]

    def _load_slide(self, slide: Slide, path: Path) -> Sample:
        cfg = self.config
        grid = self._grid(slide, path)
        coords = grid.coordinates[grid.spread(cfg.max_patches)]  # (N, 2)
        pixels = slide.read_patches(coords, cfg.patch_size, cfg.mpp, cfg.threads)  # (N, S, S, 3)
        meta = {
            "kind": "slide",
            "mpp": cfg.mpp,
            "patch_size": cfg.patch_size,
            "extent": grid.extent,
            "n_patches": len(coords),
            "tissue_patches": len(grid),
            "level": slide.level_for_mpp(cfg.mpp),
            "mpp_source": slide.mpp_source,
            "reader": cfg.reader,
        }
        return {self.name: pixels, f"{self.name}_coords": coords, f"{self.name}_meta": meta}

    def _load_patch(self, slide: Slide, spec: PatchSpec) -> Sample:
        size = spec.size or self.config.patch_size
        if spec.level is not None:
            if spec.level >= len(slide.levels):
                raise ModalityError(
                    "bad_reference", f"level {spec.level} does not exist; the slide has {len(slide.levels)}"
                )
            downsample = slide.levels[spec.level].downsample
            extent = size * downsample
            x, y = self._corner(spec, extent)
            pixels = slide.read_region(x, y, spec.level, size, size)
            mpp = slide.mpp * downsample if slide.mpp is not None else None
            level = spec.level
        else:
            mpp = check_mpp(spec.mpp, "patch reference's MPP") if spec.mpp is not None else self.config.mpp
            extent = slide.patch_extent(size, mpp)
            x, y = self._corner(spec, extent)
            pixels = slide.read_patch(x, y, size, mpp)
            level = slide.level_for_mpp(mpp)
        meta = {
            "kind": "patch",
            "mpp": mpp,
            "patch_size": size,
            "extent": float(extent),
            "n_patches": 1,
            "level": level,
            "mpp_source": slide.mpp_source,
            "reader": self.config.reader,
        }
        coords = np.array([[x, y]], dtype=np.int64)  # (1, 2)
        return {self.name: pixels[None], f"{self.name}_coords": coords, f"{self.name}_meta": meta}

    @staticmethod
    def _corner(spec: PatchSpec, extent: float) -> tuple[int, int]:
        """Level-0 top-left of a patch given by its corner or its centre."""
        if spec.x is not None:
            return int(spec.x), int(spec.y)
        return int(round(spec.cx - extent / 2)), int(round(spec.cy - extent / 2))

    def _load_cached(self, slide_path: Path) -> Sample:
        if not self.config.feature_cache:
            raise ModalityError("not_cached", "source 'features' needs wsi.feature_cache (the cache folder)")
        require_regular_file(slide_path, "slide")  # slide_key reads it: never a FIFO or a device
        from .cache import slide_key  # lazy: cache.py is also run as a script (python -m modalities.wsi.cache)

        entry = Path(self.config.feature_cache) / f"{slide_key(slide_path)}.safetensors"
        if not entry.is_file():
            raise ModalityError(
                "not_cached",
                "the slide has no entry in the feature cache; build it with python -m modalities.wsi.cache",
            )
        return self._load_features(entry)

    def _load_features(self, path: Path) -> Sample:
        from .cache import read_features

        features, coords, record = read_features(path)
        cfg = self.config
        if cfg.source != "features":
            raise ModalityError("feature_mismatch", "a cached-features cell needs wsi.source: features")
        if features.shape[1] != cfg.feature_dim:
            raise ModalityError(
                "feature_mismatch",
                f"cached features have width {features.shape[1]}, wsi.feature_dim is {cfg.feature_dim}",
            )
        if not features.shape[0]:
            raise ModalityError("no_tissue", "the cached slide has no patch")
        meta = {
            "kind": "features",
            "mpp": record.get("mpp"),
            "patch_size": record.get("patch_size"),
            "extent": float(record.get("extent", 1.0)),
            "n_patches": int(features.shape[0]),
            "patch_encoder": record.get("patch_encoder"),
            "patch_weights": record.get("patch_weights"),
        }
        return {self.name: features, f"{self.name}_coords": coords, f"{self.name}_meta": meta}

    # --- tensors -----------------------------------------------------------------------------------------------------
    def transforms(self, train: bool) -> Callable[[Sample], Sample]:
        """Patches -> normalised (N, 3, S, S) tensors (dihedral turns in training); features -> (N, F) tensors."""
        cfg = self.config
        if cfg.source == "features":  # cached features are already embedded: no pixel statistics needed
            return WSITransform(self.name, train, cfg.augment, cfg.max_patches)
        pixels = self.normalisation
        return WSITransform(self.name, train, cfg.augment, cfg.max_patches, pixels.mean, pixels.std)

    def collate(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """Pad bags to the batch's largest: ``{"wsi": {"pixels" (B, N, 3, S, S) | "features" (B, N, F),
        "positions" (B, N, 2) in patch units, "patch_mask" (B, N) bool}, "wsi_mask": (B,) bool}``."""
        present = torch.tensor([self.name in sample for sample in samples], dtype=torch.bool)  # (B,)
        kept = [sample for sample in samples if self.name in sample]
        tensors = [torch.as_tensor(sample[self.name]) for sample in kept]
        if any(t.is_floating_point() is False for t in tensors):
            raise ValueError("wsi samples must be transformed (transforms()) before collate")
        kinds = {t.ndim for t in tensors}
        if len(kinds) > 1:
            raise ValueError("a wsi batch mixes pixel patches and cached features")
        use_features = kinds == {2} or (not kinds and self.config.source == "features")
        longest = max((t.shape[0] for t in tensors), default=1)
        if use_features:
            width = tensors[0].shape[1] if tensors else self.config.feature_dim
            data = torch.zeros(len(samples), longest, width)  # (B, N, F)
        else:
            shape = tensors[0].shape[1:] if tensors else (3, self.config.patch_size, self.config.patch_size)
            if any(t.shape[1:] != shape for t in tensors):
                raise ValueError(
                    f"wsi patches of one batch must share a size; got {sorted({tuple(t.shape[1:]) for t in tensors})}"
                )
            data = torch.zeros(len(samples), longest, *shape)  # (B, N, 3, S, S)
        positions = torch.zeros(len(samples), longest, 2)  # (B, N, 2)
        patch_mask = torch.zeros(len(samples), longest, dtype=torch.bool)  # (B, N)
        for row, sample, tensor in zip(torch.nonzero(present).flatten().tolist(), kept, tensors, strict=True):
            count = tensor.shape[0]
            data[row, :count] = tensor
            coords = torch.as_tensor(np.asarray(sample[f"{self.name}_coords"]), dtype=torch.float32)  # (N, 2)
            extent = float((sample.get(f"{self.name}_meta") or {}).get("extent") or 1.0)
            positions[row, :count] = (coords - coords.min(dim=0).values) / extent  # patch units from the bag's corner
            patch_mask[row, :count] = True
        key = "features" if use_features else "pixels"
        return {self.name: {key: data, "positions": positions, "patch_mask": patch_mask}, f"{self.name}_mask": present}

    def build_encoder(self) -> nn.Module:
        """Patch encoder (timm, pixels only) + slide encoder (``cfg.encoder``): batch["wsi"] -> EncoderOutput."""
        cfg = self.config
        return WSIEncoder(cfg)

    def token_layout(self, inputs: Mapping[str, torch.Tensor], token_count: int) -> PatchLayout:
        """Patch tokens at their positions on the slide's patch grid; drawn over the patches themselves (their
        pixel normalisation undone), or over an empty grid for cached features."""
        real = inputs["patch_mask"][0].cpu().numpy().astype(bool)  # (N,)
        positions = inputs["positions"][0].cpu().numpy()[real]  # (P, 2)
        patches = None
        if "pixels" in inputs:
            pixels = inputs["pixels"][0][inputs["patch_mask"][0]].float()  # (P, 3, S, S) normalised
            mean = torch.tensor(self.normalisation.mean).view(1, 3, 1, 1)
            std = torch.tensor(self.normalisation.std).view(1, 3, 1, 1)
            patches = (pixels.cpu() * std + mean).permute(0, 2, 3, 1).numpy()  # (P, S, S, 3) in [0, 1]
        return PatchLayout(positions, patches)

    def synthetic(self, n: int, seed: int = 0) -> list[Sample]:
        """``n`` procedural H&E-like bags of 2 patches (features of random size when ``source: features``)."""
        if self.config.source == "features":
            rng = np.random.default_rng(seed)
            samples = []
            for _ in range(n):
                count = int(rng.integers(2, 6))
                coords = np.stack([np.arange(count) * 256, np.zeros(count, np.int64)], axis=1).astype(np.int64)
                meta = {"kind": "features", "mpp": self.config.mpp, "patch_size": 256, "extent": 256.0,
                        "n_patches": count, "patch_encoder": "synthetic"}  # fmt: skip
                features = rng.standard_normal((count, self.config.feature_dim)).astype(np.float32)
                samples.append({self.name: features, f"{self.name}_coords": coords, f"{self.name}_meta": meta})
            return samples
        from .synthetic import synthetic_samples  # lazy: synthetic.py is also a script

        return synthetic_samples(n, self.config.patch_size, self.config.mpp, seed)

    # --- preprocessing fingerprint -----------------------------------------------------------------------------------
    def preprocess_state(self) -> dict[str, Any]:
        """The config plus what decides the pixels a model sees: MPP, patch size, stride, normalisation, encoder."""
        cfg = self.config
        return {
            "format": STATE_FORMAT,
            "config": asdict(cfg),
            "fingerprint": {
                "source": cfg.source,
                "mpp": cfg.mpp,
                "patch_size": cfg.patch_size,
                "stride": cfg.grid_stride,
                "pixel_mean": list(self.normalisation.mean),
                "pixel_std": list(self.normalisation.std),
                "pixel_source": self.normalisation.source,
                "patch_encoder": cfg.patch_encoder,
                "feature_dim": cfg.feature_dim,
            },
        }

    def load_preprocess_state(self, state: Mapping[str, Any]) -> None:
        """Check the saved state is this plugin's and keep the pixel statistics it was trained with (the rest lives in
        the config, which the caller restores)."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"wsi preprocess state has format {state.get('format')!r}, expected {STATE_FORMAT}")
        saved = from_fingerprint(dict(state.get("fingerprint") or {}))
        if saved is not None:
            self._normalisation = saved

    def check_compatible(self, sample_meta: Mapping[str, Any]) -> None:
        """Refuse patches at another scale than training (``mpp_mismatch``) or features of another encoder."""
        mpp = sample_meta.get("mpp")
        if mpp is not None and abs(float(mpp) - self.config.mpp) > MPP_MISMATCH * self.config.mpp:
            raise ModalityError(
                "mpp_mismatch",
                f"the input is at {float(mpp):.3g} MPP but the model was trained at {self.config.mpp:.3g}",
            )
        if sample_meta.get("kind") == "features" and sample_meta.get("patch_encoder") not in (
            None,
            self.config.patch_encoder,
        ):
            raise ModalityError(
                "feature_mismatch", "the cached features come from another patch encoder than training's"
            )
