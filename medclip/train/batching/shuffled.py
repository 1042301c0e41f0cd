"""``random``: every epoch a seeded permutation of the training rows, cut into global batches (the default).

The same order as ``ResumableBatchSampler``: a run with ``train.batching.kind: random`` draws the batches the trainer
always drew, so checkpoints written before batch composition was configurable resume unchanged.
"""

from __future__ import annotations

import torch

from .base import EpochComposer, cut, register_batching


@register_batching("random")
class RandomBatches(EpochComposer):
    def generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 100_003 + epoch)  # ResumableBatchSampler's stream

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        order = torch.randperm(self.size, generator=self.generator(epoch)).tolist()
        return cut(order, self.global_batch)
