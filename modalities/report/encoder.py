"""The report encoders: a small transformer trained from scratch, and a pretrained Hugging Face model.

Both return ``EncoderOutput(pooled=(B, D), tokens=(B, S, D), token_mask=(B, S))`` where the tokens are SENTENCE
embeddings (the mean state of each sentence's word pieces): a sentence ("small left pleural effusion") is the unit
that matches an image region, so sentence-level losses align those rather than word pieces.

The pooled vector is the masked mean of all real token states rather than the [CLS] state. A transformer trained
from scratch with a contrastive loss gets a useful mean from the first steps, while [CLS] must first learn to
aggregate; for pretrained BERT-style models, [CLS] was trained for next-sentence prediction and mean pooling gives
better sentence similarity (the sentence-transformers finding). Using one rule for both keeps them comparable;
``pooling: cls`` takes the first ([CLS]) state instead, for pretrained models tuned to use it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from medclip.nn import pre_norm_encoder
from medclip.types import EncoderOutput

from .config import ReportConfig
from .hf_local import load_pretrained_model, model_from_files
from .pooling import masked_mean, sentence_means


def pooled_state(hidden: Tensor, mask: Tensor, pooling: str) -> Tensor:
    """The report vector: masked mean of the real token states, or the first ([CLS]) state. (B, T, D) -> (B, D)."""
    return hidden[:, 0] if pooling == "cls" else masked_mean(hidden, mask)


def _attention_mask(inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """The real-token mask (B, T) bool, and a copy safe for attention where rows without tokens attend position 0.

    ContrastiveModel only passes rows whose report is present, so empty rows only come from direct calls; without
    the guard their fully masked attention would be NaN.
    """
    mask = inputs["attention_mask"].bool()  # (B, T)
    safe = mask.clone()
    safe[:, 0] |= ~mask.any(dim=1)
    return mask, safe


class TransformerReportEncoder(nn.Module):
    """Token + learned position embeddings, a pre-norm ``nn.TransformerEncoder`` (PyTorch SDPA attention).

    Pre-norm (``norm_first=True``) trains stably without learning-rate warm-up tricks at small scale; a final
    LayerNorm normalises the output of the last residual stream.
    """

    def __init__(self, cfg: ReportConfig, files: Path | None = None) -> None:
        super().__init__()
        self.output_dim = cfg.width
        self.max_tokens = cfg.max_tokens
        self.max_sentences = cfg.max_sentences
        self.pooling = cfg.pooling
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.position_embedding = nn.Embedding(cfg.max_tokens, cfg.width)
        self.embedding_dropout = nn.Dropout(cfg.dropout)
        self.blocks = pre_norm_encoder(cfg.width, cfg.heads, cfg.layers, cfg.dropout, norm=nn.LayerNorm(cfg.width))
        nn.init.normal_(self.token_embedding.weight, std=0.02)  # GPT-2/CLIP text initialisation
        nn.init.normal_(self.position_embedding.weight, std=0.01)

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        input_ids = inputs["input_ids"]  # (B, T)
        length = input_ids.shape[1]
        if length > self.max_tokens:
            raise ValueError(f"report batch has {length} tokens per row, more than max_tokens={self.max_tokens}")
        mask, safe_mask = _attention_mask(inputs)
        positions = torch.arange(length, device=input_ids.device)  # (T,)
        hidden = self.token_embedding(input_ids) + self.position_embedding(positions)  # (B, T, D)
        hidden = self.blocks(self.embedding_dropout(hidden), src_key_padding_mask=~safe_mask)  # (B, T, D)
        tokens, token_mask = sentence_means(hidden, mask, inputs["sentence_ids"], self.max_sentences)
        return EncoderOutput(pooled=pooled_state(hidden, mask, self.pooling), tokens=tokens, token_mask=token_mask)


class HFReportEncoder(nn.Module):
    """A pretrained Hugging Face encoder (BERT, RoBERTa, BiomedBERT, CXR-BERT ...) loaded from local files.

    Its width is the model's hidden size; ``cfg.width``, ``layers``, ``heads`` and ``dropout`` do not apply.

    Args:
        cfg: the report options (``hf_model``: the local folder of a new model).
        files: the model files a checkpoint carries; the model is then built from their config, untrained, and the
            checkpoint's weights fill it (``hf_model`` is not read).
    """

    def __init__(self, cfg: ReportConfig, files: Path | None = None) -> None:
        super().__init__()
        self.model = model_from_files(files) if files is not None else load_pretrained_model(cfg.hf_model)
        self.output_dim = int(self.model.config.hidden_size)
        self.max_sentences = cfg.max_sentences
        self.pooling = cfg.pooling
        self.frozen = cfg.freeze_pretrained
        if self.frozen:
            self.model.requires_grad_(False)  # the optimizer skips parameters without gradients
            self.model.eval()
        positions = getattr(self.model.config, "max_position_embeddings", None)
        if positions is not None and cfg.max_tokens > positions:
            raise ValueError(
                f"report.max_tokens={cfg.max_tokens} exceeds the {positions} positions of hf_model={cfg.hf_model!r}"
            )

    def train(self, mode: bool = True) -> HFReportEncoder:
        """A frozen pretrained model stays in eval mode (no dropout) while the rest of the model trains."""
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        mask, safe_mask = _attention_mask(inputs)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):  # no activations kept when frozen
            hidden = self.model(input_ids=inputs["input_ids"], attention_mask=safe_mask.long()).last_hidden_state
        tokens, token_mask = sentence_means(hidden, mask, inputs["sentence_ids"], self.max_sentences)  # (B, S, D)
        return EncoderOutput(pooled=pooled_state(hidden, mask, self.pooling), tokens=tokens, token_mask=token_mask)
