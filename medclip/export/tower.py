"""``EmbeddingTower``: one modality's encoder and projection head as a module of plain tensors, for export.

Exporters (ONNX, TorchScript, ``torch.export``) take positional tensors and return tensors, while an encoder may take
a dict (a report's ``input_ids``, ``attention_mask``, ``sentence_ids``) and returns ``EncoderOutput``. The tower
takes the input tensors in a fixed order (``input_names``), rebuilds the encoder's input, and returns what serving
needs: the unit embedding, and for encoders that return tokens the unit token embeddings and their mask, exactly as
``ContrastiveModel.encode_with_tokens`` computes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

# Not "embedding": ONNX graphs name internal values after ops (an `embedding` lookup), and names must be unique.
EMBEDDING, TOKENS, TOKEN_MASK = "pooled_embedding", "token_embeddings", "token_mask"


class EmbeddingTower(nn.Module):
    """Encoder + projection head of one modality: input tensors -> (embedding, [tokens, token_mask]).

    Args:
        encoder: the modality's encoder (``model.encoders[name]``).
        head: its projection head (``model.heads[name]``).
        input_names: the keys of a dict input in argument order, or None when the input is a single tensor.
        with_tokens: whether to return token embeddings and their mask (set when the encoder returns tokens).
    """

    def __init__(self, encoder: nn.Module, head: nn.Module, input_names: Sequence[str] | None, with_tokens: bool):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.input_names = list(input_names) if input_names is not None else None
        self.with_tokens = with_tokens

    @property
    def output_names(self) -> list[str]:
        return [EMBEDDING, TOKENS, TOKEN_MASK] if self.with_tokens else [EMBEDDING]

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        encoder_input = inputs[0] if self.input_names is None else dict(zip(self.input_names, inputs, strict=True))
        output = self.encoder(encoder_input)
        embedding = F.normalize(self.head(output.pooled), dim=-1)  # (B, D)
        if not self.with_tokens:
            return (embedding,)
        tokens = F.normalize(self.head(output.tokens), dim=-1)  # (B, T, D)
        token_mask = output.token_mask
        if token_mask is None:
            token_mask = tokens.new_ones(tokens.shape[:2]).bool()  # (B, T) every token real
        return embedding, tokens, token_mask
