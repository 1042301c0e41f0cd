"""The ``image`` modality: 2-D medical images (radiographs, mammograms, fundus photographs, microscopy channels).

See docs/image.md. ``modalities.image.phantom`` (chest radiograph phantoms and a CXR <-> report data set writer) is a
command-line script and is imported by name.
"""

from .config import ImageConfig
from .encoder import ChannelAdaptiveStem, ImageEncoder
from .plugin import ImageModality, image_preprocessing
from .readers import IMAGE_READERS, image_format
from .record import IMAGE_DETAILS, ImageRecord

__all__ = [
    "IMAGE_DETAILS",
    "IMAGE_READERS",
    "ChannelAdaptiveStem",
    "ImageConfig",
    "ImageEncoder",
    "ImageModality",
    "ImageRecord",
    "image_format",
    "image_preprocessing",
]
