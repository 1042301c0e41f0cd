"""The ``wsi`` modality: whole-slide images, patch grids at a target MPP, slide encoders, spatial transcriptomics.

Modules that are also command-line scripts are imported by name, not from here: ``modalities.wsi.cache`` (the
patch-feature cache), ``modalities.wsi.synthetic`` (synthetic slides and spatial data), ``modalities.wsi.spatial``
(spot -> patch manifests), ``modalities.wsi.spatial_eval`` (Recall@K per sample) and
``modalities.wsi.stained_slides`` (evaluation slides from real stained images shipped in packages).
"""

from .backends import WSI_READERS, Level, SlideBackend
from .config import WSIConfig
from .encoder import WSIEncoder
from .grid import PatchGrid, tissue_grid
from .patch_encoder import TimmPatchEncoder
from .plugin import WSIModality
from .reference import PatchSpec, SlideReference, format_reference, parse_reference
from .slide import Slide, open_slide
from .slide_encoders import WSI_SLIDE_ENCODERS
from .tissue import WSI_TISSUE_DETECTORS, TissueOptions, otsu_threshold, saturation, tissue_mask

__all__ = [
    "WSI_READERS",
    "WSI_SLIDE_ENCODERS",
    "WSI_TISSUE_DETECTORS",
    "Level",
    "PatchGrid",
    "PatchSpec",
    "Slide",
    "SlideBackend",
    "SlideReference",
    "TimmPatchEncoder",
    "TissueOptions",
    "WSIConfig",
    "WSIEncoder",
    "WSIModality",
    "format_reference",
    "open_slide",
    "otsu_threshold",
    "parse_reference",
    "saturation",
    "tissue_grid",
    "tissue_mask",
]
