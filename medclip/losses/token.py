"""Token-level (region / patch / sentence / lead) losses: FILIP token-wise max similarity and MGCA token alignment.

Both use the ``tokens`` (B, T, D, unit-norm, projected by the modality's head) and ``token_masks`` (B, T, True = real
token) that ``ContrastiveModel`` returns for every encoder that emits tokens, and neither ever builds the
(B x B x Ti x Tt) similarity tensor of the reference implementations.

- ``filip`` (Yao et al., ICLR 2022, FILIP): similarity of sample i to j = mean over i's real tokens of the max over j's
  real tokens of the token dot product (and the converse for the other direction); InfoNCE with the model's logit
  scale over those similarities, global candidates under torch.distributed (tokens gathered with gradient, padded to
  the longest sequence of any process). ``token_max_similarity`` computes the (P, V) similarities block by block
  under a memory budget and keeps only the argmax indices (P x V x T) for the backward pass, which gathers the
  winning tokens instead of recomputing the blocks. Deviation: FILIP reduces the token dimension and uses fp16 to
  fit; here the full dimension is kept and memory is bounded by the block budget instead.
- ``token`` follows MGCA's cross-modal token alignment (Wang et al., NeurIPS 2022, "instance-to-token"): each token
  of one modality attends over the other modality's tokens of the *same* sample (softmax of cosine / attention
  temperature), and a within-sample InfoNCE pulls each token towards its own attended vector and away from the
  sample's other tokens' (both modalities in turn, both softmax directions). Deviations: MGCA weights tokens by the
  [CLS] attention of the last layer and uses learned attention projections; encoders here expose neither, so tokens
  are weighted uniformly and attention is parameter-free. Per-sample work is O(Ti x Tt); samples are processed in
  chunks with activation checkpointing, so memory is O(chunk x Ti x Tt).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ..config import ConfigError
from ..distributed import all_gather_no_grad, all_gather_with_grad, all_reduce_sum_no_grad, is_distributed
from ..types import present_rows
from .base import PairwiseContrastiveLoss, PairwiseLossConfig, register_loss, zero_loss_connected_to
from .clip import check_pair_inputs, exact_global_value, global_rows, matching_columns

DEFAULT_BLOCK_ELEMENTS = 1 << 24  # token-similarity entries per block (64 MiB in fp32)


def _check_tokens(tokens: Tensor, token_mask: Tensor, what: str) -> None:
    if tokens.dim() != 3 or token_mask.shape != tokens.shape[:2]:
        raise ValueError(
            f"{what}: expected tokens (B, T, D) and token mask (B, T), got {tuple(tokens.shape)} and "
            f"{tuple(token_mask.shape)}"
        )


def _blocks(rows: int, columns: int, tokens_q: int, tokens_k: int, budget: int) -> tuple[int, int]:
    """Row and column block sizes whose (rows x columns x Tq x Tk) similarity block fits ``budget`` entries."""
    column_block = max(1, min(columns, budget // max(1, tokens_q * tokens_k)))
    row_block = max(1, min(rows, budget // max(1, column_block * tokens_q * tokens_k)))
    return row_block, column_block


class _TokenMaxSimilarity(torch.autograd.Function):
    """(P, V) mean-of-max token similarities in both directions, from blocks; argmax indices kept for backward."""

    @staticmethod
    def forward(ctx: Any, queries: Tensor, keys: Tensor, query_mask: Tensor, key_mask: Tensor, budget: int):
        rows, columns, tokens_q, tokens_k = queries.shape[0], keys.shape[0], queries.shape[1], keys.shape[1]
        query_counts = query_mask.sum(dim=1).to(queries.dtype)  # (P,)
        key_counts = key_mask.sum(dim=1).to(queries.dtype)  # (V,)
        row_similarity = queries.new_zeros(rows, columns)  # mean over query tokens of max over key tokens
        column_similarity = queries.new_zeros(rows, columns)  # mean over key tokens of max over query tokens
        row_argmax = torch.zeros(rows, columns, tokens_q, dtype=torch.long, device=queries.device)
        column_argmax = torch.zeros(rows, columns, tokens_k, dtype=torch.long, device=queries.device)
        row_block, column_block = _blocks(rows, columns, tokens_q, tokens_k, budget)
        for i in range(0, rows, row_block):
            block_q, mask_q = queries[i : i + row_block], query_mask[i : i + row_block]
            for j in range(0, columns, column_block):
                block_k, mask_k = keys[j : j + column_block], key_mask[j : j + column_block]
                similarity = torch.einsum("ikd,jrd->ijkr", block_q, block_k)  # (bi, bj, Tq, Tk)
                best_key, best_key_index = similarity.masked_fill(~mask_k[None, :, None, :], float("-inf")).max(-1)
                best_query, best_query_index = similarity.masked_fill_(~mask_q[:, None, :, None], float("-inf")).max(2)
                del similarity
                best_key = best_key.masked_fill_(~mask_q[:, None, :], 0.0)  # (bi, bj, Tq) padded queries add 0
                best_query = best_query.masked_fill_(~mask_k[None, :, :], 0.0)  # (bi, bj, Tk)
                rows_slice, columns_slice = slice(i, i + row_block), slice(j, j + column_block)
                row_similarity[rows_slice, columns_slice] = best_key.sum(-1) / query_counts[rows_slice, None]
                column_similarity[rows_slice, columns_slice] = best_query.sum(-1) / key_counts[None, columns_slice]
                row_argmax[rows_slice, columns_slice] = best_key_index
                column_argmax[rows_slice, columns_slice] = best_query_index
        ctx.save_for_backward(queries, keys, query_mask, key_mask, row_argmax, column_argmax)
        ctx.budget = budget
        return row_similarity, column_similarity

    @staticmethod
    def backward(ctx: Any, grad_row: Tensor | None, grad_column: Tensor | None):
        queries, keys, query_mask, key_mask, row_argmax, column_argmax = ctx.saved_tensors
        rows, columns, tokens_q, tokens_k = queries.shape[0], keys.shape[0], queries.shape[1], keys.shape[1]
        dim = queries.shape[2]
        grad_queries, grad_keys = torch.zeros_like(queries), torch.zeros_like(keys)
        query_counts = query_mask.sum(dim=1).to(queries.dtype)  # (P,)
        key_counts = key_mask.sum(dim=1).to(queries.dtype)  # (V,)
        # the gathered (bi, bj, T, D) winners are the block's memory; budget them like the forward blocks
        row_block, column_block = _blocks(rows, columns, max(tokens_q, tokens_k), dim, ctx.budget)
        flat_keys_grad = grad_keys.view(columns * tokens_k, dim)  # (V * Tk, D)
        flat_queries_grad = grad_queries.view(rows * tokens_q, dim)  # (P * Tq, D)
        for i in range(0, rows, row_block):
            rows_slice = slice(i, i + row_block)
            block_q, mask_q = queries[rows_slice], query_mask[rows_slice].to(queries.dtype)
            size_i = block_q.shape[0]
            for j in range(0, columns, column_block):
                columns_slice = slice(j, j + column_block)
                block_k, mask_k = keys[columns_slice], key_mask[columns_slice].to(queries.dtype)
                size_j = block_k.shape[0]
                column_ids = torch.arange(j, j + size_j, device=queries.device)  # (bj,)
                row_ids = torch.arange(i, i + size_i, device=queries.device)  # (bi,)
                if grad_row is not None:
                    weight = grad_row[rows_slice, columns_slice] / query_counts[rows_slice, None]  # (bi, bj)
                    weight = weight[:, :, None] * mask_q[:, None, :]  # (bi, bj, Tq)
                    index = row_argmax[rows_slice, columns_slice]  # (bi, bj, Tq) winning key token
                    winners = block_k[torch.arange(size_j, device=keys.device)[None, :, None], index]  # (bi,bj,Tq,D)
                    grad_queries[rows_slice] += torch.einsum("ijk,ijkd->ikd", weight, winners)
                    flat_index = (column_ids[None, :, None] * tokens_k + index).reshape(-1)  # (bi * bj * Tq,)
                    contribution = weight[..., None] * block_q[:, None, :, :]  # (bi, bj, Tq, D)
                    flat_keys_grad.index_add_(0, flat_index, contribution.reshape(-1, dim))
                if grad_column is not None:
                    weight = grad_column[rows_slice, columns_slice] / key_counts[None, columns_slice]  # (bi, bj)
                    weight = weight[:, :, None] * mask_k[None, :, :]  # (bi, bj, Tk)
                    index = column_argmax[rows_slice, columns_slice]  # (bi, bj, Tk) winning query token
                    winners = block_q[torch.arange(size_i, device=keys.device)[:, None, None], index]  # (bi,bj,Tk,D)
                    grad_keys[columns_slice] += torch.einsum("ijr,ijrd->jrd", weight, winners)
                    flat_index = (row_ids[:, None, None] * tokens_q + index).reshape(-1)  # (bi * bj * Tk,)
                    contribution = weight[..., None] * block_k[None, :, :, :]  # (bi, bj, Tk, D)
                    flat_queries_grad.index_add_(0, flat_index, contribution.reshape(-1, dim))
        return grad_queries, grad_keys, None, None, None


def token_max_similarity(
    queries: Tensor,
    keys: Tensor,
    query_mask: Tensor | None = None,
    key_mask: Tensor | None = None,
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
) -> tuple[Tensor, Tensor]:
    """FILIP's late-interaction similarities between every query sample and every key sample.

    Args:
        queries: (P, Tq, D) token embeddings.
        keys: (V, Tk, D) token embeddings.
        query_mask: (P, Tq) bool, True for real tokens (default: all); every sample needs one real token.
        key_mask: (V, Tk) bool.
        block_elements: the most (rows x columns x Tq x Tk) similarity entries held at once.

    Returns:
        ``(query_to_key, key_to_query)``, both (P, V): the mean over i's real tokens of the max over j's real tokens,
        and the mean over j's real tokens of the max over i's.
    """
    query_mask = query_mask if query_mask is not None else queries.new_ones(queries.shape[:2], dtype=torch.bool)
    key_mask = key_mask if key_mask is not None else keys.new_ones(keys.shape[:2], dtype=torch.bool)
    _check_tokens(queries, query_mask, "queries")
    _check_tokens(keys, key_mask, "keys")
    if not (query_mask.any(dim=1).all() and key_mask.any(dim=1).all()):
        raise ValueError("every present sample needs at least one real token (token mask all False)")
    return _TokenMaxSimilarity.apply(queries, keys, query_mask.bool(), key_mask.bool(), block_elements)


def _pad_tokens(tokens: Tensor, token_mask: Tensor, length: int) -> tuple[Tensor, Tensor]:
    missing = length - tokens.shape[1]
    if missing == 0:
        return tokens, token_mask
    return F.pad(tokens, (0, 0, 0, missing)), F.pad(token_mask, (0, missing), value=False)  # (B, length, D)


def _global_token_length(*token_tensors: Tensor) -> int:
    """The longest token sequence of any process (ranks pad their batches to their own longest)."""
    longest = torch.tensor([max(tokens.shape[1] for tokens in token_tensors)], device=token_tensors[0].device)
    if is_distributed():
        dist.all_reduce(longest, op=dist.ReduceOp.MAX)
    return int(longest)


def filip_loss(
    tokens_a: Tensor,
    tokens_b: Tensor,
    logit_scale: Tensor,
    token_mask_a: Tensor | None = None,
    token_mask_b: Tensor | None = None,
    mask: Tensor | None = None,
    distributed: bool = True,
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
) -> Tensor:
    """FILIP: symmetric InfoNCE over token-wise max similarities (see the module docstring).

    Args:
        tokens_a: (B, Ta, D) unit-norm token embeddings of one modality.
        tokens_b: (B, Tb, D) of the other, sample i paired with sample i.
        logit_scale: scalar inverse temperature.
        token_mask_a: (B, Ta) bool, True for real tokens; default all real.
        token_mask_b: (B, Tb) bool.
        mask: (B,) bool, True where both modalities are present.
        distributed: global candidates under torch.distributed (convention of ``medclip.losses.clip``).
        block_elements: memory budget of one similarity block, in entries.

    Returns:
        A scalar: mean over valid rows and both directions of the cross-entropy.
    """
    token_mask_a = token_mask_a if token_mask_a is not None else tokens_a.new_ones(tokens_a.shape[:2], dtype=bool)
    token_mask_b = token_mask_b if token_mask_b is not None else tokens_b.new_ones(tokens_b.shape[:2], dtype=bool)
    _check_tokens(tokens_a, token_mask_a, "tokens_a")
    _check_tokens(tokens_b, token_mask_b, "tokens_b")
    mask = check_pair_inputs(tokens_a[:, 0], tokens_b[:, 0], mask)
    all_masks, offset, use_distributed = global_rows(tokens_a, mask, distributed)  # (N,)
    num_valid = int(all_masks.sum())
    if num_valid == 0:  # decided from global counts, so every process takes this branch together
        return zero_loss_connected_to(tokens_a, tokens_b, logit_scale)
    local = present_rows(mask)  # (P,)
    scale = logit_scale.to(tokens_a.dtype)
    if not use_distributed:  # square: both directions from the same blocks
        a_to_b, b_to_a = token_max_similarity(
            tokens_a[local], tokens_b[local], token_mask_a[local], token_mask_b[local], block_elements
        )  # (V, V) each; b_to_a[i, j] compares a_i and b_j from b's side
        targets = torch.arange(local.numel(), device=tokens_a.device)
        total = F.cross_entropy(scale * a_to_b, targets, reduction="sum")
        total = total + F.cross_entropy(scale * b_to_a.T, targets, reduction="sum")
        return total / (2 * num_valid)
    length_a = _global_token_length(tokens_a)
    length_b = _global_token_length(tokens_b)
    tokens_a, token_mask_a = _pad_tokens(tokens_a, token_mask_a, length_a)
    tokens_b, token_mask_b = _pad_tokens(tokens_b, token_mask_b, length_b)
    all_a, all_b = all_gather_with_grad(tokens_a), all_gather_with_grad(tokens_b)  # (N, T, D)
    all_mask_a, all_mask_b = all_gather_no_grad(token_mask_a), all_gather_no_grad(token_mask_b)  # (N, T)
    columns = present_rows(all_masks)  # (V,)
    targets = matching_columns(all_masks, local, offset)  # (P,)
    a_to_b, _ = token_max_similarity(
        tokens_a[local], all_b[columns], token_mask_a[local], all_mask_b[columns], block_elements
    )  # (P, V)
    b_to_a, _ = token_max_similarity(
        tokens_b[local], all_a[columns], token_mask_b[local], all_mask_a[columns], block_elements
    )  # (P, V)
    total = F.cross_entropy(scale * a_to_b, targets, reduction="sum")
    total = total + F.cross_entropy(scale * b_to_a, targets, reduction="sum")
    return exact_global_value(total / (2 * num_valid), use_distributed)


def _alignment_one_way(
    queries: Tensor, query_mask: Tensor, keys: Tensor, key_mask: Tensor, attention_scale: float, token_scale: float
) -> Tensor:
    """Per-sample MGCA alignment of ``queries`` to their cross-attended ``keys``: (C,) summed over both softmaxes."""
    attention = torch.einsum("ckd,crd->ckr", queries, keys) * attention_scale  # (C, Tq, Tk)
    attention = attention.masked_fill(~key_mask[:, None, :], float("-inf")).softmax(dim=-1)
    attended = F.normalize(torch.einsum("ckr,crd->ckd", attention, keys), dim=-1)  # (C, Tq, D)
    logits = torch.einsum("ckd,cld->ckl", queries, attended) * token_scale  # (C, Tq, Tq) token k vs attended l
    pair_mask = query_mask[:, :, None] & query_mask[:, None, :]  # (C, Tq, Tq)
    logits = logits.masked_fill(~pair_mask, float("-inf"))
    diagonal = torch.diagonal(logits, dim1=1, dim2=2)  # (C, Tq)
    rows = logits.logsumexp(dim=2) - diagonal  # (C, Tq) token -> attended vectors
    columns = logits.logsumexp(dim=1) - diagonal  # (C, Tq) attended vector -> tokens
    per_token = (rows + columns).masked_fill(~query_mask, 0.0) / 2
    return per_token.sum(dim=1) / query_mask.sum(dim=1)  # (C,) mean over the sample's real tokens


def token_alignment_loss(
    tokens_a: Tensor,
    tokens_b: Tensor,
    token_mask_a: Tensor | None = None,
    token_mask_b: Tensor | None = None,
    mask: Tensor | None = None,
    attention_temperature: float = 0.1,
    temperature: float = 0.1,
    distributed: bool = True,
    chunk_size: int = 64,
) -> Tensor:
    """MGCA-style bidirectional cross-attention token alignment (see the module docstring).

    Args:
        tokens_a: (B, Ta, D) unit-norm token embeddings; tokens_b: (B, Tb, D).
        token_mask_a, token_mask_b: (B, T) bool, True for real tokens.
        mask: (B,) bool, True where both modalities are present.
        attention_temperature: softmax temperature of the cross-attention over cosine similarities.
        temperature: of the within-sample token InfoNCE (MGCA's tau_2).
        distributed: average over the global batch's valid samples (no cross-sample negatives are involved).
        chunk_size: samples per checkpointed chunk (memory O(chunk_size x Ta x Tb)).

    Returns:
        A scalar: mean over valid samples of the mean of the a->b and b->a alignments.
    """
    token_mask_a = token_mask_a if token_mask_a is not None else tokens_a.new_ones(tokens_a.shape[:2], dtype=bool)
    token_mask_b = token_mask_b if token_mask_b is not None else tokens_b.new_ones(tokens_b.shape[:2], dtype=bool)
    _check_tokens(tokens_a, token_mask_a, "tokens_a")
    _check_tokens(tokens_b, token_mask_b, "tokens_b")
    mask = check_pair_inputs(tokens_a[:, 0], tokens_b[:, 0], mask)
    use_distributed = distributed and is_distributed()
    local_count = mask.sum()
    num_valid = int(all_reduce_sum_no_grad(local_count) if use_distributed else local_count)
    if num_valid == 0:
        return zero_loss_connected_to(tokens_a, tokens_b)
    local = present_rows(mask)  # (P,)
    if local.numel() == 0:  # this process has nothing, others do: a connected zero share
        return exact_global_value(zero_loss_connected_to(tokens_a, tokens_b), use_distributed)
    mask_a, mask_b = token_mask_a[local].bool(), token_mask_b[local].bool()
    if not (mask_a.any(dim=1).all() and mask_b.any(dim=1).all()):
        raise ValueError("every present sample needs at least one real token (token mask all False)")

    def chunk_loss(queries_a: Tensor, queries_b: Tensor, real_a: Tensor, real_b: Tensor) -> Tensor:
        one = _alignment_one_way(queries_a, real_a, queries_b, real_b, 1 / attention_temperature, 1 / temperature)
        other = _alignment_one_way(queries_b, real_b, queries_a, real_a, 1 / attention_temperature, 1 / temperature)
        return ((one + other) / 2).sum()

    total = tokens_a.new_zeros(())
    for start in range(0, local.numel(), chunk_size):
        rows = local[start : start + chunk_size]
        chunk = (tokens_a[rows], tokens_b[rows], token_mask_a[rows].bool(), token_mask_b[rows].bool())
        total = total + checkpoint(chunk_loss, *chunk, use_reentrant=False)
    return exact_global_value(total / num_valid, use_distributed)


@dataclass
class FilipLossConfig(PairwiseLossConfig):
    """Options of ``filip`` (plus those of PairwiseLossConfig).

    Attributes:
        block_elements: token-similarity entries held at once (memory ~ 4 bytes x this, fp32).
    """

    block_elements: int = DEFAULT_BLOCK_ELEMENTS

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.block_elements < 1:
            raise ConfigError(f"block_elements must be >= 1, got {self.block_elements}")


@dataclass
class TokenAlignmentLossConfig(PairwiseLossConfig):
    """Options of ``token`` (plus those of PairwiseLossConfig).

    Attributes:
        attention_temperature: of the cross-attention softmax over token cosine similarities.
        temperature: of the within-sample token InfoNCE (MGCA's tau_2 = 0.1... here the default as well).
        chunk_size: samples per activation-checkpointed chunk.
    """

    attention_temperature: float = 0.1
    temperature: float = 0.1
    chunk_size: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.attention_temperature > 0 and self.temperature > 0 and self.chunk_size >= 1):
            raise ConfigError("attention_temperature and temperature must be > 0 and chunk_size >= 1")


class _TokenPairLoss(PairwiseContrastiveLoss):
    """Pairs of modalities whose encoders return tokens; ``pair_loss`` reads them through ``pair_names``."""

    def forward(
        self,
        features: Mapping[str, Tensor],
        logit_scale: Tensor | None = None,
        masks: Mapping[str, Tensor] | None = None,
        tokens: Mapping[str, Tensor] | None = None,
        token_masks: Mapping[str, Tensor] | None = None,
        **unused: Any,
    ) -> dict[str, Tensor]:
        tokens = tokens or {}
        with_tokens = [name for name in features if name in tokens]
        if len(with_tokens) < 2:
            raise ValueError(
                f"{self.name} loss needs tokens from at least two modalities; got tokens for {with_tokens} "
                f"(modalities {list(features)}): use encoders that return tokens"
            )
        self._tokens, self._token_masks = tokens, token_masks or {}
        try:
            return super().forward({name: features[name] for name in with_tokens}, logit_scale, masks)
        finally:
            self._tokens, self._token_masks = {}, {}

    def pair_tokens(self) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        a, b = self.pair_names
        return self._tokens[a], self._tokens[b], self._token_masks.get(a), self._token_masks.get(b)


@register_loss("filip")
class FilipLoss(_TokenPairLoss):
    """FILIP token-wise max-similarity InfoNCE over pairs of token modalities (see ``filip_loss``).

    Config: ``loss: {clip: 1.0, filip: {weight: 0.5, block_elements: 16777216}}``.
    """

    config_class: ClassVar[type[FilipLossConfig]] = FilipLossConfig
    config: FilipLossConfig

    def pair_loss(self, features_a: Tensor, features_b: Tensor, logit_scale: Tensor, mask: Tensor) -> Tensor:
        tokens_a, tokens_b, token_mask_a, token_mask_b = self.pair_tokens()
        return filip_loss(
            tokens_a,
            tokens_b,
            logit_scale,
            token_mask_a,
            token_mask_b,
            mask,
            self.config.distributed,
            self.config.block_elements,
        )


@register_loss("token")
class TokenAlignmentLoss(_TokenPairLoss):
    """MGCA-style cross-attention token alignment over pairs of token modalities (see ``token_alignment_loss``).

    Its temperatures are its own (not the model's logit scale). Config: ``loss: {clip: 1.0, token: 0.5}``.
    """

    config_class: ClassVar[type[TokenAlignmentLossConfig]] = TokenAlignmentLossConfig
    config: TokenAlignmentLossConfig

    def pair_loss(self, features_a: Tensor, features_b: Tensor, logit_scale: Tensor, mask: Tensor) -> Tensor:
        tokens_a, tokens_b, token_mask_a, token_mask_b = self.pair_tokens()
        value = token_alignment_loss(
            tokens_a,
            tokens_b,
            token_mask_a,
            token_mask_b,
            mask,
            self.config.attention_temperature,
            self.config.temperature,
            self.config.distributed,
            self.config.chunk_size,
        )
        return value + zero_loss_connected_to(logit_scale)  # DDP: the scale gets a (zero) gradient from every loss
