"""Batch composition (``train.batching``): which training rows share a batch, i.e. which negatives the loss sees.

Kinds (the ``BATCHINGS`` registry; docs/batching.md says when to use which):

- ``random``: a seeded permutation per epoch (the default, and the order the trainer always drew);
- ``site_stratified``: every batch mixes the sites in proportion to their size;
- ``same_site``: every batch comes from one site, so the model cannot separate pairs by scanner;
- ``hard_negative``: seed rows plus their nearest cross-modal neighbours from a periodically refreshed embedding table,
  never two rows of one patient (nor, optionally, of the same findings) in a batch.

All are distributed-correct (global batches cut into rank slices, the same on every rank) and resumable (their state
goes into ``trainer_state.json``, the hard-negative table into ``batching.safetensors``).
"""

from __future__ import annotations

from torch.utils.data import Dataset

from . import hard_negative, same_site, shuffled, site_stratified  # noqa: F401  (register the built-in kinds)
from .base import BATCHINGS, BatchComposer, EpochComposer, RowFacts, list_batchings, register_batching
from .config import BatchingConfig


def build_batching(
    config: BatchingConfig, dataset: Dataset, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1
) -> BatchComposer:
    """The composer ``config.kind`` names, for this rank of ``world_size`` processes."""
    return BATCHINGS.get(config.kind)(config, dataset, batch_size, seed, rank, world_size)


__all__ = [
    "BATCHINGS",
    "BatchComposer",
    "BatchingConfig",
    "EpochComposer",
    "RowFacts",
    "build_batching",
    "list_batchings",
    "register_batching",
]
