"""``ContrastiveModel``: one encoder + projection head per modality and a learnable temperature.

Modality-neutral (encoders are injected, as in torchmultimodal): the model never knows what a CT or a report is.
Any number of modalities can be present; a sample may miss any of them, and each encoder only sees the rows whose
modality is present, so padding placeholders never reach an encoder (an all-padding text would give NaN attention).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .device import move_to_device
from .types import EncoderInput, EncoderOutput, present_rows


def patient_keys(patient_ids: Any) -> Tensor:
    """Pseudonymised patient ids (strings) -> (B,) int64 keys, stable across processes (not Python's salted hash)."""
    digests = [hashlib.blake2b(str(pid).encode(), digest_size=8).digest() for pid in patient_ids]
    return torch.tensor([int.from_bytes(digest, "little") >> 1 for digest in digests], dtype=torch.long)  # (B,)


def select_rows(inputs: EncoderInput, rows: Tensor) -> EncoderInput:
    """Index the batch dimension of a tensor or of every tensor in a dict."""
    if isinstance(inputs, Tensor):
        return inputs.index_select(0, rows.to(inputs.device))
    return {
        key: select_rows(value, rows) if isinstance(value, Tensor | dict) else value for key, value in inputs.items()
    }


def batch_size_of(inputs: EncoderInput) -> int:
    if isinstance(inputs, Tensor):
        return inputs.shape[0]
    for value in inputs.values():
        if isinstance(value, Tensor | dict):
            return batch_size_of(value)
    raise ValueError("encoder input holds no tensor")


class ProjectionHead(nn.Module):
    """Linear (``hidden_dim=0``) or two-layer MLP projection from encoder width to the shared embedding size."""

    def __init__(self, input_dim: int, embed_dim: int, hidden_dim: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        if hidden_dim > 0:
            self.net = nn.Sequential(
                nn.Linear(input_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, embed_dim)
            )
        else:
            self.net = nn.Linear(input_dim, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ContrastiveModel(nn.Module):
    """Encoders + heads + a learnable logit scale (CLIP's inverse temperature, kept as its log and clamped).

    Args:
        encoders: modality name -> encoder module with an ``output_dim`` attribute, returning ``EncoderOutput``.
        heads: modality name -> projection head onto the shared ``embed_dim``.
        init_temperature: initial softmax temperature (CLIP: 0.07, i.e. logit scale ~14.3).
        max_logit_scale: the clamp on exp(log scale); CLIP uses 100 to keep training stable.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        heads: Mapping[str, nn.Module],
        init_temperature: float = 0.07,
        max_logit_scale: float = 100.0,
    ) -> None:
        super().__init__()
        if set(encoders) != set(heads):
            raise ValueError(f"encoders {sorted(encoders)} and heads {sorted(heads)} must name the same modalities")
        self.encoders = nn.ModuleDict(dict(encoders))
        self.heads = nn.ModuleDict(dict(heads))
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.max_logit_scale = max_logit_scale

    @property
    def modalities(self) -> list[str]:
        return list(self.encoders)

    @property
    def logit_scale(self) -> Tensor:
        """The current logit scale, a plain value: ``float(model.logit_scale)`` reads it, no ``.detach()`` needed.

        Detached, so reading it never builds a graph; training gets the differentiable scale from ``forward``'s
        ``logit_scale`` output (``scaled_logit_scale``).
        """
        return self.scaled_logit_scale().detach()

    def scaled_logit_scale(self) -> Tensor:
        """exp(log scale) clamped to [1, max_logit_scale], differentiable; the clamp keeps gradients flowing inside
        the range."""
        return self.log_logit_scale.clamp(0.0, math.log(self.max_logit_scale)).exp()

    @property
    def tokenizer(self) -> Any:
        """The text modality's preprocessing: ``model.tokenizer(["No effusion."])`` -> the batch ``encode`` takes.

        Set by ``create_model`` / ``load_model`` (``model.preprocess.tokenizer``); see ``medclip.preprocess``.
        """
        preprocess = self.__dict__.get("preprocess")
        if preprocess is None:
            raise ValueError("this model carries no preprocessing: build it with medclip.create_model/load_model")
        return preprocess.tokenizer

    def encode(self, name: str, inputs: EncoderInput | Mapping[str, Any], normalize: bool = True) -> Tensor:
        """Embed a batch of one modality: (B, D), L2-normalised by default.

        Args:
            name: the modality.
            inputs: the modality's input with every row present (``batch[name]``: a tensor, or a dict of tensors such
                as a report's ``input_ids``), or a whole collated batch (``model.preprocess[name](refs)``,
                ``model.tokenizer(texts)``, a training batch) whose ``f"{name}_mask"`` marks missing rows, which
                get zero vectors.
            normalize: L2-normalise (the contrastive space compares unit vectors).
        """
        if isinstance(inputs, Mapping) and name in inputs:
            return self._encode_collated(name, inputs, normalize)
        output: EncoderOutput = self.encoders[name](inputs)
        embedding = self.heads[name](output.pooled)  # (B, D)
        return F.normalize(embedding, dim=-1) if normalize else embedding

    def _encode_collated(self, name: str, batch: Mapping[str, Any], normalize: bool) -> Tensor:
        inputs = batch[name]
        size = batch_size_of(inputs)
        mask = batch.get(f"{name}_mask")
        device = self.log_logit_scale.device
        rows = present_rows(mask.to(device)) if mask is not None else torch.arange(size, device=device)
        if rows.numel() == size:
            return self.encode(name, move_to_device(inputs, device), normalize)
        embedding = self.log_logit_scale.new_zeros(size, self._embed_dim(name))  # (B, D)
        if rows.numel():
            present = self.encode(name, move_to_device(select_rows(inputs, rows), device), normalize)  # (P, D)
            embedding = embedding.to(present.dtype).index_copy(0, rows, present)
        return embedding

    def encode_with_tokens(self, name: str, inputs: EncoderInput) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Embed a batch of one modality: pooled (B, D) and tokens (B, T, D) normalised, plus token mask (B, T)."""
        output: EncoderOutput = self.encoders[name](inputs)
        pooled = F.normalize(self.heads[name](output.pooled), dim=-1)  # (B, D)
        tokens = None
        if output.tokens is not None:
            tokens = F.normalize(self.heads[name](output.tokens), dim=-1)  # (B, T, D)
        return pooled, tokens, output.token_mask

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Encode every modality present in ``batch``; the result's keys are the losses' keyword arguments.

        Returns:
            features: name -> (B, D) normalised embeddings, zero rows where the modality is missing.
            tokens: name -> (B, T, D) normalised token embeddings (only for encoders that return tokens).
            token_masks: name -> (B, T) bool, True for real tokens.
            masks: name -> (B,) bool, True where the sample has the modality.
            labels: (B, K) float with NaN for unknown, or None.
            patient_ids: (B,) int64 stable keys of the batch's pseudonymised ``patient_id`` (equal ids, equal keys on
                every process), or None; multi-positive losses treat studies of one patient as positives.
            logit_scale: scalar tensor.
        """
        features: dict[str, Tensor] = {}
        tokens: dict[str, Tensor] = {}
        token_masks: dict[str, Tensor] = {}
        masks: dict[str, Tensor] = {}
        for name in self.encoders:
            if name not in batch:
                continue
            inputs = batch[name]
            size = batch_size_of(inputs)
            mask = batch.get(f"{name}_mask")
            if mask is None:
                mask = torch.ones(size, dtype=torch.bool)
            mask = mask.to(self.log_logit_scale.device)
            masks[name] = mask
            rows = present_rows(mask)
            if rows.numel() == 0:
                dim = self._embed_dim(name)
                features[name] = self.log_logit_scale.new_zeros(size, dim)
                continue
            all_present = rows.numel() == size
            pooled, token_embeddings, token_mask = self.encode_with_tokens(
                name, inputs if all_present else select_rows(inputs, rows)
            )
            if all_present:
                features[name] = pooled
            else:  # scatter the present rows back into a full (B, D) batch with zeros for missing rows
                features[name] = pooled.new_zeros(size, pooled.shape[-1]).index_copy(0, rows, pooled)
            if token_embeddings is not None:
                if token_mask is None:
                    token_mask = torch.ones(token_embeddings.shape[:2], dtype=torch.bool, device=pooled.device)
                if not all_present:
                    full = token_embeddings.new_zeros(size, *token_embeddings.shape[1:])  # (B, T, D)
                    token_embeddings = full.index_copy(0, rows, token_embeddings)
                    full_mask = token_mask.new_zeros(size, token_mask.shape[1])  # (B, T)
                    token_mask = full_mask.index_copy(0, rows, token_mask)
                tokens[name] = token_embeddings
                token_masks[name] = token_mask
        return {
            "features": features,
            "tokens": tokens,
            "token_masks": token_masks,
            "masks": masks,
            "labels": batch.get("labels"),
            "patient_ids": self._patient_keys(batch),
            "logit_scale": self.scaled_logit_scale(),
        }

    def _patient_keys(self, batch: Mapping[str, Any]) -> Tensor | None:
        patient_ids = batch.get("patient_id")
        if patient_ids is None:
            return None
        return patient_keys(patient_ids).to(self.log_logit_scale.device)

    def _embed_dim(self, name: str) -> int:
        for module in reversed(list(self.heads[name].modules())):
            if isinstance(module, nn.Linear):
                return module.out_features
        raise ValueError(f"cannot tell the embedding size of head {name!r}")
