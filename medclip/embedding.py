"""Embedding inputs with a trained model, through one batch loop.

- ``embed(model, name, inputs)``: references (paths, series folders, inline text) or loaded samples -> (N, D); an
  input that cannot be read raises, since the caller named it;
- ``embed_dataset(model, dataset, ...)``: manifest rows -> ``EmbeddedRows`` batch by batch (row numbers, patient and
  study pseudonyms, sites, labels, one embedding per modality), rows that cannot be read skipped and counted;
- ``embed_split(...)``: every usable row of one split, concatenated.

Both end in ``encode_batch``, the single place where evaluation and export call the model, so the recipes, the
zero-shot classifier and the retrieval index embed exactly the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Subset
from tqdm.auto import tqdm

from .data import ManifestDataset, SkipSummary, is_empty_batch
from .data.loader import make_loader
from .device import move_to_device
from .types import Sample

log = logging.getLogger("medclip.embedding")


@torch.no_grad()
def encode_batch(
    model: torch.nn.Module, batch: Mapping[str, Any], modalities: Sequence[str], device: torch.device | str
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """One collated batch -> (name -> (B, D) unit embeddings, zero rows where missing; name -> (B,) bool present)."""
    inputs = {key: batch[key] for name in modalities for key in (name, f"{name}_mask") if key in batch}
    outputs = model(move_to_device(inputs, device))
    features = {name: outputs["features"][name].float().cpu() for name in modalities}
    present = {name: outputs["masks"][name].cpu().bool() for name in modalities}
    return features, present


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def embed(
    model: torch.nn.Module,
    name: str,
    inputs: Iterable[Any],
    batch_size: int = 64,
    loaded: bool = False,
    device: torch.device | str | None = None,
) -> Tensor:
    """Embed inputs of one modality: references (or loaded samples with ``loaded=True``) -> (N, D) normalised.

    Args:
        model: a ``ContrastiveModel`` with its ``preprocess`` (``medclip.load_model`` / ``create_model`` give one).
        name: the modality of every input.
        inputs: references for ``model.preprocess[name].load`` (paths, inline text, ...), or samples when ``loaded``.
        batch_size: inputs per forward pass.
        loaded: whether ``inputs`` are already loaded samples.
        device: where to run; defaults to the model's device.

    Raises:
        ModalityError: an input cannot be read or does not match the model's preprocessing.
        ValueError: ``inputs`` is empty.
    """
    preprocess = model.preprocess[name]  # this modality only: nothing is collated for the model's others
    device = device or _device_of(model)
    was_training = model.training
    model.eval()
    chunks: list[Tensor] = []
    pending: list[Sample] = []

    def flush() -> None:
        features, _ = encode_batch(model, preprocess(pending, loaded=True), [name], device)
        chunks.append(features[name])  # (b, D)
        pending.clear()

    try:
        for item in inputs:
            pending.append(item if loaded else preprocess.load(item))
            if len(pending) == batch_size:
                flush()
        if pending:
            flush()
    finally:
        model.train(was_training)
    if not chunks:
        raise ValueError(f"nothing to embed for modality {name!r}")
    return torch.cat(chunks)  # (N, D)


@dataclass
class EmbeddedRows:
    """Embedded manifest rows (pseudonyms only) and, per modality, the embedding and whether the row has it.

    Attributes:
        row_numbers: (N,) 1-based manifest rows.
        patients: (N,) patient pseudonyms.
        studies: (N,) study pseudonyms.
        sites: (N,) site or None.
        labels: (N, K) 0 / 1 / NaN in ``Manifest.label_names`` order.
        targets: (N, T) continuous targets with NaN for unknown, in ``Manifest.target_names`` order.
        embeddings: modality -> (N, D) unit vectors, zero rows where the modality is missing.
        present: modality -> (N,) bool.
    """

    row_numbers: np.ndarray
    patients: np.ndarray
    studies: np.ndarray
    sites: list[str | None]
    labels: np.ndarray
    targets: np.ndarray
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    present: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.row_numbers)

    def subset(self, keep: np.ndarray) -> EmbeddedRows:
        """The rows where ``keep`` (a (N,) bool mask or index array) selects."""
        return EmbeddedRows(
            self.row_numbers[keep],
            self.patients[keep],
            self.studies[keep],
            [self.sites[i] for i in np.arange(len(self))[keep]],
            self.labels[keep],
            self.targets[keep],
            {name: value[keep] for name, value in self.embeddings.items()},
            {name: value[keep] for name, value in self.present.items()},
        )

    @staticmethod
    def concatenate(
        parts: Sequence[EmbeddedRows], modalities: Sequence[str], n_labels: int, n_targets: int = 0
    ) -> EmbeddedRows:
        if not parts:
            return EmbeddedRows(
                np.zeros(0, dtype=np.int64),
                np.array([], dtype=str),
                np.array([], dtype=str),
                [],
                np.zeros((0, n_labels), dtype=np.float32),
                np.zeros((0, n_targets), dtype=np.float32),
                {name: np.zeros((0, 0), dtype=np.float32) for name in modalities},
                {name: np.zeros(0, dtype=bool) for name in modalities},
            )
        return EmbeddedRows(
            np.concatenate([p.row_numbers for p in parts]),
            np.concatenate([p.patients for p in parts]),
            np.concatenate([p.studies for p in parts]),
            [site for p in parts for site in p.sites],
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.targets for p in parts]),
            {name: np.concatenate([p.embeddings[name] for p in parts]) for name in modalities},
            {name: np.concatenate([p.present[name] for p in parts]) for name in modalities},
        )


@dataclass
class LoaderOptions:
    """How evaluation loads rows: the options every evaluation recipe exposes."""

    batch_size: int = 64
    num_workers: int = 0
    worker_kind: str = "process"  # process | thread (threads load cached volumes several times faster; docs/ct.md)
    progress: bool = True

    @classmethod
    def of(cls, config: Any) -> LoaderOptions:
        """The options of a recipe config that has the same four fields."""
        return cls(config.batch_size, config.num_workers, config.worker_kind, config.progress)


def embed_dataset(
    model: torch.nn.Module,
    dataset: ManifestDataset,
    modalities: Sequence[str],
    summary: SkipSummary,
    indices: Sequence[int] | None = None,
    options: LoaderOptions | None = None,
    description: str = "embedding",
) -> Iterator[EmbeddedRows]:
    """Embed the dataset (or its ``indices``) batch by batch; load failures go to ``summary``.

    Yields:
        One ``EmbeddedRows`` per batch that kept at least one row.
    """
    options = options or LoaderOptions()
    source = dataset if indices is None else Subset(dataset, list(indices))
    loader = make_loader(
        source,
        batch_size=options.batch_size,
        collate_fn=dataset.collate_fn,
        num_workers=options.num_workers,
        worker_kind=options.worker_kind,
    )
    device = _device_of(model)
    model.eval()
    site_of = {row.row_number: row.site for row in dataset.manifest.rows}
    bar = tqdm(total=len(source), desc=description, unit="row", disable=not options.progress)
    try:
        for batch in loader:
            summary.add_markers(batch["skipped"])
            bar.update(batch["batch_size"] + len(batch["skipped"]))
            if is_empty_batch(batch):
                continue
            features, present = encode_batch(model, batch, modalities, device)
            yield EmbeddedRows(
                row_numbers=np.asarray(batch["row"], dtype=np.int64),
                patients=np.asarray(batch["patient_id"]),
                studies=np.asarray(batch["study_id"]),
                sites=[site_of[row] for row in batch["row"]],
                labels=batch["labels"].numpy(),
                targets=batch["targets"].numpy()
                if "targets" in batch
                else np.zeros((len(batch["row"]), 0), np.float32),
                embeddings={name: value.numpy() for name, value in features.items()},
                present={name: value.numpy() for name, value in present.items()},
            )
    finally:
        bar.close()


def _targets(batch: Mapping[str, Any]) -> np.ndarray:
    """(B, T) continuous targets of a batch; (B, 0) when the manifest has no ``target:`` columns."""
    if "targets" in batch:
        return batch["targets"].numpy()
    return np.zeros((len(batch["row"]), 0), dtype=np.float32)


def embed_split(
    model: torch.nn.Module,
    dataset: ManifestDataset,
    modalities: Sequence[str],
    options: LoaderOptions | None = None,
) -> tuple[EmbeddedRows, SkipSummary]:
    """Embed every usable row of ``dataset`` for ``modalities``; returns the rows and what was skipped (and why)."""
    summary = SkipSummary().merge(dataset.summary)
    split = dataset.split or "all"
    parts = list(embed_dataset(model, dataset, modalities, summary, options=options, description=f"embedding {split}"))
    manifest = dataset.manifest
    rows = EmbeddedRows.concatenate(parts, modalities, len(manifest.label_names), len(manifest.target_names))
    log.info("%s split: %d rows embedded, %d skipped", split, len(rows), summary.total())
    return rows, summary
