"""The CLIP text transformer (OpenAI CLIP / open_clip) as a report encoder, so their text towers load key for key.

Its module names are open_clip's (``token_embedding``, ``positional_embedding``, ``transformer.resblocks.N.ln_1``,
``attn.in_proj_weight``, ``mlp.c_fc``, ``ln_final``): ``medclip convert-weights --from open_clip --to report`` only
drops the image tower. The computation is open_clip's too: causal self-attention (a token sees the tokens before
it), so the summary of the whole text sits at the end-of-text token, which is what CLIP trained; ``pooled`` is the
final state there, as in open_clip's ``encode_text`` before its projection (medclip's projection head takes that
role). ``tokens`` are sentence means of the final states, for fine-grained losses.

Architecture options come from ``ReportConfig``: ``width``, ``layers``, ``heads``, ``max_tokens`` (the context
length: the rows of ``positional_embedding``, 77 for CLIP) and ``vocab_size`` (49408 for CLIP's vocabulary).
``clip_text`` uses GELU, ``clip_text_quickgelu`` the QuickGELU of OpenAI's original weights.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn

from medclip.types import EncoderOutput

from .config import ReportConfig
from .pooling import sentence_means


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): OpenAI CLIP's activation (open_clip's ``*-quickgelu`` models)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """Pre-norm block with open_clip's names: ln_1 -> attn (nn.MultiheadAttention) -> ln_2 -> mlp (c_fc, c_proj)."""

    def __init__(self, width: int, heads: int, activation: type[nn.Module]) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [("c_fc", nn.Linear(width, 4 * width)), ("gelu", activation()), ("c_proj", nn.Linear(4 * width, width))]
            )
        )

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        normed = self.ln_1(x)
        x = x + self.attn(normed, normed, normed, need_weights=False, attn_mask=attn_mask)[0]  # (B, T, D)
        return x + self.mlp(self.ln_2(x))


class CLIPTextStack(nn.Module):
    """``transformer.resblocks``: the blocks under open_clip's attribute names."""

    def __init__(self, width: int, layers: int, heads: int, activation: type[nn.Module]) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, activation) for _ in range(layers))

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask)  # (B, T, D)
        return x


class CLIPTextEncoder(nn.Module):
    """Report ids (CLIP vocabulary, ``[start] ... [end]``) -> pooled end-of-text state (B, D), sentence tokens."""

    def __init__(self, cfg: ReportConfig, files: Path | None = None, quick_gelu: bool = False) -> None:
        super().__init__()
        self.output_dim = cfg.width
        self.max_sentences = cfg.max_sentences
        self.context_length = cfg.max_tokens
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.max_tokens, cfg.width))
        self.transformer = CLIPTextStack(cfg.width, cfg.layers, cfg.heads, QuickGELU if quick_gelu else nn.GELU)
        self.ln_final = nn.LayerNorm(cfg.width)
        causal = torch.full((cfg.max_tokens, cfg.max_tokens), float("-inf")).triu_(1)  # (T, T) additive mask
        self.register_buffer("attn_mask", causal, persistent=False)
        self._init_parameters(cfg.width, cfg.layers)

    def _init_parameters(self, width: int, layers: int) -> None:
        """open_clip's initialisation, for training from scratch."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        projection_std = width**-0.5 * (2 * layers) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=width**-0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=projection_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=projection_std)

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        input_ids = inputs["input_ids"]  # (B, T)
        length = input_ids.shape[1]
        if length > self.context_length:
            raise ValueError(f"report batch has {length} tokens per row, more than max_tokens={self.context_length}")
        mask = inputs["attention_mask"].bool()  # (B, T)
        hidden = self.token_embedding(input_ids) + self.positional_embedding[:length]  # (B, T, D)
        causal = self.attn_mask[:length, :length].to(hidden.dtype)  # (T, T)
        hidden = self.ln_final(self.transformer(hidden, causal))  # (B, T, D)
        last = (mask.sum(dim=1) - 1).clamp(min=0)  # (B,) index of each row's end-of-text token
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, D)
        tokens, token_mask = sentence_means(hidden, mask, inputs["sentence_ids"], self.max_sentences)
        return EncoderOutput(pooled=pooled, tokens=tokens, token_mask=token_mask)


def clip_text_quickgelu(cfg: ReportConfig, files: Path | None = None) -> CLIPTextEncoder:
    """The CLIP text transformer with QuickGELU (OpenAI's original weights)."""
    return CLIPTextEncoder(cfg, files, quick_gelu=True)
