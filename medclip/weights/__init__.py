"""Weights from outside medclip: reading foreign files safely (never running pickled code), mapping releases onto
medclip's encoders (``importers``), and warm starts (``weights:``, ``train.init_from``); see docs/warm_start.md."""

from .files import WeightsSource, open_weights, read_metadata
from .foreign import SAFETENSORS_SUFFIX, convert_weights, import_torch_weights, is_pickle_file
from .strict import WeightsError

__all__ = [
    "SAFETENSORS_SUFFIX",
    "WeightsError",
    "WeightsSource",
    "convert_weights",
    "import_torch_weights",
    "is_pickle_file",
    "open_weights",
    "read_metadata",
]
