"""From a split manifest to the datasets a run trains and validates on, with data-dependent preprocessing fitted.

Plugins that learn preprocessing from data (a tokenizer, a gene vocabulary) are fitted on the training split only, so
nothing about validation or test patients leaks into the model. The provenance a checkpoint records about its data
is built here too: enough for evaluation to refuse patients the model was trained on, and never a raw identifier.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from ..types import Modality
from .dataset import ManifestDataset
from .manifest import SPLITS, Manifest
from .summary import SkipSummary

log = logging.getLogger("medclip.data")


def prepare_datasets(
    manifest: Manifest,
    modalities: Mapping[str, Modality],
    splits: Mapping[int, str],
    fit: bool | Collection[str],
    confine_paths: bool = False,
) -> tuple[dict[str, ManifestDataset], SkipSummary]:
    """One dataset per split (training transforms for "train"), fitting data-dependent preprocessing when ``fit``.

    Args:
        manifest: the pseudonymised manifest.
        modalities: name -> plugin; those with ``fits_on_data`` are fitted on the training rows when ``fit``.
        splits: row number -> split.
        fit: False when the plugins were restored from a checkpoint (resume) and must keep their state; or the names
            of the plugins to fit (the others were restored, e.g. towers taken from ``train.init_from``).
        confine_paths: refuse cells whose path leaves the manifest's folder (``ManifestDataset``).

    Returns:
        split name -> dataset, and the summary of every row skipped so far (and why).
    """
    summary = SkipSummary()
    datasets = {}
    for split in SPLITS:
        datasets[split] = ManifestDataset(
            manifest, modalities, split=split, train=split == "train", splits=splits, confine_paths=confine_paths
        )
        summary.merge(datasets[split].summary)
    flag_files_of_several_patients(datasets.values())
    if fit:
        for name, plugin in modalities.items():
            if plugin.fits_on_data and (fit is True or name in fit):
                plugin.fit(datasets["train"].load_raw(name))
    for dataset in datasets.values():
        dataset.set_transforms({name: p.transforms(train=dataset.train) for name, p in modalities.items()})
    return datasets, summary


def evaluation_transforms(modalities: Mapping[str, Modality]) -> dict[str, Any]:
    """Each modality's evaluation (non-augmenting) transform."""
    return {name: plugin.transforms(train=False) for name, plugin in modalities.items()}


def flag_files_of_several_patients(datasets: Iterable[ManifestDataset]) -> int:
    """Warn when one file is referenced under two patient ids (a copy-paste slip or an id mix-up): the same scan
    could then sit in training and in test. Returns the number of such files; logs row numbers, never paths."""
    patients: dict[str, set[str]] = {}
    rows: dict[str, list[int]] = {}
    for dataset in datasets:
        for row, key in dataset.file_references():
            patients.setdefault(key, set()).add(row.patient)
            rows.setdefault(key, []).append(row.row_number)
    shared = [key for key, owners in patients.items() if len(owners) > 1]
    for key in shared[:20]:
        log.warning("one file is referenced by rows of %d different patients (rows %s)", len(patients[key]),
                    ", ".join(str(number) for number in sorted(rows[key])[:10]))  # fmt: skip
    if len(shared) > 20:
        log.warning("... %d files in all are referenced under more than one patient id", len(shared))
    return len(shared)


def data_provenance(manifest: Manifest, datasets: Mapping[str, ManifestDataset]) -> dict[str, Any]:
    """What a checkpoint records about its data: enough to refuse evaluating on patients it was trained on.

    Only pseudonyms are stored (never raw identifiers), with the manifest's hash and the key's fingerprint: an
    evaluation under another key cannot match patients and is told so.
    """
    return {
        "manifest_sha256": manifest.manifest_hash(),
        "pseudonym_key_fingerprint": manifest.key_fingerprint,
        "patients": {split: sorted({row.patient for row in dataset.rows()}) for split, dataset in datasets.items()},
    }
