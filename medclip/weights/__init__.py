"""Weights from outside medclip: reading foreign files safely (never running pickled code) and converting them."""

from .foreign import SAFETENSORS_SUFFIX, convert_weights, import_torch_weights, is_pickle_file

__all__ = ["SAFETENSORS_SUFFIX", "convert_weights", "import_torch_weights", "is_pickle_file"]
