"""The data layer: manifest -> pseudonymised rows -> patient-level splits -> paired samples -> masked batches.

Typical use (what the pretraining recipe does)::

    manifest = read_manifest("studies.csv", ["ct", "report"])
    splits = assign_splits(manifest, cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.split_seed)
    train_set = ManifestDataset(manifest, modalities, "train", train=True, splits=splits)
    check_skip_fraction(train_set.summary, manifest.total_rows, cfg.data.max_skip_fraction)
    for name, modality in modalities.items():
        if modality.fits_on_data:
            modality.fit(train_set.load_raw(name))
    loader = DataLoader(train_set, batch_size=64, collate_fn=train_set.collate_fn)
    for batch in loader:
        train_set.summary.add_markers(batch["skipped"])
        if is_empty_batch(batch):
            continue
        ...
    print(train_set.summary.render())
"""

from __future__ import annotations

from .collate import collate_samples, is_empty_batch
from .dataset import ManifestDataset
from .manifest import Manifest, ManifestError, ManifestRow, file_sha256, read_manifest
from .pseudonym import Pseudonymizer, PseudonymKeyError
from .split import SplitConfig, assign_splits, check_no_patient_leakage, hash_split
from .summary import SkipRecord, SkipSummary, TooManySkippedError, check_skip_fraction

__all__ = [
    "Manifest",
    "ManifestDataset",
    "ManifestError",
    "ManifestRow",
    "PseudonymKeyError",
    "Pseudonymizer",
    "SkipRecord",
    "SkipSummary",
    "SplitConfig",
    "TooManySkippedError",
    "assign_splits",
    "check_no_patient_leakage",
    "check_skip_fraction",
    "collate_samples",
    "file_sha256",
    "hash_split",
    "is_empty_batch",
    "read_manifest",
]
