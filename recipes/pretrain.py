"""Pretraining on institutional data described by a manifest (``medclip pretrain --config X.yaml``).

Copy ``recipes/configs/pretrain_example.yaml`` (``medclip recipes copy pretrain my.yaml``), point ``data.manifest``
at your CSV/Parquet manifest, name the modalities and their options, and run. Outputs in ``out``: ``checkpoint/``
(load it with ``medclip.load_model``), ``train_log.jsonl``, ``tensorboard/``, ``metrics.json``,
``data_summary.json`` (rows skipped and why), ``training_curve.png``. Under ``torchrun`` it trains with DDP.

The recipe composes library pieces: the manifest and its patient split (``medclip.data``), the model from its
description (``medclip.factory``), the loss registry (``medclip.losses``) and the training loop (``medclip.train``).
A new run's encoders can start from weights (each modality's ``weights:``, and ``train.init_from``: a medclip
checkpoint's towers; ``medclip.weights``, docs/warm_start.md); a resumed run continues from its own checkpoint.
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

from medclip.checkpoint import ModelCard, read_card, restore_modalities
from medclip.config import ConfigError
from medclip.data import SplitConfig, check_skip_fraction, collate_samples, read_manifest
from medclip.data.loader import WORKER_KINDS
from medclip.data.prepare import data_provenance, prepare_datasets
from medclip.factory import ModelConfig, build_modalities, build_model
from medclip.losses import build_loss
from medclip.train import TrainConfig, Trainer
from medclip.train.launch import Runtime, setup_runtime, teardown_runtime
from medclip.train.resilience import resolve_resume
from medclip.types import Modality
from medclip.weights.init_from import (
    InitSource,
    init_from_checkpoint,
    open_init_source,
    restore_learned_preprocessing,
)
from medclip.weights.warm_start import check_no_overlap, weights_sources

COMMAND = "pretrain"
HELP = "contrastive pretraining on a manifest of institutional data (DDP under torchrun)"
DEFAULT_CONFIG = "pretrain_example.yaml"

log = logging.getLogger("medclip.pretrain")


@dataclass
class DataConfig(SplitConfig):
    manifest: str = ""  # CSV or Parquet, one row per study (see README "Manifest format")
    root: str = ""  # relative paths in the manifest are resolved against this (default: the manifest's folder)
    num_workers: int = 0  # loader workers; 0 loads in the main process
    # process | thread. Threads suit cached / memory-mapped inputs (CT/OCT/ECG caches), whose reads and array work
    # release the GIL: no per-sample copy between processes (several times faster warm). Processes suit CPU-heavy
    # Python decoding (uncached DICOM, tokenising). With threads, random transforms that use the per-sample
    # generator (CT/OCT augmentation) are reproducible; others draw from the global RNG shared with the training
    # step, so they (and dropout) are not reproducible run to run. See docs/ct.md "Loader workers".
    worker_kind: str = "process"
    max_skip_fraction: float = 0.5  # abort when more than this fraction of rows is unusable: the manifest is wrong

    def __post_init__(self) -> None:
        if self.worker_kind not in WORKER_KINDS:
            raise ConfigError(f"data.worker_kind must be one of {', '.join(WORKER_KINDS)}, got {self.worker_kind!r}")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")


@dataclass
class Config:
    modalities: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> that modality's options
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: dict[str, Any] = field(default_factory=lambda: {"clip": 1.0})  # name -> weight, or name -> {weight, ...}
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    out: str = "runs/medclip"


@dataclass
class PretrainResult:
    """What a pretraining run produced (paths, final training values, the data summary)."""

    checkpoint: Path
    metrics: dict[str, float]
    summary: dict[str, Any]
    splits: dict[str, list[int]] = field(default_factory=dict)  # split -> manifest row numbers


def model_card(cfg: Config) -> ModelCard:
    """The model card a run's checkpoints carry: the model description and how it was trained (no paths)."""
    training = {
        "recipe": COMMAND,
        "loss": cfg.loss,
        "split": {"val_fraction": cfg.data.val_fraction, "test_fraction": cfg.data.test_fraction,
                  "split_seed": cfg.data.split_seed},
        "steps": cfg.train.steps,
        "batch_size": cfg.train.batch_size,
        "seed": cfg.train.seed,
    }  # fmt: skip
    return ModelCard(modalities=cfg.modalities, model=cfg.model, training=training)


def open_warm_starts(train: TrainConfig, modalities: dict[str, Modality]) -> tuple[InitSource | None, list[str]]:
    """Check a new run's warm starts before any data is read: every ``weights:`` file, and ``train.init_from``.

    Returns:
        The opened init_from checkpoint (None without one), and the towers whose learned preprocessing (tokenizer,
        gene vocabulary) it restored, which must not be fitted again.
    """
    weights_sources(modalities)  # missing, pickle-based or unreadable files are refused now, by option name
    if not train.init_from:
        if train.init_modalities:
            raise ConfigError("train.init_modalities picks towers of train.init_from, which is empty")
        return None, []
    source = open_init_source(train.init_from, list(modalities), train.init_modalities)
    check_no_overlap(modalities, source.towers)
    return source, restore_learned_preprocessing(source, modalities)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pretrain(cfg: Config, runtime: Runtime | None = None) -> PretrainResult:
    """Run one pretraining job; returns where the checkpoint is and the final training values.

    Args:
        cfg: the pretraining config.
        runtime: process layout; by default read from the torchrun environment (single process otherwise).
    """
    if not cfg.data.manifest:
        raise ValueError("data.manifest is empty: point it at a CSV or Parquet manifest (see README 'Manifest format')")
    resume = resolve_resume(cfg.train.resume, cfg.out)
    own_runtime = runtime is None
    runtime = runtime or setup_runtime(cfg.train.device)
    try:
        seed_everything(cfg.train.seed + runtime.rank)
        card = model_card(cfg)
        init_source = None
        if resume is not None:
            saved = read_card(resume)
            if saved.modalities != cfg.modalities or saved.training.get("loss") != cfg.loss:
                raise ValueError("train.resume: the checkpoint's modality or loss settings differ from this config's")
            modalities = restore_modalities(resume, saved)
            fit: bool | set[str] = False
            for key in ("warm_start", "init_from"):  # what the run started from stays on its later checkpoints
                if key in saved.training:
                    card.training[key] = saved.training[key]
        else:
            modalities = build_modalities(cfg.modalities)
            init_source, restored = open_warm_starts(cfg.train, modalities)  # before reading data: fail fast
            fit = set(modalities) - set(restored)
        manifest = read_manifest(cfg.data.manifest, list(modalities), root=cfg.data.root or None)
        datasets, summary = prepare_datasets(manifest, modalities, cfg.data.assign(manifest), fit=fit)
        check_skip_fraction(summary, manifest.total_rows, cfg.data.max_skip_fraction)
        model = build_model(cfg.model, modalities, apply_weights=resume is None)
        if model.warm_start:
            card.training["warm_start"] = model.warm_start
        if init_source is not None:
            card.training["init_from"] = init_from_checkpoint(
                model, init_source, heads=cfg.train.init_heads, logit_scale=cfg.train.init_logit_scale
            )
        trainer = Trainer(
            card,
            modalities,
            model,
            build_loss(cfg.loss),
            datasets["train"],
            collate=partial(collate_samples, modalities=modalities),
            runtime=runtime,
            out_dir=Path(cfg.out),
            train_config=cfg.train,
            num_workers=cfg.data.num_workers,
            worker_kind=cfg.data.worker_kind,
            on_skipped=summary.add_markers,
            provenance=data_provenance(manifest, datasets),
        )
        if resume is not None:
            trainer.resume(resume)
        metrics = trainer.fit()
        if runtime.is_main:
            (Path(cfg.out) / "data_summary.json").write_text(json.dumps(summary.to_dict(), indent=1))
            if summary.total():
                print(summary.render())
        split_rows = {name: dataset.row_numbers() for name, dataset in datasets.items()}
        return PretrainResult(trainer.checkpoint_dir, metrics, summary.to_dict(), split_rows)
    finally:
        if own_runtime:
            teardown_runtime(runtime)


def write_training_curve(out: Path) -> Path | None:
    """PNG of the loss per logged step, read back from ``train_log.jsonl``."""
    from medclip.eval.plots import plot_training_curve

    log_path = out / "train_log.jsonl"
    if not log_path.is_file():
        return None
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if not records:
        return None
    return plot_training_curve([r["step"] for r in records], [r["loss"] for r in records], out / "training_curve.png")


def main(cfg: Config) -> dict[str, float]:
    result = pretrain(cfg)
    out = Path(cfg.out)
    metrics = {key: float(value) for key, value in result.metrics.items()}
    if (out / "checkpoint").exists():  # only the main process writes outputs
        (out / "metrics.json").write_text(json.dumps({"train": metrics, "data": result.summary}, indent=1))
        write_training_curve(out)
    return metrics
