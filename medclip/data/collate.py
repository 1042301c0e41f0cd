"""Batches from samples: each modality stacks its own samples and emits a presence mask (DESIGN.md, "Batch").

Skip markers from ``ManifestDataset.__getitem__`` are removed here and reported in ``batch["skipped"]``. When every
sample of a batch was skipped the batch is *empty*: ``batch["batch_size"] == 0``, it has no modality keys and no
"labels" / "targets", only ``skipped`` and empty ``patient_id`` / ``study_id`` / ``row`` lists. The trainer adds
``batch["skipped"]`` to its summary and moves on to the next batch (``is_empty_batch``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..types import Modality, Sample


def is_empty_batch(batch: Mapping[str, Any]) -> bool:
    """True when every sample of the batch was skipped (nothing to feed to the model)."""
    return batch["batch_size"] == 0


def collate_samples(samples: Sequence[Sample], modalities: Mapping[str, Modality]) -> dict[str, Any]:
    """Collate samples (and skip markers) into one batch.

    Returns:
        ``{name: ..., f"{name}_mask": (B,) bool}`` for every modality (masks False where a sample lacks it),
        "labels": (B, K) float with NaN for unknown, "targets": (B, T) float continuous targets with NaN for unknown
        (when the samples carry them, as ``ManifestDataset``'s always do; samples made elsewhere may carry none),
        "patient_id" / "study_id": B pseudonyms, "row": B row numbers, "skipped": the ``SkipRecord`` of every skipped
        sample, "batch_size": B.

    Raises:
        ValueError: when some samples carry "targets" and others do not (their rows would lose them silently).
    """
    kept = [sample for sample in samples if "skipped" not in sample]
    batch: dict[str, Any] = {
        "batch_size": len(kept),
        "skipped": [sample["skipped"] for sample in samples if "skipped" in sample],
        "patient_id": [sample["patient_id"] for sample in kept],
        "study_id": [sample["study_id"] for sample in kept],
        "row": [sample["row"] for sample in kept],
    }
    if not kept:
        return batch
    for name, modality in modalities.items():
        collated = modality.collate(kept)
        if f"{name}_mask" not in collated:
            raise TypeError(f"modality {name!r}: collate must emit {name + '_mask'!r} (B,) bool (see Modality.collate)")
        batch.update(collated)
    batch["labels"] = torch.stack([sample["labels"] for sample in kept]).float()  # (B, K)
    carrying_targets = sum("targets" in sample for sample in kept)
    if carrying_targets == len(kept):
        batch["targets"] = torch.stack([sample["targets"] for sample in kept]).float()  # (B, T)
    elif carrying_targets:  # never drop the targets of some rows silently
        raise ValueError(f"{carrying_targets} of {len(kept)} samples carry 'targets': every sample of a batch must")
    return batch
