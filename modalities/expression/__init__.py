"""The ``expression`` modality: single-cell and spatial gene expression from AnnData ``.h5ad`` files."""

from .config import ExpressionConfig
from .encoders import EXPRESSION_ENCODERS
from .genes import gene_list
from .normalize import EXPRESSION_NORMALIZATIONS
from .plugin import ExpressionModality
from .reader import expression_refs

__all__ = [
    "EXPRESSION_ENCODERS",
    "EXPRESSION_NORMALIZATIONS",
    "ExpressionConfig",
    "ExpressionModality",
    "expression_refs",
    "gene_list",
]
