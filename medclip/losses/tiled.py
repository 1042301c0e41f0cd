"""Tiled softmax cross-entropy: InfoNCE (hard or soft targets) with exact gradients and O(B * D) memory.

A (B, B) logit matrix costs 1 GiB at B = 16k in fp32, and autograd keeps several of them (logits, softmax, their
gradient). Here the logits are never materialised: the forward pass walks (tile x tile) blocks of
``scale * rows @ columns.T``, keeps only the running row (and column) log-sum-exp, and the backward pass recomputes
each block from the saved features and log-sum-exps (the softmax of a block is ``exp(z - lse)``). Memory is the
features, their gradients and one block; the result equals the plain loss up to float rounding (tested to 1e-5 in
float32 and 1e-10 in float64, values and gradients).

In one process the matrix is square (every valid row against every valid row) and one pass serves both directions:
a block's row log-sum-exp feeds a->b, its column log-sum-exp feeds b->a ("row/column log-sum-exp kept"). Under
torch.distributed each process scores its local rows against the global columns, once per direction (the convention
of ``medclip.losses.clip``).

Soft targets (soft-label, CWCL, multi-positive losses) are built per block too: a ``TargetWeights`` object returns the
unnormalised log target weights of any block from per-sample data (label vectors, detached features, patient ids), so
no (B, B) target matrix exists either. Target ``t_ij = exp(w_ij - logsumexp_j w_ij)``; ``w = -inf`` means no target
mass. Each row's loss is ``logsumexp_j z_ij - sum_j t_ij z_ij``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..distributed import all_gather_with_grad
from ..types import present_rows
from .base import zero_loss_connected_to

DEFAULT_TILE_SIZE = 1024  # one (1024 x 1024) fp32 block is 4 MiB; the backward pass holds about four of them
DEFAULT_TILED_ABOVE = 4096  # batches with more valid rows than this use the tiled path; below, plain autograd


class TargetWeights:
    """Unnormalised log target weights between a set of query rows and a set of candidate columns.

    Subclasses keep per-row and per-column data (O(B) each) and compute any block on demand.
    """

    num_rows: int
    num_columns: int

    def block(self, rows: slice, columns: slice) -> Tensor:
        """(r, c) log weights of ``rows`` x ``columns``; -inf where a candidate gets no target mass."""
        raise NotImplementedError


def _tiles(size: int, tile_size: int) -> list[slice]:
    return [slice(start, min(start + tile_size, size)) for start in range(0, size, tile_size)]


def _target_lse(weights: TargetWeights, tile_size: int, dtype: torch.dtype) -> Tensor:
    """logsumexp over the candidates of every query row of ``weights``: the soft targets' normalisers, (rows,)."""
    parts = []
    for rows in _tiles(weights.num_rows, tile_size):
        running: Tensor | None = None
        for columns in _tiles(weights.num_columns, tile_size):
            block_lse = weights.block(rows, columns).to(dtype).logsumexp(dim=1)  # (r,)
            running = block_lse if running is None else torch.logaddexp(running, block_lse)
        parts.append(running)
    return torch.cat(parts)


class _TiledCrossEntropy(torch.autograd.Function):
    """Sum over query rows of ``logsumexp_j z_ij - sum_j t_ij z_ij`` with ``z = scale * rows @ columns.T``.

    With ``symmetric`` the column direction is added from the same blocks (``columns`` then query ``rows``). With no
    target weights only the log-sum-exp terms are returned (the caller adds the hard positive term with autograd).
    """

    @staticmethod
    def forward(  # noqa: PLR0913 - an autograd Function takes its options positionally
        ctx: Any,
        rows: Tensor,
        columns: Tensor,
        scale: Tensor,
        row_targets: TargetWeights | None,
        column_targets: TargetWeights | None,
        symmetric: bool,
        tile_size: int,
    ) -> Tensor:
        soft = row_targets is not None
        row_lse = rows.new_full((rows.shape[0],), float("-inf"))  # (P,)
        column_lse = columns.new_full((columns.shape[0],), float("-inf"))  # (V,)
        row_target_lse = _target_lse(row_targets, tile_size, rows.dtype) if soft else None  # (P,)
        column_target_lse = _target_lse(column_targets, tile_size, rows.dtype) if soft and symmetric else None  # (V,)
        target_dot = rows.new_zeros(())
        row_tiles, column_tiles = _tiles(rows.shape[0], tile_size), _tiles(columns.shape[0], tile_size)
        for row_tile in row_tiles:
            for column_tile in column_tiles:
                logits = scale * (rows[row_tile] @ columns[column_tile].T)  # (r, c)
                row_lse[row_tile] = torch.logaddexp(row_lse[row_tile], logits.logsumexp(dim=1))
                if symmetric:
                    column_lse[column_tile] = torch.logaddexp(column_lse[column_tile], logits.logsumexp(dim=0))
                if soft:
                    targets = (
                        row_targets.block(row_tile, column_tile).to(logits.dtype) - row_target_lse[row_tile, None]
                    ).exp()
                    target_dot = target_dot + (targets * logits).sum()
                    if symmetric:
                        weights = column_targets.block(column_tile, row_tile).T.to(logits.dtype)  # (r, c)
                        targets = (weights - column_target_lse[None, column_tile]).exp()
                        target_dot = target_dot + (targets * logits).sum()
        ctx.save_for_backward(rows, columns, scale, row_lse, column_lse)
        ctx.targets = (row_targets, column_targets, row_target_lse, column_target_lse)
        ctx.symmetric, ctx.tile_size = symmetric, tile_size
        total = row_lse.sum() + (column_lse.sum() if symmetric else 0.0)
        return total - target_dot

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        rows, columns, scale, row_lse, column_lse = ctx.saved_tensors
        row_targets, column_targets, row_target_lse, column_target_lse = ctx.targets
        grad_rows, grad_columns = torch.zeros_like(rows), torch.zeros_like(columns)
        grad_scale = scale.new_zeros(())
        for row_tile in _tiles(rows.shape[0], ctx.tile_size):
            for column_tile in _tiles(columns.shape[0], ctx.tile_size):
                dots = rows[row_tile] @ columns[column_tile].T  # (r, c)
                logits = scale * dots
                # d loss / d logits = softmax (minus the targets), per direction
                grad_logits = (logits - row_lse[row_tile, None]).exp_()
                if ctx.symmetric:
                    grad_logits += (logits - column_lse[None, column_tile]).exp_()
                if row_targets is not None:
                    grad_logits -= (
                        row_targets.block(row_tile, column_tile).to(logits.dtype) - row_target_lse[row_tile, None]
                    ).exp_()
                    if ctx.symmetric:
                        weights = column_targets.block(column_tile, row_tile).T.to(logits.dtype)  # (r, c)
                        grad_logits -= (weights - column_target_lse[None, column_tile]).exp_()
                grad_scale += (grad_logits * dots).sum()
                grad_logits *= scale
                grad_rows[row_tile] += grad_logits @ columns[column_tile]
                grad_columns[column_tile] += grad_logits.T @ rows[row_tile]
        return (
            grad_rows * grad_output,
            grad_columns * grad_output,
            (grad_scale * grad_output).reshape(scale.shape),
            None,
            None,
            None,
            None,
        )


def tiled_cross_entropy(
    rows: Tensor,
    columns: Tensor,
    scale: Tensor,
    targets: Tensor | None = None,
    row_targets: TargetWeights | None = None,
    column_targets: TargetWeights | None = None,
    symmetric: bool = False,
    tile_size: int = DEFAULT_TILE_SIZE,
) -> Tensor:
    """Summed softmax cross-entropy of ``scale * rows @ columns.T`` without materialising the logits.

    Args:
        rows: (P, D) query features.
        columns: (V, D) candidate features.
        scale: scalar logit scale.
        targets: (P,) hard targets (column index of each row's positive); with ``symmetric`` P == V and the column
            direction's targets are the inverse permutation, i.e. ``targets`` must be ``arange(P)``.
        row_targets: soft targets of the row direction (instead of ``targets``).
        column_targets: soft targets of the column direction (with ``symmetric``; its rows are ``columns``).
        symmetric: add the column direction (columns as queries against rows), from the same blocks.
        tile_size: block edge; memory is O((P + V) * D + tile_size**2).

    Returns:
        A scalar: the sum over query rows (and columns when symmetric) of the cross-entropy.
    """
    if rows.dim() != 2 or columns.dim() != 2 or rows.shape[1] != columns.shape[1]:
        raise ValueError(f"expected (P, D) and (V, D) features, got {tuple(rows.shape)} and {tuple(columns.shape)}")
    if tile_size < 1:
        raise ValueError(f"tile_size must be >= 1, got {tile_size}")
    if (targets is None) == (row_targets is None):
        raise ValueError("give either hard targets or soft row_targets")
    if symmetric and row_targets is not None and column_targets is None:
        raise ValueError("symmetric soft targets need column_targets")
    scale = scale.to(rows.dtype)
    total = _TiledCrossEntropy.apply(rows, columns, scale, row_targets, column_targets, symmetric, tile_size)
    if targets is not None:  # the positive logit, O(P * D), through plain autograd
        positive = scale * (rows * columns[targets]).sum()
        total = total - positive * (2 if symmetric else 1)
    return total


def tiled_clip_loss(
    features_a: Tensor,
    features_b: Tensor,
    logit_scale: Tensor,
    mask: Tensor | None = None,
    distributed: bool = True,
    tile_size: int = DEFAULT_TILE_SIZE,
) -> Tensor:
    """``clip_loss`` (same arguments, value, masks and distributed convention) in O(B * D) memory.

    Returns:
        A scalar equal to ``clip_loss`` on the same inputs, up to float rounding.
    """
    from .clip import check_pair_inputs, exact_global_value, global_rows, matching_columns

    mask = check_pair_inputs(features_a, features_b, mask)
    all_masks, offset, use_distributed = global_rows(features_a, mask, distributed)  # (N,)
    num_valid = int(all_masks.sum())
    if num_valid == 0:  # decided from global counts, so every process takes this branch together
        return zero_loss_connected_to(features_a, features_b, logit_scale)
    local = present_rows(mask)  # (P,)
    if not use_distributed:  # square: one pass over the blocks serves both directions
        rows, columns = features_a[local], features_b[local]  # (V, D) each
        targets = torch.arange(local.numel(), device=rows.device)
        total = tiled_cross_entropy(rows, columns, logit_scale, targets, symmetric=True, tile_size=tile_size)
        return total / (2 * num_valid)
    all_a, all_b = all_gather_with_grad(features_a), all_gather_with_grad(features_b)  # (N, D)
    columns = present_rows(all_masks)  # (V,)
    targets = matching_columns(all_masks, local, offset)  # (P,)
    a_to_b = tiled_cross_entropy(features_a[local], all_b[columns], logit_scale, targets, tile_size=tile_size)
    b_to_a = tiled_cross_entropy(features_b[local], all_a[columns], logit_scale, targets, tile_size=tile_size)
    return exact_global_value((a_to_b + b_to_a) / (2 * num_valid), use_distributed)
