"""The distributed convention every loss follows, in one place.

Each process computes its loss terms only for its own valid rows against the valid rows of the global batch (gathered
with gradient) and divides by the global count: summed over processes, these local shares are exactly the
single-process loss on the concatenated batch. The returned tensor has the global value (identical on every process,
for logging) and the gradient of ``world_size * local share``, so that after DistributedDataParallel averages
parameter gradients (SUM / world) they equal the single-process gradients. These helpers find the global rows,
match each local row to its column, and apply the value/gradient convention.
"""

from __future__ import annotations

from torch import Tensor

from ..distributed import all_gather_no_grad, all_reduce_sum_no_grad, get_rank, get_world_size, is_distributed


def check_pair_inputs(features_a: Tensor, features_b: Tensor, mask: Tensor | None) -> Tensor:
    """Validate a pair of (B, D) feature batches and return the (B,) bool mask (all True when ``mask`` is None)."""
    if features_a.dim() != 2 or features_a.shape != features_b.shape:
        raise ValueError(
            f"expected two (B, D) feature batches of the same shape, got {tuple(features_a.shape)} and "
            f"{tuple(features_b.shape)}"
        )
    if mask is None:
        return features_a.new_ones(features_a.shape[0], dtype=bool)
    if mask.shape != features_a.shape[:1]:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected ({features_a.shape[0]},)")
    return mask.to(device=features_a.device, dtype=bool)


def global_rows(features: Tensor, mask: Tensor, distributed: bool) -> tuple[Tensor, int, bool]:
    """The global (all-process) mask, the offset of this process's first row in it, and whether to gather at all."""
    use_distributed = distributed and is_distributed()
    if not use_distributed:
        return mask, 0, False
    return all_gather_no_grad(mask), get_rank() * features.shape[0], True  # (world * B,)


def matching_columns(all_masks: Tensor, local: Tensor, offset: int) -> Tensor:
    """Each local valid row's column among the global valid rows: (N,) global mask, (P,) local rows -> (P,).

    The columns of a contrast are the valid rows of the global batch in order, so a row's match is the number of
    valid rows before it (its rank-local index shifted by ``offset``, this process's first global row).
    """
    return (all_masks.long().cumsum(0) - 1)[local + offset]


def exact_global_value(local_share: Tensor, use_distributed: bool) -> Tensor:
    """Apply the distributed convention: report the summed shares, backpropagate ``world * local share``."""
    if not use_distributed:
        return local_share
    global_value = all_reduce_sum_no_grad(local_share)
    loss_for_grad = local_share * get_world_size()
    return loss_for_grad + (global_value - loss_for_grad).detach()
