"""``site_stratified``: every batch mixes the sites in proportion to their share of the training rows.

Under ``random`` a small site lands in batches by chance, several at once or none for many steps; stratified batches
keep each site's share steady, so a site's negatives (and its share of the gradient) do not swing from step to step.

Each epoch, each site's rows are permuted and spread evenly over the epoch (systematic sampling: the k-th of a
site's n rows sits at (k + u) / n with a random offset u per site); the rows sorted by that position are cut into
global batches. A site with share p then has round(p * batch) rows in every batch, give or take one; a site with
fewer rows than there are batches in an epoch appears in some batches only (counted in the log). Rows without a
``site`` cell are one group of their own. No row is left out beyond the incomplete last batch, as under ``random``.
"""

from __future__ import annotations

import torch

from .base import EpochComposer, RowFacts, cut, log, register_batching


@register_batching("site_stratified")
class SiteStratifiedBatches(EpochComposer):
    salt = 2

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.groups = list(RowFacts.of(self.dataset).site_groups().values())
        per_epoch = self.size // self.global_batch
        sparse = sum(1 for rows in self.groups if len(rows) < per_epoch)
        log.info(
            "site_stratified batches: %d sites; %d of them have fewer rows than the %d batches of an epoch and "
            "appear in some batches only", len(self.groups), sparse, per_epoch,
        )  # fmt: skip
        if len(self.groups) == 1:
            log.warning("site_stratified batches: the training rows hold one site only; batches are plain random")

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        generator = self.generator(epoch)
        keyed: list[tuple[float, int, int]] = []  # (position in the epoch, site, dataset position)
        for site, rows in enumerate(self.groups):
            order = torch.randperm(len(rows), generator=generator).tolist()
            offset = float(torch.rand((), generator=generator))
            keyed.extend(((k + offset) / len(rows), site, rows[i]) for k, i in enumerate(order))
        keyed.sort()
        return cut([position for _, _, position in keyed], self.global_batch)
