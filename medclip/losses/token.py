"""Token-level (region / patch / sentence / lead) losses: FILIP token-wise max similarity and MGCA token alignment.

Both use the ``tokens`` (B, T, D, unit-norm, projected by the modality's head) and ``token_masks`` (B, T, True = real
token) that ``ContrastiveModel`` returns for every encoder that emits tokens, and neither ever builds the
(B x B x Ti x Tt) similarity tensor of the reference implementations.

- ``filip`` (Yao et al., ICLR 2022, FILIP): similarity of sample i to j = mean over i's real tokens of the max over j's
  real tokens of the token dot product (and the converse for the other direction); InfoNCE with the model's logit
  scale over those similarities, global candidates under torch.distributed (tokens gathered with gradient, padded to
  the longest sequence of any process). ``token_max_similarity`` computes the (P, V) similarities block by block
  under a memory budget (one matrix product per block, reduced by a max over each direction's token axis) and keeps
  only the argmax indices (P x V x T, int16) for the backward pass: a max hands its gradient to one winning token
  pair, so the backward pass is two sparse products (weighted gathers and sorted scatters, P x V x (Tq + Tk)
  non-zeros) instead of the forward's dense one. Deviation: FILIP reduces the token dimension (to 256) and uses fp16
  to fit; here any dimension is kept and memory is bounded by the block budget instead.
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
from .base import Pair, PairwiseContrastiveLoss, PairwiseLossConfig, register_loss, zero_loss_connected_to
from .distributed import check_pair_inputs, exact_global_value, global_rows, matching_columns

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


def _index_dtype(tokens: int) -> torch.dtype:
    """The smallest integer type that holds a token index: the saved argmaxes are the backward pass's memory."""
    return torch.int16 if tokens <= torch.iinfo(torch.int16).max else torch.int32


def _scatter_weighted_rows(target: Tensor, target_rows: Tensor, source: Tensor, source_rows: Tensor, weights: Tensor):
    """``target[target_rows[n]] += weights[n] * source[source_rows[n]]`` for every n, without an (n, D) temporary.

    The entries are grouped by target row (a sort) and each group is one weighted bag of ``embedding_bag``.
    """
    order = torch.argsort(target_rows)
    grouped = target_rows[order]
    rows, counts = torch.unique_consecutive(grouped, return_counts=True)
    offsets = torch.cumsum(counts, dim=0) - counts
    sums = F.embedding_bag(
        source_rows[order], source, offsets, mode="sum", per_sample_weights=weights[order]
    )  # (unique rows, D)
    target.index_add_(0, rows, sums)


class _TokenMaxSimilarity(torch.autograd.Function):
    """(P, V) mean-of-max token similarities in both directions, from blocks; only the argmaxes are kept.

    Forward: one matrix product per block of samples, ``(bi*Tq, D) @ (D, bj*Tk)``, reduced at once by a max over
    each direction's token axis. Backward: a max passes its gradient to the one winning pair, so each gradient is a
    sparse product with P*V*(Tq + Tk) non-zeros instead of the forward's dense one: the side whose rows are fixed
    per entry gathers them as weighted bags (``embedding_bag``), the other side scatters them, grouped by a sort.
    """

    @staticmethod
    def forward(ctx: Any, queries: Tensor, keys: Tensor, query_mask: Tensor, key_mask: Tensor, budget: int):
        rows, columns, tokens_q, tokens_k = queries.shape[0], keys.shape[0], queries.shape[1], keys.shape[1]
        query_counts = query_mask.sum(dim=1).to(queries.dtype)  # (P,)
        key_counts = key_mask.sum(dim=1).to(queries.dtype)  # (V,)
        every_query, every_key = bool(query_mask.all()), bool(key_mask.all())
        row_similarity = queries.new_zeros(rows, columns)  # mean over query tokens of max over key tokens
        column_similarity = queries.new_zeros(rows, columns)  # mean over key tokens of max over query tokens
        row_argmax = torch.empty(rows, tokens_q, columns, dtype=_index_dtype(tokens_k), device=queries.device)
        column_argmax = torch.empty(rows, columns, tokens_k, dtype=_index_dtype(tokens_q), device=queries.device)
        row_block, column_block = _blocks(rows, columns, tokens_q, tokens_k, budget)
        buffer = queries.new_empty(row_block * tokens_q * column_block * tokens_k)
        flat_queries = queries.reshape(rows * tokens_q, -1)  # (P * Tq, D)
        flat_keys = keys.reshape(columns * tokens_k, -1)  # (V * Tk, D)
        for i in range(0, rows, row_block):
            size_i = min(row_block, rows - i)
            block_q = flat_queries[i * tokens_q : (i + size_i) * tokens_q]  # (bi * Tq, D)
            for j in range(0, columns, column_block):
                size_j = min(column_block, columns - j)
                block_k = flat_keys[j * tokens_k : (j + size_j) * tokens_k]  # (bj * Tk, D)
                out = buffer[: block_q.shape[0] * block_k.shape[0]].view(block_q.shape[0], block_k.shape[0])
                similarity = torch.mm(block_q, block_k.T, out=out).view(size_i, tokens_q, size_j, tokens_k)
                if not every_key:  # padded keys never win a query token
                    similarity.masked_fill_(~key_mask[None, None, j : j + size_j, :], float("-inf"))
                best_key, best_key_index = similarity.max(dim=3)  # (bi, Tq, bj)
                if not every_query:  # padded queries never win a key token
                    similarity.masked_fill_(~query_mask[i : i + size_i, :, None, None], float("-inf"))
                best_query, best_query_index = similarity.max(dim=1)  # (bi, bj, Tk)
                if not every_query:
                    best_key.masked_fill_(~query_mask[i : i + size_i, :, None], 0.0)  # padded queries add 0
                if not every_key:
                    best_query.masked_fill_(~key_mask[None, j : j + size_j, :], 0.0)
                rows_slice, columns_slice = slice(i, i + size_i), slice(j, j + size_j)
                row_similarity[rows_slice, columns_slice] = best_key.sum(dim=1) / query_counts[rows_slice, None]
                column_similarity[rows_slice, columns_slice] = best_query.sum(dim=2) / key_counts[None, columns_slice]
                row_argmax[rows_slice, :, columns_slice] = best_key_index
                column_argmax[rows_slice, columns_slice] = best_query_index
        ctx.save_for_backward(queries, keys, query_mask, key_mask, row_argmax, column_argmax)
        ctx.budget = budget
        return row_similarity, column_similarity

    @staticmethod
    def backward(ctx: Any, grad_row: Tensor | None, grad_column: Tensor | None):
        queries, keys, query_mask, key_mask, row_argmax, column_argmax = ctx.saved_tensors
        rows, columns, tokens_q, tokens_k = queries.shape[0], keys.shape[0], queries.shape[1], keys.shape[1]
        device = queries.device
        flat_queries = queries.reshape(rows * tokens_q, -1)  # (P * Tq, D)
        flat_keys = keys.reshape(columns * tokens_k, -1)  # (V * Tk, D)
        grad_queries, grad_keys = torch.zeros_like(flat_queries), torch.zeros_like(flat_keys)  # (P*Tq, D), (V*Tk, D)
        query_weight = query_mask.to(queries.dtype) / query_mask.sum(dim=1, keepdim=True)  # (P, Tq) 1/count, real
        key_weight = key_mask.to(queries.dtype) / key_mask.sum(dim=1, keepdim=True)  # (V, Tk)
        # Entries of a chunk: a few int64 / float tensors of chunk x (other side's samples) x T each; budget them.
        query_chunk = max(1, min(rows, ctx.budget // max(1, 4 * columns * (tokens_q + tokens_k))))
        key_chunk = max(1, min(columns, ctx.budget // max(1, 4 * rows * (tokens_q + tokens_k))))
        # Query chunks: the gradients that land on the chunk's query tokens (their temporaries are chunk-sized).
        for i in range(0, rows, query_chunk):
            chunk = slice(i, min(i + query_chunk, rows))
            size = chunk.stop - i
            query_rows = slice(i * tokens_q, chunk.stop * tokens_q)  # the chunk's flat query rows
            if grad_row is not None:  # query token (i, k) took key token (j, argmax) for every j: gather
                weight = grad_row[chunk, None, :] * query_weight[chunk, :, None]  # (bi, Tq, V)
                winners = torch.arange(columns, device=device) * tokens_k + row_argmax[chunk].long()  # (bi, Tq, V)
                grad_queries[query_rows] += F.embedding_bag(
                    winners.reshape(-1, columns), flat_keys, mode="sum", per_sample_weights=weight.reshape(-1, columns)
                )  # (bi * Tq, D)
            if grad_column is not None:  # key token (j, r) took query token (i, argmax): scatter onto the winners
                weight = grad_column[chunk, :, None] * key_weight[None, :, :]  # (bi, V, Tk)
                winners = (
                    torch.arange(i, chunk.stop, device=device)[:, None, None] * tokens_q + column_argmax[chunk].long()
                )  # (bi, V, Tk) flat query rows
                key_ids = torch.arange(columns * tokens_k, device=device).repeat(size)  # (bi * V * Tk,)
                _scatter_weighted_rows(grad_queries, winners.reshape(-1), flat_keys, key_ids, weight.reshape(-1))
        # Key chunks: the gradients that land on the chunk's key tokens.
        for j in range(0, columns, key_chunk):
            chunk = slice(j, min(j + key_chunk, columns))
            size = chunk.stop - j
            key_rows = slice(j * tokens_k, chunk.stop * tokens_k)  # the chunk's flat key rows
            if grad_column is not None:  # key token (j, r) took query token (i, argmax) for every i: gather
                weight = grad_column[:, chunk, None] * key_weight[None, chunk, :]  # (P, bj, Tk)
                winners = (
                    torch.arange(rows, device=device)[:, None, None] * tokens_q + column_argmax[:, chunk].long()
                )  # (P, bj, Tk) flat query rows
                grad_keys[key_rows] += F.embedding_bag(
                    winners.permute(1, 2, 0).reshape(-1, rows),
                    flat_queries,
                    mode="sum",
                    per_sample_weights=weight.permute(1, 2, 0).reshape(-1, rows),
                )  # (bj * Tk, D)
            if grad_row is not None:  # query token (i, k) took key token (j, argmax): scatter onto the winners
                weight = grad_row[:, None, chunk] * query_weight[:, :, None]  # (P, Tq, bj)
                winners = torch.arange(j, chunk.stop, device=device) * tokens_k + row_argmax[:, :, chunk].long()
                query_ids = torch.arange(rows * tokens_q, device=device).repeat_interleave(size)  # (P * Tq * bj,)
                _scatter_weighted_rows(grad_keys, winners.reshape(-1), flat_queries, query_ids, weight.reshape(-1))
        return grad_queries.view_as(queries), grad_keys.view_as(keys), None, None, None


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
        if num_valid < len(mask):  # only the present rows (every row present, the usual case: no copies)
            tokens_a, tokens_b = tokens_a[local], tokens_b[local]
            token_mask_a, token_mask_b = token_mask_a[local], token_mask_b[local]
        a_to_b, b_to_a = token_max_similarity(
            tokens_a, tokens_b, token_mask_a, token_mask_b, block_elements
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
    """Pairs of modalities whose encoders return tokens; ``pair_loss`` reads them from its ``Pair``."""

    def contrasted_modalities(self, features: Mapping[str, Tensor], outputs: Mapping[str, Any]) -> list[str]:
        tokens = outputs.get("tokens") or {}
        with_tokens = [name for name in features if name in tokens]
        if len(with_tokens) < 2:
            raise ValueError(
                f"{self.name} loss needs tokens from at least two modalities; got tokens for {with_tokens} "
                f"(modalities {list(features)}): use encoders that return tokens"
            )
        return with_tokens


@register_loss("filip")
class FilipLoss(_TokenPairLoss):
    """FILIP token-wise max-similarity InfoNCE over pairs of token modalities (see ``filip_loss``).

    Config: ``loss: {clip: 1.0, filip: {weight: 0.5, block_elements: 16777216}}``.
    """

    config_class: ClassVar[type[FilipLossConfig]] = FilipLossConfig
    config: FilipLossConfig

    def pair_loss(
        self, features_a: Tensor, features_b: Tensor, logit_scale: Tensor, mask: Tensor, pair: Pair
    ) -> Tensor:
        tokens_a, tokens_b, token_mask_a, token_mask_b = pair.tokens()
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

    def pair_loss(
        self, features_a: Tensor, features_b: Tensor, logit_scale: Tensor, mask: Tensor, pair: Pair
    ) -> Tensor:
        tokens_a, tokens_b, token_mask_a, token_mask_b = pair.tokens()
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
