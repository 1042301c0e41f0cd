"""``ExpressionConfig``: the options of the expression modality (a ``modalities.expression`` YAML section)."""

from __future__ import annotations

from dataclasses import dataclass

from medclip.config import ConfigError
from medclip.types import ModalityConfig

from .normalize import AUTO, EXPRESSION_NORMALIZATIONS


@dataclass
class ExpressionConfig(ModalityConfig):
    """Options of the expression modality.

    Attributes:
        encoder: "mlp" (fast, sees every gene) or "gene_transformer" (attends over each cell's top genes).
        width: hidden size; the pooled output has this many features.
        layers: MLP blocks or transformer layers.
        heads: attention heads of the gene transformer.
        dropout: dropout inside the encoder.
        layer: which matrix holds the expression: "auto" (X, or .raw when X is scaled), "X", "raw", or a
            ``layers`` key such as "counts".
        normalization: "auto" (detect per file), "counts", "log1p" or "scaled" (see ``normalize.py``).
        target_sum: total each cell's counts are scaled to before log1p (scanpy's usual 1e4).
        max_genes: 0 keeps every gene seen in training; N keeps the N most variable genes.
        top_genes: gene tokens per cell: the gene transformer's sequence length and the MLP's token count.
        gene_dropout: training-time augmentation; fraction of a cell's expressed genes set to zero (0 = off).
    """

    encoder: str = "mlp"
    width: int = 256
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    layer: str = "auto"
    normalization: str = AUTO
    target_sum: float = 1e4  # scanpy's normalize_total convention, so values match common pipelines
    max_genes: int = 0
    top_genes: int = 64  # scGPT/Geneformer-style inputs use the highest-expressed genes of each cell
    gene_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.normalization != AUTO and self.normalization not in EXPRESSION_NORMALIZATIONS:
            raise ConfigError(
                f"expression normalization {self.normalization!r} is unknown; "
                f"use one of: {', '.join([AUTO, *EXPRESSION_NORMALIZATIONS.names()])}"
            )
        if not self.layer:
            raise ConfigError("expression layer must be 'auto', 'X', 'raw' or a layers key")
        for name in ("width", "layers", "heads", "top_genes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"expression {name} must be at least 1, got {getattr(self, name)}")
        if self.width % self.heads:
            raise ConfigError(f"expression width {self.width} must be divisible by heads {self.heads}")
        if self.max_genes < 0:
            raise ConfigError(f"expression max_genes must be 0 (every gene) or positive, got {self.max_genes}")
        if self.target_sum <= 0:
            raise ConfigError(f"expression target_sum must be positive, got {self.target_sum}")
        for name in ("dropout", "gene_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"expression {name} must be in [0, 1), got {getattr(self, name)}")
