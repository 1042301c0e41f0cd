"""The ``wsi`` modality: whole-slide images, patch grids at a target MPP, slide encoders, spatial transcriptomics."""

from .backends import READERS, Level, SlideBackend
from .cache import build_feature_cache, read_features, slide_key, write_features
from .config import WSIConfig
from .encoder import WSIEncoder
from .grid import PatchGrid, tissue_grid
from .patch_encoder import TimmPatchEncoder
from .plugin import WSIModality
from .reference import PatchSpec, SlideReference, format_reference, parse_reference
from .slide import Slide, open_slide
from .slide_encoders import SLIDE_ENCODERS
from .tissue import otsu_threshold, saturation, tissue_mask

__all__ = [
    "READERS",
    "SLIDE_ENCODERS",
    "Level",
    "PatchGrid",
    "PatchSpec",
    "Slide",
    "SlideBackend",
    "SlideReference",
    "TimmPatchEncoder",
    "WSIConfig",
    "WSIEncoder",
    "WSIModality",
    "build_feature_cache",
    "format_reference",
    "open_slide",
    "otsu_threshold",
    "parse_reference",
    "read_features",
    "saturation",
    "slide_key",
    "tissue_grid",
    "tissue_mask",
    "write_features",
]
