"""torch.distributed helpers that are the identity in a single process.

Contrastive losses need every rank's features as negatives (global negatives): the loss on each rank compares its
local rows against the whole global batch. ``all_gather_with_grad`` does that gather so that gradients reach back to
the rank that produced each row; the ``*_no_grad`` helpers move masks, counts and logged values.

Every helper here is a collective when ``torch.distributed`` is initialised with more than one process: every rank
must call it, in the same order, with tensors of the same shape. With no process group (or a world of one) they
return their input unchanged (detached for the ``*_no_grad`` helpers), so single-process code pays nothing.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

_MAX_GATHERED_DIMS = 8  # the shape check exchanges fixed-size shape vectors; features/masks have 1-3 dims


def is_distributed() -> bool:
    """True when a process group is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank, 0 when not distributed."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """The number of processes, 1 when not distributed."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _check_same_shape(tensor: Tensor, caller: str) -> None:
    """Raise on every rank when the ranks' tensors differ in shape (a gather would hang or mix rows up).

    Unequal local batches usually come from a last, smaller batch; ``drop_last=True`` in the DataLoader (or the
    distributed sampler) avoids them.
    """
    if tensor.dim() > _MAX_GATHERED_DIMS:
        raise ValueError(f"{caller}: tensors with more than {_MAX_GATHERED_DIMS} dimensions are not supported")
    shape = torch.full((_MAX_GATHERED_DIMS + 1,), -1, dtype=torch.long, device=tensor.device)
    shape[0] = tensor.dim()
    shape[1 : tensor.dim() + 1] = torch.tensor(tensor.shape, dtype=torch.long)
    shapes = [torch.empty_like(shape) for _ in range(dist.get_world_size())]
    dist.all_gather(shapes, shape)
    by_rank = [tuple(int(size) for size in row[1 : int(row[0]) + 1]) for row in shapes]
    if any(rank_shape != by_rank[0] for rank_shape in by_rank):
        raise ValueError(
            f"{caller}: every rank must hold a tensor of the same shape (equal local batch sizes), got shapes by rank "
            f"{by_rank}; use drop_last=True in the DataLoader so that every rank gets full batches"
        )


class _AllGatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums every rank's gradient of the gathered tensor into each slice.

    Rank r's rows are used as negatives by every rank's loss, so their gradient is the sum over ranks of each rank's
    gradient with respect to the gathered copy: an all-reduce (SUM) of the gathered gradient, then rank r's slice.
    """

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        ctx.rank = dist.get_rank()
        ctx.local_size = tensor.shape[0]
        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor)
        return torch.cat(parts, dim=0)  # (world * B, ...)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        grad = grad_output.contiguous().clone()  # all_reduce works in place; the incoming gradient is not ours
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.local_size
        return grad[start : start + ctx.local_size]


def all_gather_with_grad(tensor: Tensor) -> Tensor:
    """Concatenate every rank's ``tensor`` along dim 0, rank order; gradients flow back to each rank's own slice.

    Args:
        tensor: (B, ...) the local rows; B and the trailing shape must be equal on every rank.

    Returns:
        (world * B, ...) the global rows; rank r's rows are ``[r * B, (r + 1) * B)``. The input itself when not
        distributed.

    Raises:
        ValueError: on every rank, when the ranks' shapes differ.
    """
    if not is_distributed():
        return tensor
    _check_same_shape(tensor, "all_gather_with_grad")
    return _AllGatherWithGrad.apply(tensor)


def all_gather_no_grad(tensor: Tensor) -> Tensor:
    """Like ``all_gather_with_grad`` for tensors that need no gradient (masks, labels); bool tensors are supported.

    Returns:
        (world * B, ...) detached; ``tensor.detach()`` when not distributed.
    """
    tensor = tensor.detach()
    if not is_distributed():
        return tensor
    _check_same_shape(tensor, "all_gather_no_grad")
    is_bool = tensor.dtype == torch.bool
    sendable = (tensor.to(torch.uint8) if is_bool else tensor).contiguous()  # not every backend moves bools
    parts = [torch.empty_like(sendable) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, sendable)
    gathered = torch.cat(parts, dim=0)  # (world * B, ...)
    return gathered.bool() if is_bool else gathered


def all_reduce_sum_no_grad(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over ranks into a new, detached tensor (the input is left untouched).

    Returns:
        The elementwise sum over ranks; ``tensor.detach()`` when not distributed.
    """
    tensor = tensor.detach()
    if not is_distributed():
        return tensor
    total = tensor.clone().contiguous()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total
