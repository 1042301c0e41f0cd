"""From a split manifest to the datasets a run trains and validates on, with data-dependent preprocessing fitted.

Plugins that learn preprocessing from data (a tokenizer, a gene vocabulary) are fitted on the training split only, so
nothing about validation or test patients leaks into the model. The provenance a checkpoint records about its data
is built here too: enough for evaluation to refuse patients the model was trained on, and never a raw identifier.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from ..types import Modality
from .dataset import ManifestDataset
from .manifest import SPLITS, Manifest
from .summary import SkipSummary


def prepare_datasets(
    manifest: Manifest, modalities: Mapping[str, Modality], splits: Mapping[int, str], fit: bool | Collection[str]
) -> tuple[dict[str, ManifestDataset], SkipSummary]:
    """One dataset per split (training transforms for "train"), fitting data-dependent preprocessing when ``fit``.

    Args:
        manifest: the pseudonymised manifest.
        modalities: name -> plugin; those with ``fits_on_data`` are fitted on the training rows when ``fit``.
        splits: row number -> split.
        fit: False when the plugins were restored from a checkpoint (resume) and must keep their state; or the names
            of the plugins to fit (the others were restored, e.g. towers taken from ``train.init_from``).

    Returns:
        split name -> dataset, and the summary of every row skipped so far (and why).
    """
    summary = SkipSummary()
    datasets = {}
    for split in SPLITS:
        datasets[split] = ManifestDataset(manifest, modalities, split=split, train=split == "train", splits=splits)
        summary.merge(datasets[split].summary)
    if fit:
        for name, plugin in modalities.items():
            if plugin.fits_on_data and (fit is True or name in fit):
                plugin.fit(datasets["train"].load_raw(name))
    for dataset in datasets.values():
        dataset.set_transforms({name: p.transforms(train=dataset.train) for name, p in modalities.items()})
    return datasets, summary


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
