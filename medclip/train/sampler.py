"""A deterministic, resumable, rank-aware order of training batches.

Each epoch is a seeded permutation of the training rows (seed + epoch), cut into *global* batches of
``batch_size * world_size`` rows; rank r takes the r-th slice of each global batch. The global batch is therefore the
same whatever the number of processes, and the position (epoch, batch) is all that is needed to resume mid-epoch.
An incomplete last global batch is dropped: contrastive losses want full batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class ResumableBatchSampler:
    """Yields lists of dataset indices, one list per micro-batch of this rank.

    Args:
        size: number of training rows.
        batch_size: rows per rank per micro-batch.
        seed: base seed of the per-epoch permutation.
        rank, world_size: this process's place among the data-parallel processes.
    """

    def __init__(self, size: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        global_batch = batch_size * world_size
        if size < global_batch:
            raise ValueError(
                f"the training split has {size} usable rows, fewer than one global batch of {global_batch} "
                f"(batch_size {batch_size} x {world_size} processes); lower train.batch_size"
            )
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.batch_in_epoch = 0

    @property
    def batches_per_epoch(self) -> int:
        return self.size // (self.batch_size * self.world_size)

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        global_batch = self.batch_size * self.world_size
        batches = []
        for start in range(0, self.batches_per_epoch * global_batch, global_batch):
            local = start + self.rank * self.batch_size
            batches.append(order[local : local + self.batch_size])
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        """Endless: continues from the saved position, then runs epoch after epoch."""
        while True:
            batches = self._epoch_batches(self.epoch)
            while self.batch_in_epoch < len(batches):
                batch = batches[self.batch_in_epoch]
                self.batch_in_epoch += 1
                yield batch
            self.epoch += 1
            self.batch_in_epoch = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError("resuming with a different train.seed would change the sample order")
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
