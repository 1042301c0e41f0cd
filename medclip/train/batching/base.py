"""The seam every batch composition implements: global batches cut into rank slices, resumable from a batch number.

A composer decides which training rows share a *global* batch of ``batch_size * world_size`` rows; rank r takes the
r-th slice. The global batches depend on the seed, the global batch size and (for ``hard_negative``) the saved
neighbour table, never on the number of processes, so a run resumed on another number of processes with the same
global batch draws the same rows. ``batches(start)`` continues from global batch number ``start`` (the trainer's
``consumed_batches``), which is what makes a resumed run draw exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from ...registry import Registry
from .config import BatchingConfig

log = logging.getLogger("medclip.train.batching")

BATCHINGS: Registry[type[BatchComposer]] = Registry("batching")


def register_batching(name: str):
    """Class decorator: make a composer available as ``train.batching.kind: <name>``."""

    def add(cls: type[BatchComposer]) -> type[BatchComposer]:
        cls.name = name
        return BATCHINGS.register(name, cls)

    return add


def list_batchings(pattern: str | None = None) -> list[str]:
    return BATCHINGS.names(pattern)


@dataclass
class RowFacts:
    """What composition may know about each training row: pseudonyms, site and findings, in dataset order.

    Attributes:
        patients: (N,) patient pseudonyms.
        sites: (N,) the manifest's ``site`` cell, None where blank.
        labels: (N, K) 1 / 0 / NaN findings (``label:`` columns).
    """

    patients: list[str]
    sites: list[str | None]
    labels: np.ndarray

    @classmethod
    def of(cls, dataset: Dataset) -> RowFacts:
        """The facts of a ``ManifestDataset`` (any dataset with ``rows()`` of ``ManifestRow``)."""
        rows_of = getattr(dataset, "rows", None)
        if rows_of is None:
            raise TypeError("site-aware and hard-negative batches need a ManifestDataset (rows with patient and site)")
        rows = rows_of()
        labels = np.stack([row.labels for row in rows]) if rows else np.zeros((0, 0), dtype=np.float32)
        return cls([row.patient for row in rows], [row.site for row in rows], labels.reshape(len(rows), -1))

    def __len__(self) -> int:
        return len(self.patients)

    def patient_codes(self) -> np.ndarray:
        """(N,) int: one code per patient."""
        codes: dict[str, int] = {}
        return np.asarray([codes.setdefault(patient, len(codes)) for patient in self.patients], dtype=np.int64)

    def finding_codes(self) -> np.ndarray:
        """(N,) int: one code per distinct finding vector (unknowns compare equal to unknowns); -1 for rows with no
        known finding, which are never "the same findings" as another row."""
        codes: dict[bytes, int] = {}
        result = np.full(len(self), -1, dtype=np.int64)
        for position, vector in enumerate(self.labels):
            if vector.size == 0 or np.all(np.isnan(vector)):
                continue
            key = np.where(np.isnan(vector), -1.0, vector).astype(np.float32).tobytes()
            result[position] = codes.setdefault(key, len(codes))
        return result

    def site_groups(self) -> dict[str | None, list[int]]:
        """site -> dataset positions, in a fixed order (named sites sorted, then the rows without a site)."""
        groups: dict[str | None, list[int]] = {}
        for position, site in enumerate(self.sites):
            groups.setdefault(site, []).append(position)
        return dict(sorted(groups.items(), key=lambda item: (item[0] is None, item[0] or "")))


class BatchComposer:
    """Base of every composition: rank slicing, resume from a batch number, and (by default) no state to save.

    Args:
        config: ``train.batching``.
        dataset: the training dataset (a ``ManifestDataset`` for the kinds that read sites, patients or findings).
        batch_size: rows per rank per micro-batch.
        seed: ``train.seed``.
        rank, world_size: this process's place among the data-parallel processes.
    """

    name: ClassVar[str] = ""

    def __init__(
        self,
        config: BatchingConfig,
        dataset: Dataset,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.config, self.dataset = config, dataset
        self.size = len(dataset)
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.global_batch = batch_size * world_size
        if self.size < self.global_batch:
            raise ValueError(
                f"the training split has {self.size} usable rows, fewer than one global batch of {self.global_batch} "
                f"(batch_size {batch_size} x {world_size} processes); lower train.batch_size"
            )

    # --- to implement -------------------------------------------------------------------------------------------
    def global_batches(self, start: int) -> Iterator[list[int]]:
        """Endless global batches (dataset positions), from global batch number ``start`` on."""
        raise NotImplementedError

    # --- optional: compositions that depend on the model (hard_negative) ------------------------------------------
    def refresh_due(self, step: int) -> bool:
        """Whether the trainer must call ``refresh`` before optimizer step ``step``."""
        return False

    def refresh(self, model: torch.nn.Module, modalities: dict[str, Any], step: int, consumed: int, runtime: Any,
                precision: str = "fp32") -> None:  # fmt: skip
        """Recompute what the composition depends on; batches from global batch ``consumed`` on use it."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state for ``trainer_state.json`` (the position itself is the trainer's ``consumed_batches``)."""
        return {"kind": self.name, "seed": self.seed, "global_batch": self.global_batch}

    def load_state_dict(self, state: dict[str, Any] | None, checkpoint: Path | None = None) -> None:
        """Continue from a checkpoint's state (None: a checkpoint written before batch composition was saved, which
        composed random batches)."""
        state = state or {"kind": "random", "seed": self.seed, "global_batch": self.global_batch}
        if state.get("kind") != self.name:
            raise ValueError(
                f"train.resume: the checkpoint composed {state.get('kind')} batches; this config asks for "
                f"train.batching.kind={self.name}, which would change the rows drawn from here on"
            )
        if state.get("seed", self.seed) != self.seed:
            raise ValueError("resuming with a different train.seed would change the sample order")
        if state.get("global_batch", self.global_batch) != self.global_batch:
            log.warning(
                "the global batch changed from %d to %d rows: the resumed run draws other batches than the first "
                "part of the run would have", state["global_batch"], self.global_batch,
            )  # fmt: skip

    def writer(self, also: Callable[[Path], None]) -> Callable[[Path], None]:
        """The checkpoint writer, plus this composition's own files (none by default)."""
        return also

    # ------------------------------------------------------------------------------------------------------------
    def batches(self, start: int) -> Iterator[list[int]]:
        """This rank's slice of every global batch from global batch number ``start`` on."""
        first = self.rank * self.batch_size
        for batch in self.global_batches(start):
            yield batch[first : first + self.batch_size]

    def from_batch(self, start: int) -> Iterable[list[int]]:
        """A ``batch_sampler`` for a loader, continuing at global batch ``start``."""
        return _BatchesFrom(self, start)


class _BatchesFrom:
    def __init__(self, composer: BatchComposer, start: int) -> None:
        self.composer, self.start = composer, start

    def __iter__(self) -> Iterator[list[int]]:
        return self.composer.batches(self.start)


class EpochComposer(BatchComposer):
    """A composition that is a pure function of (seed, epoch), with the same number of batches every epoch."""

    salt: ClassVar[int] = 0  # kinds draw from different streams of the same seed

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        raise NotImplementedError

    def generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 100_003 + epoch + self.salt * 1_000_000_007)

    @property
    def batches_per_epoch(self) -> int:
        if not hasattr(self, "_batches_per_epoch"):
            self._batches_per_epoch = len(self.epoch_batches(0))
        return self._batches_per_epoch

    def global_batches(self, start: int) -> Iterator[list[int]]:
        if self.batches_per_epoch == 0:
            raise ValueError(f"train.batching.kind={self.name} composes no full batch of {self.global_batch} rows")
        epoch, index = divmod(start, self.batches_per_epoch)
        while True:
            batches = self.epoch_batches(epoch)
            yield from batches[index:]
            epoch, index = epoch + 1, 0


def cut(order: list[int], size: int) -> list[list[int]]:
    """Consecutive batches of ``size``; an incomplete last one is left for another epoch (a new order)."""
    return [order[start : start + size] for start in range(0, len(order) - size + 1, size)]
