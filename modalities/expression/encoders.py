"""Expression encoders: (B, V) cells in vocabulary order -> ``EncoderOutput``.

Both return gene tokens for fine-grained losses: each cell's ``top_genes`` highest-expressed genes, one token per gene,
with ``token_mask`` False where the selected gene's value is zero (a cell expressing fewer genes than ``top_genes``).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from medclip.nn import cls_token, encode_with_cls, pre_norm_encoder
from medclip.registry import Registry
from medclip.types import EncoderOutput

from .config import ExpressionConfig

EXPRESSION_ENCODERS: Registry[Callable[[int, ExpressionConfig], nn.Module]] = Registry("expression encoder")


def top_expressed(values: Tensor, top_genes: int) -> tuple[Tensor, Tensor, Tensor]:
    """Each cell's highest values: (B, V) -> values (B, K), gene ids (B, K), mask (B, K) True where non-zero."""
    top_values, gene_ids = values.topk(min(top_genes, values.shape[1]), dim=1)  # (B, K), (B, K)
    return top_values, gene_ids, top_values != 0


class ResidualBlock(nn.Module):
    """Pre-norm residual MLP block: x + Dropout(Linear(GELU(Linear(LayerNorm(x)))))."""

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(width),
            nn.Linear(width, 2 * width),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(2 * width, width),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


@EXPRESSION_ENCODERS.register("mlp")
class ExpressionMLP(nn.Module):
    """An MLP over the whole expression vector, the strong simple baseline for cell embeddings.

    The first layer's weight column for gene g is the vector that gene adds to the hidden state per unit of
    expression, so the gene tokens are those contributions, ``value_g * W[:, g]``, for the cell's top genes: they
    are exactly the additive parts of what the MLP sees, and need no extra parameters.

    Args:
        num_genes: vocabulary size V.
        cfg: width, layers (the input projection counts as the first), dropout, top_genes.
    """

    def __init__(self, num_genes: int, cfg: ExpressionConfig) -> None:
        super().__init__()
        self.output_dim = cfg.width
        self.top_genes = cfg.top_genes
        self.input_projection = nn.Linear(num_genes, cfg.width)
        self.input_activation = nn.Sequential(nn.GELU(), nn.Dropout(cfg.dropout))
        self.blocks = nn.Sequential(*[ResidualBlock(cfg.width, cfg.dropout) for _ in range(cfg.layers - 1)])
        self.norm = nn.LayerNorm(cfg.width)
        self.token_norm = nn.LayerNorm(cfg.width)

    def forward(self, values: Tensor) -> EncoderOutput:
        hidden = self.blocks(self.input_activation(self.input_projection(values)))  # (B, W)
        top_values, gene_ids, token_mask = top_expressed(values, self.top_genes)  # (B, K) each
        gene_vectors = self.input_projection.weight.t()[gene_ids]  # (V, W)[(B, K)] -> (B, K, W)
        tokens = self.token_norm(gene_vectors * top_values.unsqueeze(-1))  # (B, K, W)
        return EncoderOutput(pooled=self.norm(hidden), tokens=tokens, token_mask=token_mask)


@EXPRESSION_ENCODERS.register("gene_transformer")
class GeneTransformer(nn.Module):
    """A transformer over each cell's top-expressed genes (the scGPT / Geneformer input style), pooled by a CLS token.

    A token is the gene's identity embedding plus a projection of its value; there is no position, because genes
    form a set. Zero-valued genes are masked out of attention; the CLS token is always attended, so a cell with few
    expressed genes never produces an all-masked row.

    Args:
        num_genes: vocabulary size V.
        cfg: width, layers, heads, dropout, top_genes.
    """

    def __init__(self, num_genes: int, cfg: ExpressionConfig) -> None:
        super().__init__()
        self.output_dim = cfg.width
        self.top_genes = cfg.top_genes
        self.gene_embedding = nn.Embedding(num_genes, cfg.width)
        self.value_projection = nn.Sequential(nn.Linear(1, cfg.width), nn.GELU(), nn.Linear(cfg.width, cfg.width))
        self.cls = cls_token(cfg.width)
        nn.init.normal_(self.gene_embedding.weight, std=0.02)
        self.transformer = pre_norm_encoder(cfg.width, cfg.heads, cfg.layers, cfg.dropout)
        self.norm = nn.LayerNorm(cfg.width)

    def forward(self, values: Tensor) -> EncoderOutput:
        top_values, gene_ids, token_mask = top_expressed(values, self.top_genes)  # (B, K) each
        tokens = self.gene_embedding(gene_ids) + self.value_projection(top_values.unsqueeze(-1))  # (B, K, W)
        return encode_with_cls(self.transformer, self.norm, self.cls, tokens, token_mask)


def build_expression_encoder(num_genes: int, cfg: ExpressionConfig) -> nn.Module:
    """The encoder named by ``cfg.encoder`` for a vocabulary of ``num_genes`` genes."""
    return EXPRESSION_ENCODERS.get(cfg.encoder)(num_genes, cfg)
