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
from .distributed import check_pair_inputs, exact_global_value, global_rows, matching_columns

DEFAULT_TILE_SIZE = 512  # one (512 x 512) fp32 block is 1 MiB (fits a core's L2 here); a pass holds about four
DEFAULT_TILED_ABOVE = 4096  # batches with more valid rows than this use the tiled path; below, plain autograd


class TargetWeights:
    """Unnormalised log target weights between a set of query rows and a set of candidate columns.

    Subclasses keep per-row and per-column data (O(B) each) and compute any block on demand.

    Attributes:
        max_log_weight: when not None, no log weight exceeds this value (up to rounding) and every row reaches it
            (at its own pair, as every built-in source does). The normaliser of a row's targets is then accumulated
            in the same pass as the logits, with this value as the exponent's shift, instead of in a pass of its own.
    """

    num_rows: int
    num_columns: int
    max_log_weight: float | None = None

    def block(self, rows: slice, columns: slice) -> Tensor:
        """(r, c) log weights of ``rows`` x ``columns``; -inf where a candidate gets no target mass."""
        raise NotImplementedError


def _tiles(size: int, tile_size: int) -> list[slice]:
    return [slice(start, min(start + tile_size, size)) for start in range(0, size, tile_size)]


def _tile_pairs(rows: int, columns: int, tile_size: int, mirrored: bool) -> list[tuple[slice, slice]]:
    """Every (row tile, column tile) once; ``mirrored`` (square) puts each (j, i) right after its (i, j).

    The order does not change any sum; it lets a symmetric target block computed for (i, j) serve (j, i) too.
    """
    row_tiles, column_tiles = _tiles(rows, tile_size), _tiles(columns, tile_size)
    if not mirrored:
        return [(row_tile, column_tile) for row_tile in row_tiles for column_tile in column_tiles]
    pairs = []
    for i, tile in enumerate(row_tiles):
        pairs.append((tile, tile))
        for other in row_tiles[i + 1 :]:
            pairs += [(tile, other), (other, tile)]
    return pairs


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


class _Blocks:
    """Two reusable (tile x tile) buffers: a block's logits and a scratch block, viewed at each block's shape.

    Reusing them (instead of a fresh tensor per operation) keeps memory at two blocks and spares the allocator and
    the page faults of a new multi-MiB tensor per block, which on a CPU cost as much as the arithmetic.
    """

    def __init__(self, like: Tensor, tile_size: int) -> None:
        self.logits = like.new_empty(tile_size * tile_size)
        self.scratch = like.new_empty(tile_size * tile_size)

    @staticmethod
    def view(buffer: Tensor, rows: int, columns: int) -> Tensor:
        return buffer[: rows * columns].view(rows, columns)  # (r, c), contiguous

    def scaled_logits(self, rows: Tensor, columns: Tensor, scale: Tensor) -> Tensor:
        """``scale * rows @ columns.T`` in the logits buffer, (r, c)."""
        logits = torch.mm(rows, columns.T, out=self.view(self.logits, rows.shape[0], columns.shape[0]))
        return logits.mul_(scale)

    def lse(self, logits: Tensor, dim: int) -> Tensor:
        """logsumexp of ``logits`` along ``dim`` through the scratch buffer: (r,) for dim 1, (c,) for dim 0."""
        peak = logits.amax(dim=dim, keepdim=True)  # (r, 1) or (1, c)
        scratch = torch.sub(logits, peak, out=self.view(self.scratch, *logits.shape)).exp_()
        return scratch.sum(dim=dim).log_().add_(peak.squeeze(dim))


class _SoftTargets:
    """The soft-target side of one tiled pass: per-block target mass and the sums that normalise it.

    Row direction: query rows against candidate columns (``row_weights``). Column direction (symmetric losses):
    columns as queries against the rows, from ``column_weights``, or from the very same blocks when both directions
    share one symmetric weights object (``column_weights is row_weights``: label similarity, positive sets).

    With known maximum weights a block's mass is ``exp(w - max)``, normalised by ``row_sums`` / ``column_sums`` that
    the logits' pass accumulates; otherwise the normalisers get a pass of their own first, the mass is the target
    probability itself and the sums stay 1.
    """

    def __init__(
        self, row_weights: TargetWeights, column_weights: TargetWeights | None, like: Tensor, tile_size: int
    ) -> None:
        self.row_weights, self.column_weights = row_weights, column_weights
        self.shared = column_weights is row_weights
        self.one_pass = row_weights.max_log_weight is not None and (
            column_weights is None or column_weights.max_log_weight is not None
        )
        self.dtype = like.dtype
        # shared symmetric weights over one set of samples: block (j, i) is block (i, j) transposed, so with the
        # mirrored tile order each mass block is computed once for two tiles
        self.mirrored = self.shared and self.one_pass and row_weights.num_rows == row_weights.num_columns
        self._last: tuple[slice, slice, Tensor] | None = None
        if self.one_pass:
            self.row_lse, self.column_lse = None, None
            self.row_sums = like.new_zeros(row_weights.num_rows)  # (P,) sum of exp(w - max) over the candidates
            self.column_sums = like.new_zeros(row_weights.num_columns)  # (V,)
        else:
            self.row_lse = _target_lse(row_weights, tile_size, self.dtype)  # (P,)
            self.column_lse = _target_lse(column_weights, tile_size, self.dtype) if column_weights else None  # (V,)
            self.row_sums, self.column_sums = (
                like.new_ones(row_weights.num_rows),
                like.new_ones(row_weights.num_columns),
            )

    def _row_shift(self, rows: slice) -> Tensor | float:
        return self.row_weights.max_log_weight if self.row_lse is None else self.row_lse[rows, None]  # (r, 1)

    def _column_shift(self, columns: slice) -> Tensor | float:
        return self.column_weights.max_log_weight if self.column_lse is None else self.column_lse[None, columns]

    def blocks(self, rows: slice, columns: slice) -> tuple[Tensor, Tensor | None]:
        """Target mass of the row direction and of the column direction (None if not symmetric), both (r, c)."""
        if self.mirrored:  # one mass serves both directions (same weights, same shift) and the mirrored tile
            if self._last is not None and (self._last[0], self._last[1]) == (columns, rows):
                mass = self._last[2].T.contiguous()  # (r, c): the mirrored block's mass (contiguous: faster passes)
            else:
                mass = self.row_weights.block(rows, columns).to(self.dtype).sub_(self._row_shift(rows)).exp_()
            self._last = (rows, columns, mass)
            return mass, mass
        row_weights = self.row_weights.block(rows, columns).to(self.dtype)  # (r, c)
        if self.column_weights is None:
            return row_weights.sub_(self._row_shift(rows)).exp_(), None
        column_weights = row_weights if self.shared else self.column_weights.block(columns, rows).to(self.dtype).T
        column_mass = (column_weights - self._column_shift(columns)).exp_()  # (r, c), before row_weights changes
        return row_weights.sub_(self._row_shift(rows)).exp_(), column_mass


class _TiledCrossEntropy(torch.autograd.Function):
    """Sum over query rows of ``logsumexp_j z_ij - sum_j t_ij z_ij`` with ``z = scale * rows @ columns.T``.

    ``t`` is one-hot at ``targets`` (hard) or comes from ``row_targets`` (soft). With ``symmetric`` the column
    direction is added from the same blocks (``columns`` then query ``rows``; hard targets are then a permutation).

    Memory: the features, their gradients, O(P + V) running sums and two (tile x tile) blocks (three with soft
    targets). The gradients are written straight into the tensors autograd hands on, and the logit scale's gradient
    comes from them at O((P + V) * D) cost: ``d/ds sum(G * rows @ columns.T) = sum(rows * (G @ columns))``.
    """

    @staticmethod
    def forward(  # noqa: PLR0913 - an autograd Function takes its options positionally
        ctx: Any,
        rows: Tensor,
        columns: Tensor,
        scale: Tensor,
        targets: Tensor | None,
        row_targets: TargetWeights | None,
        column_targets: TargetWeights | None,
        symmetric: bool,
        tile_size: int,
    ) -> Tensor:
        blocks = _Blocks(rows, tile_size)
        soft = _SoftTargets(row_targets, column_targets, rows, tile_size) if row_targets is not None else None
        row_lse = rows.new_full((rows.shape[0],), float("-inf"))  # (P,)
        column_lse = rows.new_full((columns.shape[0],), float("-inf"))  # (V,)
        row_target_dot = rows.new_zeros(rows.shape[0])  # (P,) sum_j mass_ij z_ij
        column_target_dot = rows.new_zeros(columns.shape[0])  # (V,)
        mirrored = soft is not None and soft.mirrored
        for row_tile, column_tile in _tile_pairs(rows.shape[0], columns.shape[0], tile_size, mirrored):
            logits = blocks.scaled_logits(rows[row_tile], columns[column_tile], scale)  # (r, c)
            row_lse[row_tile] = torch.logaddexp(row_lse[row_tile], blocks.lse(logits, dim=1))
            if symmetric:
                column_lse[column_tile] = torch.logaddexp(column_lse[column_tile], blocks.lse(logits, dim=0))
            if soft is None:
                continue
            row_mass, column_mass = soft.blocks(row_tile, column_tile)
            scratch = _Blocks.view(blocks.scratch, *logits.shape)
            row_target_dot[row_tile] += torch.mul(row_mass, logits, out=scratch).sum(dim=1)
            if soft.one_pass:
                soft.row_sums[row_tile] += row_mass.sum(dim=1)
            if column_mass is not None:
                column_target_dot[column_tile] += torch.mul(column_mass, logits, out=scratch).sum(dim=0)
                if soft.one_pass:
                    soft.column_sums[column_tile] += column_mass.sum(dim=0)
        total = row_lse.sum() + (column_lse.sum() if symmetric else 0.0)
        if soft is not None:
            total = total - (row_target_dot / soft.row_sums).sum()
            if column_targets is not None:
                total = total - (column_target_dot / soft.column_sums).sum()
        else:  # the positive logits, O(P * D) in row chunks
            for row_tile in _tiles(rows.shape[0], tile_size):
                positives = (rows[row_tile] * columns[targets[row_tile]]).sum()
                total = total - scale * positives * (2 if symmetric else 1)
        ctx.save_for_backward(rows, columns, scale, row_lse, column_lse, targets)
        ctx.soft, ctx.symmetric, ctx.tile_size = soft, symmetric, tile_size
        return total

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        rows, columns, scale, row_lse, column_lse, targets = ctx.saved_tensors
        soft, symmetric = ctx.soft, ctx.symmetric
        blocks = _Blocks(rows, ctx.tile_size)
        # G @ columns and G.T @ rows with G = d loss / d logits; scaled into the feature gradients at the end
        grad_rows, grad_columns = torch.zeros_like(rows), torch.zeros_like(columns)
        row_weight = None if soft is None else soft.row_sums.reciprocal()[:, None]  # (P, 1)
        column_weight = None if soft is None else soft.column_sums.reciprocal()[None, :]  # (1, V)
        mirrored = soft is not None and soft.mirrored
        for row_tile, column_tile in _tile_pairs(rows.shape[0], columns.shape[0], ctx.tile_size, mirrored):
            logits = blocks.scaled_logits(rows[row_tile], columns[column_tile], scale)  # (r, c)
            # d loss / d logits: the softmax of each direction, minus the targets
            grad = torch.sub(logits, row_lse[row_tile, None], out=_Blocks.view(blocks.scratch, *logits.shape))
            grad.exp_()
            if symmetric:
                grad += logits.sub_(column_lse[None, column_tile]).exp_()
            if soft is not None:
                row_mass, column_mass = soft.blocks(row_tile, column_tile)
                grad.addcmul_(row_mass, row_weight[row_tile], value=-1.0)
                if column_mass is not None:
                    grad.addcmul_(column_mass, column_weight[:, column_tile], value=-1.0)
            grad_rows[row_tile].addmm_(grad, columns[column_tile])
            grad_columns[column_tile].addmm_(grad.T, rows[row_tile])
        if soft is None:  # the one-hot targets: -1 per direction at each (i, targets[i])
            positives = 2.0 if symmetric else 1.0
            for row_tile in _tiles(rows.shape[0], ctx.tile_size):
                grad_rows[row_tile].sub_(columns[targets[row_tile]], alpha=positives)
            grad_columns.index_add_(0, targets, rows, alpha=-positives)
        grad_scale = torch.dot(rows.reshape(-1), grad_rows.reshape(-1)) * grad_output  # sum(G * rows @ columns.T)
        factor = scale * grad_output
        return (
            grad_rows.mul_(factor),
            grad_columns.mul_(factor),
            grad_scale.reshape(scale.shape),
            None,
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
    return _TiledCrossEntropy.apply(rows, columns, scale, targets, row_targets, column_targets, symmetric, tile_size)


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
    mask = check_pair_inputs(features_a, features_b, mask)
    all_masks, offset, use_distributed = global_rows(features_a, mask, distributed)  # (N,)
    num_valid = int(all_masks.sum())
    if num_valid == 0:  # decided from global counts, so every process takes this branch together
        return zero_loss_connected_to(features_a, features_b, logit_scale)
    local = present_rows(mask)  # (P,)
    if not use_distributed:  # square: one pass over the blocks serves both directions
        # every row present (the usual case): the features themselves, no (B, D) copies
        rows, columns = (features_a, features_b) if num_valid == len(mask) else (features_a[local], features_b[local])
        targets = torch.arange(local.numel(), device=rows.device)
        total = tiled_cross_entropy(rows, columns, logit_scale, targets, symmetric=True, tile_size=tile_size)
        return total / (2 * num_valid)
    all_a, all_b = all_gather_with_grad(features_a), all_gather_with_grad(features_b)  # (N, D)
    columns = present_rows(all_masks)  # (V,)
    targets = matching_columns(all_masks, local, offset)  # (P,)
    a_to_b = tiled_cross_entropy(features_a[local], all_b[columns], logit_scale, targets, tile_size=tile_size)
    b_to_a = tiled_cross_entropy(features_b[local], all_a[columns], logit_scale, targets, tile_size=tile_size)
    return exact_global_value((a_to_b + b_to_a) / (2 * num_valid), use_distributed)
