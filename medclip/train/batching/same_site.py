"""``same_site``: every batch comes from one site, so in-batch negatives share the scanner and the institution.

A model trained with mixed-site batches can tell a pair from a non-pair by scanner or stain alone (HESCAPE's batch
effects); with one site per batch that shortcut gives nothing and the loss must use the anatomy or the pathology.

Each epoch, each site's rows are permuted and cut into global batches, and the batches of all sites are shuffled
together, so sites are visited in proportion to their size. A site's remainder (fewer rows than a batch) waits for
the next epoch's permutation, as the last incomplete batch does under ``random``. Sites smaller than one global batch
cannot fill a batch alone: ``small_sites: merge`` pools them into one mixed-site group, ``skip`` leaves them out;
both are counted in the log, and a pooled group still smaller than a batch is skipped and counted too. Rows without
a ``site`` cell form one group of their own.
"""

from __future__ import annotations

import torch

from .base import EpochComposer, RowFacts, cut, log, register_batching


@register_batching("same_site")
class SameSiteBatches(EpochComposer):
    salt = 1

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        groups = RowFacts.of(self.dataset).site_groups()
        large = [rows for rows in groups.values() if len(rows) >= self.global_batch]
        small = [rows for rows in groups.values() if len(rows) < self.global_batch]
        self.groups = large
        self.skipped_sites, self.skipped_rows, self.merged_sites = 0, 0, 0
        pooled = [position for rows in small for position in rows]
        if small and self.config.small_sites == "merge" and len(pooled) >= self.global_batch:
            self.groups.append(pooled)
            self.merged_sites = len(small)
        elif small:
            self.skipped_sites, self.skipped_rows = len(small), len(pooled)
        log.info(
            "same_site batches: %d sites of at least %d rows; %d smaller sites merged into one mixed group; %d sites "
            "(%d rows) skipped: smaller than one global batch%s",
            len(large), self.global_batch, self.merged_sites, self.skipped_sites, self.skipped_rows,
            "" if self.config.small_sites == "skip" or not self.skipped_sites else " even when merged",
        )  # fmt: skip
        if self.skipped_rows:
            log.warning(
                "same_site batches leave %d training rows of %d small sites out of training (lower train.batch_size "
                "to use them)", self.skipped_rows, self.skipped_sites,
            )  # fmt: skip
        if not self.groups:
            raise ValueError(
                f"train.batching.kind=same_site: no site (not even the small ones merged) has {self.global_batch} "
                "training rows for one batch; lower train.batch_size"
            )

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        generator = self.generator(epoch)
        batches: list[list[int]] = []
        for rows in self.groups:
            order = torch.randperm(len(rows), generator=generator).tolist()
            batches.extend(cut([rows[i] for i in order], self.global_batch))
        shuffle = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i] for i in shuffle]
