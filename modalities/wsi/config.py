"""``WSIConfig``: the options of the whole-slide-image modality (a ``modalities.wsi`` YAML section)."""

from __future__ import annotations

from dataclasses import dataclass

from medclip.config import ConfigError
from medclip.types import ModalityConfig

from .spacing import MAX_MPP, MIN_MPP, plausible_mpp
from .tissue import WSI_TISSUE_DETECTORS, TissueOptions

SOURCES = ("pixels", "features")


@dataclass
class WSIConfig(ModalityConfig):
    """Options of the wsi modality.

    Attributes:
        encoder: how patch embeddings become one vector: "abmil" (gated attention-MIL), "transformer" (with 2-D
            positions) or "mean". A spot-level sample (one patch) works with any of them.
        width: hidden size of the slide encoder; the pooled output and the patch tokens have this many features.
        layers: transformer layers.
        heads: transformer attention heads.
        dropout: dropout inside the slide encoder.
        source: "pixels" (read patches and run the patch encoder) or "features" (precomputed patch embeddings from
            the feature cache; see ``cache.py``), so slide-level training never re-reads slides.
        patch_encoder: any timm model name; built with random weights unless ``patch_weights`` is given.
        patch_weights: a local ``.safetensors`` file of the patch encoder's weights; nothing is ever downloaded.
        freeze_patch_encoder: keep the patch encoder's weights fixed (a pretrained pathology backbone).
        feature_dim: width of cached patch features (``source: features``); must match the cache.
        feature_cache: folder of the feature cache; a slide cell is looked up there when ``source: features``.
        reader: "tiffslide" (default, pure Python) or "openslide" (when installed).
        mpp: target resolution in microns per pixel; 0.5 is the usual 20x magnification. Must lie in the plausible
            range of ``spacing.py`` (0.01 to 100), as must ``assume_mpp`` and the MPP of slides and patch cells.
        patch_size: patch side in pixels at ``mpp``.
        stride: grid step in pixels at ``mpp``; 0 = ``patch_size`` (no overlap).
        min_tissue_fraction: a grid patch is kept when at least this fraction of it is tissue on the thumbnail.
        tissue_detector: "optical_density" (default: optical density above the slide's glass, robust across stains,
            ignores marker ink and debris) or "saturation_otsu" (the first detector, kept for comparison).
        tissue_min_density: optical_density: total OD (R + G + B) above the glass that counts as pale tissue next
            to stained tissue; raise it if faint smudges on the glass are taken for tissue.
        tissue_min_saturation: saturation_otsu: floor on the Otsu saturation threshold, so a blank slide's noise is
            never "tissue".
        thumbnail_size: longest side in pixels of the thumbnail the tissue mask is computed on.
        max_patches: patches per slide-level sample (an even spread over the tissue); 0 = every tissue patch.
        threads: reader threads per slide (tile decoding releases the GIL).
        assume_mpp: the MPP to use for slides without MPP metadata; 0 = refuse them (``no_mpp``). Set it only when
            you know the scanner's resolution.
        augment: random flips and 90-degree rotations of each patch in training (tissue has no orientation).
    """

    encoder: str = "abmil"
    width: int = 256
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    source: str = "pixels"
    patch_encoder: str = "resnet18"
    patch_weights: str = ""
    freeze_patch_encoder: bool = False
    feature_dim: int = 0
    feature_cache: str = ""
    reader: str = "tiffslide"
    mpp: float = 0.5  # 20x: the resolution most pathology foundation models are trained at
    patch_size: int = 224  # the input size of most timm backbones
    stride: int = 0
    min_tissue_fraction: float = 0.5
    tissue_detector: str = "optical_density"
    tissue_min_density: float = 0.02  # a 1.5% darkening of every channel: above glass noise, below faded stroma
    tissue_min_saturation: float = 0.05
    thumbnail_size: int = 1024
    max_patches: int = 64
    threads: int = 4
    assume_mpp: float = 0.0
    augment: bool = True

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"wsi source {self.source!r} is unknown; use one of: {', '.join(SOURCES)}")
        if self.source == "features" and self.feature_dim < 1:
            raise ConfigError("wsi source 'features' needs feature_dim: the width of the cached patch features")
        for name in ("width", "layers", "heads", "patch_size", "threads", "thumbnail_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"wsi {name} must be at least 1, got {getattr(self, name)}")
        if self.width % self.heads:
            raise ConfigError(f"wsi width {self.width} must be divisible by heads {self.heads}")
        if not plausible_mpp(self.mpp):
            raise ConfigError(f"wsi mpp must lie in [{MIN_MPP:g}, {MAX_MPP:g}] microns per pixel, got {self.mpp}")
        for name in ("stride", "max_patches", "feature_dim"):
            if getattr(self, name) < 0:
                raise ConfigError(f"wsi {name} must be 0 or positive, got {getattr(self, name)}")
        if self.assume_mpp != 0 and not plausible_mpp(self.assume_mpp):
            raise ConfigError(
                f"wsi assume_mpp must be 0 (refuse slides without MPP) or in [{MIN_MPP:g}, {MAX_MPP:g}], "
                f"got {self.assume_mpp}"
            )
        if self.tissue_detector not in WSI_TISSUE_DETECTORS:
            raise ConfigError(
                f"wsi tissue_detector {self.tissue_detector!r} is unknown; "
                f"use one of: {', '.join(WSI_TISSUE_DETECTORS)}"
            )
        if not 0.0 < self.tissue_min_density < 1.0:
            raise ConfigError(f"wsi tissue_min_density must be in (0, 1), got {self.tissue_min_density}")
        if self.max_decoded_mb <= 0:
            raise ConfigError(f"wsi max_decoded_mb must be positive, got {self.max_decoded_mb}")
        if not 0.0 <= self.min_tissue_fraction <= 1.0:
            raise ConfigError(f"wsi min_tissue_fraction must be in [0, 1], got {self.min_tissue_fraction}")
        if not 0.0 <= self.tissue_min_saturation < 1.0:
            raise ConfigError(f"wsi tissue_min_saturation must be in [0, 1), got {self.tissue_min_saturation}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"wsi dropout must be in [0, 1), got {self.dropout}")
        if self.patch_weights and not self.patch_weights.endswith(".safetensors"):
            raise ConfigError("wsi patch_weights must be a local .safetensors file (pickled weights are never loaded)")

    @property
    def grid_stride(self) -> int:
        """The grid step in pixels at ``mpp``."""
        return self.stride or self.patch_size

    @property
    def tissue_options(self) -> TissueOptions:
        """The settings of the tissue detectors."""
        return TissueOptions(min_density=self.tissue_min_density, min_saturation=self.tissue_min_saturation)
