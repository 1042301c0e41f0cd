"""``hard_negative``: batches of seed rows plus their nearest neighbours, from a periodically refreshed embedding table.

Random batches of a large archive hold mostly easy negatives (a chest CT against a knee report); the loss learns
little from them once the model is past its first epochs. Hard-negative batches (HAR, MCL) put next to each randomly
drawn seed row the rows whose other-modality embedding is closest to it, so the model must separate near misses.

Every ``refresh_every`` optimizer steps (after ``start_after`` steps of random batches) the trainer calls
``refresh``: every training row is embedded with the current model (eval mode, no gradient, evaluation transforms),
and each row's ``candidates`` nearest rows in the other modalities are kept (``neighbours.py``). Batches are then
composed pass after pass: a seeded permutation of the rows gives the seeds; each seed brings up to
``neighbours_per_seed`` of its candidates not drawn yet in this pass; a batch never holds two rows of the same
patient, nor (``exclude_same_findings``) two rows with the same finding vector: these are likely false negatives.
A row conflicting with the batch being filled waits for the next one. The pass ends when the rows left cannot fill a
batch, and the next pass starts with a new permutation; each refresh starts a new pass.

Resume: the composition after a refresh is a pure function of (table, seed, refresh number), so the checkpoint
carries the table (``batching.safetensors``), the refresh number and the global batch the table took effect at; a
resumed run skips to its position in that sequence and draws the batches of the uninterrupted run.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ...atomic import write_atomic
from ...checkpoint import CheckpointError
from .base import BatchComposer, RowFacts, log, register_batching
from .neighbours import broadcast_from_main, embed_training_rows, nearest_neighbours
from .shuffled import RandomBatches

TABLE_FILE = "batching.safetensors"
TABLE_KEY = "neighbours"


@register_batching("hard_negative")
class HardNegativeBatches(BatchComposer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        facts = RowFacts.of(self.dataset)
        self.patients = facts.patient_codes()  # (N,)
        self.findings = facts.finding_codes() if self.config.exclude_same_findings else None  # (N,)
        self.random = RandomBatches(self.config, self.dataset, self.batch_size, self.seed, self.rank, self.world_size)
        self.table: torch.Tensor | None = None  # (N, candidates) dataset positions, -1 padded
        self.refresh_number = -1  # refreshes done so far, minus one
        self.table_start = 0  # the first global batch composed from the table
        self.refreshed_at_step = -1
        self.last_refresh: dict[str, float] = {}  # seconds, rows embedded, rows unreadable, rows without neighbours
        row_numbers = getattr(self.dataset, "row_numbers", None)
        rows = np.asarray(row_numbers() if row_numbers else range(self.size), dtype=np.int64)
        self.rows_fingerprint = hashlib.sha256(rows.tobytes()).hexdigest()[:16]  # row numbers only, no identifiers

    # --- when and how the table is rebuilt ----------------------------------------------------------------------
    def refresh_due(self, step: int) -> bool:
        if step < self.config.start_after:
            return False
        if self.table is None:
            return True
        return step != self.refreshed_at_step and (step - self.config.start_after) % self.config.refresh_every == 0

    def refresh(self, model: torch.nn.Module, modalities: dict[str, Any], step: int, consumed: int, runtime: Any,
                precision: str = "fp32") -> None:  # fmt: skip
        """Embed the training rows with ``model`` and rebuild the table; batches from ``consumed`` on use it.

        The RNG states are restored afterwards, so a refresh never changes what training draws next.
        """
        from ..state import restore_rng_state, rng_state

        names = list(self.config.modalities) or list(modalities)
        unknown = sorted(set(names) - set(modalities))
        if unknown or len(names) < 2:
            raise ValueError(
                "train.batching.kind=hard_negative mines neighbours across two or more of the model's modalities "
                f"({', '.join(modalities)}); train.batching.modalities names {names}"
            )
        started = time.perf_counter()
        saved = rng_state()
        try:
            dataset = self._evaluation_view(modalities)
            batch_size = self.config.embed_batch_size or self.batch_size
            embeddings, present, unreadable = embed_training_rows(model, dataset, names, runtime, batch_size, precision)
            device = runtime.device if runtime is not None else "cpu"
            table = nearest_neighbours(
                embeddings, present, self.patients, self.findings, self.config.candidates, device
            )
            table = broadcast_from_main(table, runtime)
        finally:
            restore_rng_state(saved)
        self.use_table(table, step, consumed)
        alone = int((table[:, 0] < 0).sum())
        self.last_refresh = {"seconds": time.perf_counter() - started, "rows": float(self.size),
                             "unreadable_rows": float(unreadable), "rows_without_neighbours": float(alone)}  # fmt: skip
        log.info(
            "hard negatives refreshed at step %d: %d rows embedded in %.1f s; %d rows unreadable, %d rows without "
            "an eligible neighbour (they are still drawn as seeds)",
            step, self.size, self.last_refresh["seconds"], unreadable, alone,
        )  # fmt: skip

    def use_table(self, table: torch.Tensor, step: int, consumed: int) -> None:
        """Compose from ``table`` ((N, candidates) positions, -1 padded) from global batch ``consumed`` on."""
        if tuple(table.shape) != (self.size, self.config.candidates) or table.dtype != torch.int64:
            raise ValueError(f"a neighbour table must be ({self.size}, {self.config.candidates}) int64")
        self.table, self.refresh_number = table, self.refresh_number + 1
        self.table_start, self.refreshed_at_step = consumed, step

    def _evaluation_view(self, modalities: dict[str, Any]):
        """The training rows with evaluation (non-augmenting) transforms: the neighbours of the rows, not of one
        random crop of them."""
        if not hasattr(self.dataset, "with_transforms"):
            return self.dataset
        from ...data.prepare import evaluation_transforms

        loaded = getattr(self.dataset, "modalities", modalities)
        return self.dataset.with_transforms(evaluation_transforms({name: modalities[name] for name in loaded}))

    # --- composition ----------------------------------------------------------------------------------------------
    def global_batches(self, start: int) -> Iterator[list[int]]:
        if self.table is None:  # before the first refresh (train.batching.start_after): random batches
            yield from self.random.global_batches(start)
            return
        if start < self.table_start:
            raise ValueError(f"global batch {start} precedes the neighbour table (from batch {self.table_start})")
        yield from itertools.islice(self._composed(), start - self.table_start, None)

    def _composed(self) -> Iterator[list[int]]:
        """The endless sequence of global batches from the current table."""
        for pass_number in itertools.count():
            state = np.random.SeedSequence([self.seed, 3, self.refresh_number, pass_number]).generate_state(2)
            generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
            order = torch.randperm(self.size, generator=generator).tolist()
            made = 0
            for batch in self._one_pass(order):
                made += 1
                yield batch
            if made == 0:
                raise ValueError(
                    f"train.batching.kind=hard_negative cannot fill a batch of {self.global_batch} rows in which no "
                    "two rows share a patient"
                    + (" or a finding vector (exclude_same_findings)" if self.findings is not None else "")
                    + "; lower train.batch_size"
                )

    def _one_pass(self, order: list[int]) -> Iterator[list[int]]:
        assert self.table is not None
        table = self.table.numpy()
        used = np.zeros(self.size, dtype=bool)
        first_waiting = 0  # seeds before this position of ``order`` are drawn already
        while True:
            batch = _Filling(self.patients, self.findings, used)
            position, waiting = first_waiting, None
            while len(batch.rows) < self.global_batch and position < self.size:
                seed_row = order[position]
                position += 1
                if used[seed_row]:
                    continue
                if not batch.fits(seed_row):
                    waiting = position - 1 if waiting is None else waiting  # retried as a seed of the next batch
                    continue
                batch.add(seed_row)
                added = 0
                for neighbour in table[seed_row]:
                    if neighbour < 0 or added == self.config.neighbours_per_seed:
                        break
                    if len(batch.rows) == self.global_batch:
                        break
                    if batch.fits(int(neighbour)):
                        batch.add(int(neighbour))
                        added += 1
            if len(batch.rows) < self.global_batch:
                return
            first_waiting = position if waiting is None else waiting
            yield batch.rows

    # --- checkpoint -----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "refresh_number": self.refresh_number,
            "table_start": self.table_start,
            "refreshed_at_step": self.refreshed_at_step,
            "has_table": self.table is not None,
            "rows": self.rows_fingerprint,
        }

    def load_state_dict(self, state: dict[str, Any] | None, checkpoint: Path | None = None) -> None:
        super().load_state_dict(state, checkpoint)
        assert state is not None  # the base refuses a missing state for any kind but random
        if state.get("rows") != self.rows_fingerprint:
            raise ValueError("train.resume: the training rows differ from the checkpoint's; the neighbour table no "
                             "longer matches them")  # fmt: skip
        self.refresh_number = int(state["refresh_number"])
        self.table_start = int(state["table_start"])
        self.refreshed_at_step = int(state["refreshed_at_step"])
        self.table = None
        if state.get("has_table"):
            if checkpoint is None:
                raise CheckpointError("the hard-negative state needs its checkpoint folder to read the table")
            try:
                table = load_file(str(Path(checkpoint) / TABLE_FILE))[TABLE_KEY]
            except Exception as error:  # safetensors raises its own error types for corrupt files
                raise CheckpointError(f"{TABLE_FILE} is missing or unreadable ({type(error).__name__})") from None
            if table.dtype != torch.int64 or tuple(table.shape) != (self.size, self.config.candidates):
                raise CheckpointError(f"{TABLE_FILE} does not match the training rows or train.batching.candidates")
            if bool(((table < -1) | (table >= self.size)).any()):
                raise CheckpointError(f"{TABLE_FILE} holds positions outside the training rows")
            self.table = table

    def writer(self, also):
        def write(staging: Path) -> None:
            also(staging)
            if self.table is not None:
                tensors = {TABLE_KEY: self.table.contiguous()}
                write_atomic(staging / TABLE_FILE, lambda temp: save_file(tensors, str(temp), {"format": "pt"}))

        return write


class _Filling:
    """The batch being filled: its rows, their patients and finding vectors (marks rows drawn in ``used``)."""

    def __init__(self, patients: np.ndarray, findings: np.ndarray | None, used: np.ndarray) -> None:
        self.patient_of, self.finding_of, self.used = patients, findings, used
        self.rows: list[int] = []
        self.patients: set[int] = set()
        self.findings: set[int] = set()

    def fits(self, row: int) -> bool:
        if self.used[row] or int(self.patient_of[row]) in self.patients:
            return False
        return self.finding_of is None or self.finding_of[row] < 0 or int(self.finding_of[row]) not in self.findings

    def add(self, row: int) -> None:
        self.rows.append(row)
        self.used[row] = True
        self.patients.add(int(self.patient_of[row]))
        if self.finding_of is not None and self.finding_of[row] >= 0:
            self.findings.add(int(self.finding_of[row]))
