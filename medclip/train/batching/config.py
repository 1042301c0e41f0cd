"""``BatchingConfig``: how the training rows are composed into batches (``train.batching`` in a pretraining config)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config import ConfigError

SMALL_SITE_POLICIES = ("merge", "skip")


@dataclass
class BatchingConfig:
    """Which rows share a batch: the negatives a contrastive loss sees. docs/batching.md says when to use which.

    Attributes:
        kind: random | site_stratified | same_site | hard_negative (the ``BATCHINGS`` registry).
        small_sites: same_site only. Sites with fewer rows than one global batch cannot fill a batch alone:
            "merge" pools them into one mixed-site group (itself skipped, and counted, if still too small),
            "skip" leaves them out of training; either way they are counted in the log.
        refresh_every: hard_negative: optimizer steps between two re-embeddings of the training rows. Each refresh
            embeds every training row once (about one epoch of forward passes without gradients).
        start_after: hard_negative: random batches for this many steps first; a freshly initialised model's
            neighbours are noise.
        neighbours_per_seed: hard_negative: rows added next to each seed row, so about 1 / (1 + k) of a batch are
            seeds drawn at random and the rest their hardest negatives.
        candidates: hard_negative: nearest neighbours kept per row, spares for neighbours already drawn or excluded.
        exclude_same_findings: hard_negative: never two rows with the same finding vector (``label:`` columns, at
            least one finding known) in one batch: they are probably not true negatives.
        modalities: hard_negative: the modalities whose cross-modal similarity defines "nearest" (at least two);
            empty = every modality of the model.
        embed_batch_size: hard_negative: rows per forward pass when embedding; 0 = ``train.batch_size``.
    """

    kind: str = "random"
    small_sites: str = "merge"
    refresh_every: int = 100
    start_after: int = 0
    neighbours_per_seed: int = 3
    candidates: int = 32
    exclude_same_findings: bool = False
    modalities: list[str] = field(default_factory=list)
    embed_batch_size: int = 0

    def __post_init__(self) -> None:
        from .base import BATCHINGS

        BATCHINGS.get(self.kind)  # an unknown kind fails now, naming the available ones
        if self.small_sites not in SMALL_SITE_POLICIES:
            raise ConfigError(
                f"train.batching.small_sites must be one of {', '.join(SMALL_SITE_POLICIES)}, got {self.small_sites!r}"
            )
        if self.refresh_every < 1 or self.start_after < 0 or self.neighbours_per_seed < 0 or self.embed_batch_size < 0:
            raise ConfigError(
                "train.batching needs refresh_every >= 1, start_after >= 0, neighbours_per_seed >= 0 and "
                "embed_batch_size >= 0"
            )
        if self.candidates < max(1, self.neighbours_per_seed):
            raise ConfigError("train.batching.candidates must be >= max(1, neighbours_per_seed)")
        if len(self.modalities) == 1:
            raise ConfigError("train.batching.modalities needs at least two modalities (or none: all of them)")
