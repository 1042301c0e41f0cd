"""Pretraining end to end from an ``ExperimentConfig``: manifest -> split -> fit preprocessing -> train -> checkpoint.

This is what ``medclip pretrain --config X.yaml`` runs, and what the quickstart calls on its bundled data.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..experiment import ExperimentConfig
from ..types import Modality
from .builder import build_modalities, build_model
from .checkpoint import read_config, restore_modalities
from .launch import Runtime, setup_runtime, teardown_runtime

log = logging.getLogger("medclip.pretrain")


@dataclass
class PretrainResult:
    """What a pretraining run produced (paths, final training values, the data summary)."""

    checkpoint: Path
    metrics: dict[str, float]
    summary: dict[str, Any]
    splits: dict[str, list[int]] = field(default_factory=dict)  # split -> manifest row numbers


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_data(config: ExperimentConfig, modalities: dict[str, Modality], fit: bool):
    """Read and split the manifest, fit data-dependent preprocessing on the training split, build the datasets."""
    from ..data import ManifestDataset, SkipSummary, assign_splits, read_manifest

    if not config.data.manifest:
        raise ValueError("data.manifest is empty: point it at a CSV or Parquet manifest (see README 'Manifest format')")
    manifest = read_manifest(config.data.manifest, list(modalities), root=config.data.root or None)
    splits = assign_splits(manifest, config.data.val_fraction, config.data.test_fraction, config.data.split_seed)
    summary = SkipSummary()
    datasets = {}
    for split in ("train", "val", "test"):
        datasets[split] = ManifestDataset(manifest, modalities, split=split, train=split == "train", splits=splits)
        summary.merge(datasets[split].summary)
    if fit:
        for name, plugin in modalities.items():
            if plugin.fits_on_data:
                plugin.fit(datasets["train"].load_raw(name), plugin.config)
    for dataset in datasets.values():
        dataset.set_transforms({name: p.transforms(p.config, train=dataset.train) for name, p in modalities.items()})
    return manifest, splits, datasets, summary


def resolve_resume(config: ExperimentConfig) -> Path | None:
    """The checkpoint to continue from: ``train.resume`` as given, or with "auto" this run's own latest one.

    "auto" is what job scripts that may be pre-empted or killed use: the first run starts fresh, every restart
    continues from the newest complete checkpoint (repairing an interrupted checkpoint swap first).
    """
    from .resilience import recover_checkpoint_dir

    if config.train.resume != "auto":
        return Path(config.train.resume) if config.train.resume else None
    found = recover_checkpoint_dir(Path(config.out) / "checkpoint")
    if found is not None and (found / "trainer_state.json").is_file():
        log.info("train.resume=auto: continuing from the run's own checkpoint")
        return found
    return None


def data_provenance(manifest, datasets) -> dict[str, Any]:
    """What a checkpoint records about its data: enough to refuse evaluating on patients it was trained on.

    Only pseudonyms are stored (never raw identifiers), with the manifest's hash and the key's fingerprint: an
    evaluation under another key cannot match patients and is told so.
    """
    return {
        "manifest_sha256": manifest.manifest_hash(),
        "pseudonym_key_fingerprint": manifest.key_fingerprint,
        "patients": {split: sorted({row.patient for row in dataset.rows()}) for split, dataset in datasets.items()},
    }


def pretrain(config: ExperimentConfig, runtime: Runtime | None = None) -> PretrainResult:
    """Run one pretraining job; returns where the checkpoint is and the final training values.

    Args:
        config: the experiment configuration.
        runtime: process layout; by default read from the torchrun environment (single process otherwise).
    """
    from ..data import check_skip_fraction, collate_samples
    from ..losses import build_loss
    from .trainer import Trainer

    resume = resolve_resume(config)
    own_runtime = runtime is None
    runtime = runtime or setup_runtime(config.train.device)
    try:
        seed_everything(config.train.seed + runtime.rank)
        if resume is not None:
            saved = read_config(resume)
            if saved.modalities != config.modalities or saved.loss != config.loss:
                raise ValueError("train.resume: the checkpoint's modality or loss settings differ from this config's")
            modalities = restore_modalities(resume, saved)
        else:
            modalities = build_modalities(config)
        manifest, splits, datasets, summary = prepare_data(config, modalities, fit=resume is None)
        check_skip_fraction(summary, manifest.total_rows, config.data.max_skip_fraction)
        model = build_model(config, modalities)
        criterion = build_loss(config.loss)
        out_dir = Path(config.out)
        provenance = data_provenance(manifest, datasets)
        trainer = Trainer(
            config,
            modalities,
            model,
            criterion,
            datasets["train"],
            collate=partial(collate_samples, modalities=modalities),
            runtime=runtime,
            out_dir=out_dir,
            on_skipped=lambda markers: summary.add_markers(markers),
            provenance=provenance,
        )
        if resume is not None:
            trainer.resume(resume)
        metrics = trainer.fit()
        if runtime.is_main:
            (out_dir / "data_summary.json").write_text(json.dumps(summary.to_dict(), indent=1))
            if summary.total():
                print(summary.render())
        split_rows = {name: dataset.row_numbers() for name, dataset in datasets.items()}
        return PretrainResult(trainer.checkpoint_dir, metrics, summary.to_dict(), split_rows)
    finally:
        if own_runtime:
            teardown_runtime(runtime)
